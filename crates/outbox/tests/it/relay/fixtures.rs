//! Fixtures for relay tests: a store and a publisher that write what each relay did into one
//! journal and let a test inject faults (failed renewals, a lost mark, a slow or stuck
//! publish, rejected events), fast relay settings, and a way to wait for a condition.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use dovetail_events::consumer::RetryBackoff;
use dovetail_events::envelope::{
    AggregateRef, Envelope, Event, EventId, EventMetadata, Sequence, Source,
};
use dovetail_events::publish::{MemoryPublisher, PublishError, PublishResult, Publisher};
use dovetail_outbox::relay::{Relay, RelayConfig, RelayReport};
use dovetail_outbox::{
    Failure, MemoryOutboxStore, OutboxBacklog, OutboxError, OutboxRecord, OutboxStore, Position,
    RelayLease,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// The event of relay tests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClaimNoted {
    pub(crate) claim_id: String,
}

impl Event for ClaimNoted {
    const TYPE: &'static str = "claim.noted";
    const VERSION: u32 = 1;
}

/// Event `sequence` of claim `aggregate`.
pub(crate) fn event(aggregate: &str, sequence: u64) -> Envelope {
    Envelope::new(
        Source::parse("claim-service").unwrap(),
        AggregateRef::parse("claim", aggregate).unwrap(),
        Sequence::new(sequence).unwrap(),
        &ClaimNoted {
            claim_id: aggregate.to_owned(),
        },
        EventMetadata::default(),
    )
    .unwrap()
}

/// `(aggregate, sequence)` of an envelope, for readable assertions.
pub(crate) fn key(envelope: &Envelope) -> (String, u64) {
    (
        envelope.aggregate_id().as_str().to_owned(),
        envelope.sequence().get(),
    )
}

/// Relay settings for tests: short lease and poll, quick retries.
pub(crate) fn fast_config(owner: &str) -> RelayConfig {
    let mut config = RelayConfig::default();
    config.name = "test-outbox".into();
    config.owner = owner.into();
    config.lease_ttl = Duration::from_millis(300);
    config.renew_every = Duration::from_millis(60);
    config.poll_interval = Duration::from_millis(10);
    config.backoff = RetryBackoff::new(Duration::from_millis(5), Duration::from_millis(40));
    config.max_attempts = 3;
    config.batch_size = 10;
    config
}

/// Waits until `check` holds, checking every 2 ms; panics naming `what` after `timeout`.
pub(crate) async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether nobody holds the lease of `store`: a probe owner gets it (for a millisecond).
pub(crate) async fn lease_is_free(store: &MemoryOutboxStore) -> bool {
    store
        .acquire_lease("probe", Duration::from_millis(1))
        .await
        .unwrap()
        .is_some()
}

/// The output of a future that is ready at once, such as a memory store's answer, for
/// the synchronous conditions of [`eventually`].
pub(crate) fn now_or_never<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("the future was not ready at once"),
    }
}

/// What happened, in the order it happened, across every relay of a test.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// Relay `relay` was granted the lease (taken or renewed).
    Leased { relay: usize },
    /// Relay `relay` fetched ready records.
    Fetched { relay: usize },
    /// Relay `relay`'s publish call returned; the broker accepted `accepted`.
    Published {
        relay: usize,
        accepted: Vec<EventId>,
    },
    /// Relay `relay` asked to mark `positions` published.
    Marked {
        relay: usize,
        positions: Vec<Position>,
        result: Result<(), Refusal>,
    },
    /// Relay `relay` recorded `failures`, at `at`.
    Failed {
        relay: usize,
        failures: Vec<Failure>,
        at: SystemTime,
        result: Result<(), Refusal>,
    },
}

/// Why the store refused a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    LeaseLost,
    Other,
}

fn refusal(result: &Result<(), OutboxError>) -> Result<(), Refusal> {
    match result {
        Ok(()) => Ok(()),
        Err(OutboxError::LeaseLost { .. }) => Err(Refusal::LeaseLost),
        Err(_) => Err(Refusal::Other),
    }
}

/// The shared journal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Journal(Arc<Mutex<Vec<Entry>>>);

impl Journal {
    fn push(&self, entry: Entry) {
        self.lock().push(entry);
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Faults a test injects into one relay's store and publisher.
#[derive(Debug, Default)]
pub(crate) struct Controls {
    /// Lease calls (take and renew) fail as if the store were unreachable.
    pub(crate) lease_calls_fail: AtomicBool,
    /// The next `mark_published` is refused as if the lease were lost (nothing changes).
    pub(crate) lose_next_mark: AtomicBool,
    /// Each publish call takes this many milliseconds before it reaches the broker.
    pub(crate) publish_delay_ms: AtomicU64,
    /// After the broker answered, the publish call never returns (the relay hangs there,
    /// holding results it will never mark), so a test can kill the relay mid-batch.
    pub(crate) hang_after_publish: AtomicBool,
    /// Set when a publish call started.
    pub(crate) publishing: AtomicBool,
    /// Set when a publish call hangs.
    pub(crate) hanging: AtomicBool,
}

impl Controls {
    pub(crate) fn set(flag: &AtomicBool, value: bool) {
        flag.store(value, Ordering::SeqCst);
    }

    pub(crate) fn get(flag: &AtomicBool) -> bool {
        flag.load(Ordering::SeqCst)
    }
}

/// One outbox, one broker, one journal, and the events the broker should reject: what
/// every relay of a test shares. The outbox is the memory store unless a test brings
/// another one ([`World::on`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct World<S = MemoryOutboxStore> {
    pub(crate) store: S,
    pub(crate) broker: MemoryPublisher,
    pub(crate) journal: Journal,
    rejects: Arc<Mutex<HashSet<EventId>>>,
}

impl World {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl<S: OutboxStore + Clone + std::fmt::Debug + 'static> World<S> {
    /// A world whose relays work on `store` (and clones of it).
    pub(crate) fn on(store: S) -> Self {
        Self {
            store,
            broker: MemoryPublisher::new(),
            journal: Journal::default(),
            rejects: Arc::default(),
        }
    }

    /// The next publish of `event` is refused by the broker as not retriable.
    pub(crate) fn reject_once(&self, event: EventId) {
        self.rejects().insert(event);
    }

    pub(crate) fn clear_rejects(&self) {
        self.rejects().clear();
    }

    fn rejects(&self) -> MutexGuard<'_, HashSet<EventId>> {
        self.rejects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store and publisher relay `relay` works with, and their fault controls.
    pub(crate) fn parts(&self, relay: usize) -> (ObservedStore<S>, TapPublisher<S>, Arc<Controls>) {
        let controls = Arc::new(Controls::default());
        let store = ObservedStore {
            inner: self.store.clone(),
            relay,
            journal: self.journal.clone(),
            controls: Arc::clone(&controls),
        };
        let publisher = TapPublisher {
            world: self.clone(),
            relay,
            controls: Arc::clone(&controls),
        };
        (store, publisher, controls)
    }

    /// Starts relay `relay` with `config` on a task; see [`Running`].
    pub(crate) fn start(&self, relay: usize, config: RelayConfig) -> Running {
        let (store, publisher, controls) = self.parts(relay);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(Relay::new(store, publisher, config).run(async move {
            stopped.await.ok();
        }));
        Running {
            relay,
            controls,
            stop: Some(stop),
            task,
        }
    }

    /// Every envelope the broker accepted, in order (duplicates included).
    pub(crate) fn published(&self) -> Vec<Envelope> {
        self.broker.published()
    }

    pub(crate) fn published_keys(&self) -> Vec<(String, u64)> {
        self.published().iter().map(key).collect()
    }

    /// Which relays' publish calls got events accepted, in order.
    pub(crate) fn publishing_relays(&self) -> Vec<usize> {
        self.journal
            .entries()
            .iter()
            .filter_map(|entry| match entry {
                Entry::Published { relay, accepted } if !accepted.is_empty() => Some(*relay),
                _ => None,
            })
            .collect()
    }

    pub(crate) async fn backlog(&self) -> OutboxBacklog {
        self.store.backlog().await.unwrap()
    }
}

/// A relay running on a task.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) relay: usize,
    pub(crate) controls: Arc<Controls>,
    stop: Option<oneshot::Sender<()>>,
    pub(crate) task: JoinHandle<Result<RelayReport, OutboxError>>,
}

impl Running {
    /// Asks the relay to stop and waits for its report.
    pub(crate) async fn stop(mut self) -> RelayReport {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the relay stops within 10 s")
            .expect("the relay task does not panic")
            .expect("the relay ends without error")
    }

    /// Kills the relay wherever it is (the task is aborted, as a dying process would stop).
    pub(crate) async fn kill(self) {
        self.task.abort();
        let ended = self.task.await;
        assert!(
            ended
                .as_ref()
                .is_err_and(tokio::task::JoinError::is_cancelled),
            "the relay was still running: {ended:?}"
        );
    }
}

/// A memory outbox that writes marks into the journal, yields before each call (so that
/// relays on one thread interleave), and obeys its relay's [`Controls`].
#[derive(Debug, Clone)]
pub(crate) struct ObservedStore<S = MemoryOutboxStore> {
    inner: S,
    relay: usize,
    journal: Journal,
    controls: Arc<Controls>,
}

impl<S: OutboxStore> OutboxStore for ObservedStore<S> {
    async fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<RelayLease>, OutboxError> {
        tokio::task::yield_now().await;
        if Controls::get(&self.controls.lease_calls_fail) {
            return Err(OutboxError::storage(
                "acquiring the lease",
                "injected: the store is unreachable",
            ));
        }
        let lease = self.inner.acquire_lease(owner, ttl).await;
        if matches!(lease, Ok(Some(_))) {
            self.journal.push(Entry::Leased { relay: self.relay });
        }
        lease
    }

    async fn release_lease(&self, lease: &RelayLease) -> Result<(), OutboxError> {
        tokio::task::yield_now().await;
        self.inner.release_lease(lease).await
    }

    async fn fetch_ready(&self, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        tokio::task::yield_now().await;
        self.journal.push(Entry::Fetched { relay: self.relay });
        self.inner.fetch_ready(limit).await
    }

    async fn mark_published(
        &self,
        lease: &RelayLease,
        positions: &[Position],
    ) -> Result<(), OutboxError> {
        tokio::task::yield_now().await;
        let result = if self.controls.lose_next_mark.swap(false, Ordering::SeqCst) {
            Err(OutboxError::LeaseLost {
                lease: "injected".into(),
            })
        } else {
            self.inner.mark_published(lease, positions).await
        };
        self.journal.push(Entry::Marked {
            relay: self.relay,
            positions: positions.to_vec(),
            result: refusal(&result),
        });
        result
    }

    async fn mark_failed(
        &self,
        lease: &RelayLease,
        failures: &[Failure],
    ) -> Result<(), OutboxError> {
        tokio::task::yield_now().await;
        let at = SystemTime::now();
        let result = self.inner.mark_failed(lease, failures).await;
        self.journal.push(Entry::Failed {
            relay: self.relay,
            failures: failures.to_vec(),
            at,
            result: refusal(&result),
        });
        result
    }

    async fn unpark_all(&self) -> Result<u64, OutboxError> {
        self.inner.unpark_all().await
    }

    async fn backlog(&self) -> Result<OutboxBacklog, OutboxError> {
        self.inner.backlog().await
    }
}

/// The world's memory broker seen by one relay: applies the world's rejections (keeping the
/// per-aggregate rule: rounds, and nothing after a failure of the aggregate), writes what
/// was accepted into the journal, and obeys its relay's [`Controls`].
#[derive(Debug, Clone)]
pub(crate) struct TapPublisher<S = MemoryOutboxStore> {
    world: World<S>,
    relay: usize,
    controls: Arc<Controls>,
}

impl<S: OutboxStore + Clone + std::fmt::Debug + 'static> Publisher for TapPublisher<S> {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        Controls::set(&self.controls.publishing, true);
        let delay = self.controls.publish_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let results = self.send_in_rounds(envelopes).await;
        let accepted = envelopes
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|(envelope, _)| envelope.id())
            .collect();
        self.world.journal.push(Entry::Published {
            relay: self.relay,
            accepted,
        });
        if Controls::get(&self.controls.hang_after_publish) {
            Controls::set(&self.controls.hanging, true);
            std::future::pending::<()>().await;
        }
        results
    }
}

impl<S: OutboxStore + Clone + std::fmt::Debug + 'static> TapPublisher<S> {
    /// Round `k` holds the `k`-th envelope of each aggregate; an aggregate that failed
    /// sends nothing more.
    async fn send_in_rounds(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        let mut next_round: HashMap<(String, String), usize> = HashMap::new();
        for (index, envelope) in envelopes.iter().enumerate() {
            let round = next_round.entry(aggregate(envelope)).or_insert(0);
            if rounds.len() <= *round {
                rounds.push(Vec::new());
            }
            rounds[*round].push(index);
            *round += 1;
        }
        let mut results: Vec<Option<PublishResult>> = vec![None; envelopes.len()];
        let mut failed: HashMap<(String, String), EventId> = HashMap::new();
        for round in rounds {
            let mut to_send = Vec::new();
            for index in round {
                let envelope = &envelopes[index];
                if let Some(earlier) = failed.get(&aggregate(envelope)) {
                    results[index] =
                        Some(Err(PublishError::EarlierEventFailed { earlier: *earlier }));
                } else if self.world.rejects().remove(&envelope.id()) {
                    results[index] = Some(Err(PublishError::Rejected {
                        event_id: envelope.id(),
                        code: "Injected".into(),
                        message: "the test rejected this event".into(),
                    }));
                    failed.insert(aggregate(envelope), envelope.id());
                } else {
                    to_send.push(index);
                }
            }
            let batch: Vec<Envelope> = to_send
                .iter()
                .map(|&index| envelopes[index].clone())
                .collect();
            let sent = self.world.broker.publish_batch(&batch).await;
            for (index, result) in to_send.into_iter().zip(sent) {
                if result.is_err() {
                    failed.insert(aggregate(&envelopes[index]), envelopes[index].id());
                }
                results[index] = Some(result);
            }
        }
        results.into_iter().map(Option::unwrap).collect()
    }
}

fn aggregate(envelope: &Envelope) -> (String, String) {
    (
        envelope.aggregate_type().as_str().to_owned(),
        envelope.aggregate_id().as_str().to_owned(),
    )
}

/// A shared wake signal.
pub(crate) fn wake() -> Arc<Notify> {
    Arc::new(Notify::new())
}
