//! The relay: publishes what an outbox committed, in order per aggregate, while it holds the
//! outbox's lease.
//!
//! A [`Relay`] works any [`OutboxStore`] with any [`Publisher`]. [`Relay::run`] loops until
//! its shutdown future completes:
//!
//! 1. **Lease.** It takes the outbox's lease, or stands by while another relay holds it,
//!    trying again every `poll_interval`. It renews the lease every `renew_every`, during
//!    long batches too, and gives it up on shutdown so that a standby relay takes over at
//!    once; a relay that dies loses it after `lease_ttl`.
//! 2. **Batch.** It fetches up to `batch_size` ready records (commit order, per-aggregate
//!    sequence order: the store's rules) and hands their envelopes to the publisher as one
//!    batch, in that order. The publisher never sends an aggregate's later event after an
//!    earlier one failed in the batch; it answers `EarlierEventFailed` for those.
//! 3. **Marks.** Accepted records are marked published (deleted). A failed record gets its
//!    attempt counted and a retry time from the backoff, or is parked after `max_attempts`
//!    failures, or at once when the error is not retriable. A record held back by
//!    `EarlierEventFailed` is left as it was: it is not an attempt of its own, and the store
//!    holds it behind the failed record until that one is published, so the aggregate goes
//!    out in order. A mark refused with [`OutboxError::LeaseLost`] means another relay took
//!    over: this one stops publishing and goes back to step 1.
//!    With [`RelayConfig::mark_while_publishing`] (the default), the marks of a batch the
//!    broker accepted whole go with the next batch's publish, concurrently, together with
//!    the fetch of the batch after ([`OutboxStore::mark_published_then_fetch`], leaving
//!    out the records in flight); a batch with a failure is marked before anything else.
//! 4. **Idle.** With nothing ready it waits for the `wake` signal (a commit in this
//!    process), the earliest retry it scheduled, or `poll_interval`, renewing the lease
//!    meanwhile when due.
//!
//! Delivery is at least once: an event accepted by the broker whose mark is lost (the
//! relay dies, loses its lease, or the store fails between publish and mark) is published
//! again: at most one batch, or two with `mark_while_publishing`. Consumers are idempotent; FIFO topics also drop the duplicate by event id.
//!
//! With the crate's `metrics` feature the relay emits counters, a publish-latency histogram
//! and backlog gauges; see [`RelayReport`] for the same counts without it.

mod config;
pub(crate) mod holding;
pub(crate) mod lease;
pub(crate) mod outcome;
pub(crate) mod report;
mod shutdown;

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, SystemTime};

use dovetail_events::publish::Publisher;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use config::RelayConfig;
pub use report::RelayReport;
pub(crate) use shutdown::Shutdown;

use self::holding::{Holding, LeaseKeeper};
use self::lease::HeldLease;
use self::outcome::BatchOutcome;
use self::report::Meter;
use crate::{OutboxError, OutboxRecord, OutboxStore, Position};

/// Publishes the records of an outbox through a publisher, one relay instance among any
/// number: the one holding the outbox's lease publishes, the others stand by.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
/// use dovetail_events::publish::MemoryPublisher;
/// use dovetail_outbox::relay::{Relay, RelayConfig};
/// use dovetail_outbox::{MemoryOutboxStore, OutboxStore};
/// # #[derive(serde::Serialize, serde::Deserialize)]
/// # struct PolicyIssued { policy_id: String }
/// # impl dovetail_events::envelope::Event for PolicyIssued {
/// #     const TYPE: &'static str = "policy.issued";
/// #     const VERSION: u32 = 1;
/// # }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = MemoryOutboxStore::new();
/// let broker = MemoryPublisher::new();
/// let wake = Arc::new(tokio::sync::Notify::new());
/// let mut config = RelayConfig::default();
/// config.wake = Some(Arc::clone(&wake));
///
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let relay = Relay::new(outbox.clone(), broker.clone(), config);
/// let running = tokio::spawn(relay.run(async move { stopped.await.ok(); }));
///
/// // A unit of work commits an event, then wakes the relay.
/// outbox.commit(vec![Envelope::new(
///     Source::parse("policy-service")?,
///     AggregateRef::parse("policy", "pol-1")?,
///     Sequence::FIRST,
///     &PolicyIssued { policy_id: "pol-1".into() },
///     EventMetadata::default(),
/// )?]);
/// wake.notify_one();
///
/// while broker.published().is_empty() {
///     tokio::time::sleep(Duration::from_millis(5)).await;
/// }
/// stop.send(()).ok();
/// let report = running.await??;
/// assert_eq!(report.published, 1);
/// assert_eq!(outbox.backlog().await?.pending, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Relay<S, P> {
    store: S,
    publisher: P,
    config: RelayConfig,
}

/// How one batch ended.
enum Batch {
    /// Its marks were written, or are deferred to go with the publish of `next`.
    /// `progress` is whether they change anything; `soonest_retry` is when the first
    /// record it scheduled for a retry is due, from now.
    Done {
        progress: bool,
        soonest_retry: Option<Duration>,
        next: Option<Ahead>,
    },
    /// A mark was refused, or a renewal found the lease gone: another relay took over.
    LeaseLost,
    /// A mark failed; the records it did not mark will be published again.
    StoreFailed,
}

/// How often a busy relay reads the backlog for its gauges, at most.
const BUSY_BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// A batch the broker accepted whole, whose mark goes with the publish of the next batch,
/// and that next batch, fetched while the first one was published
/// ([`RelayConfig::mark_while_publishing`]).
struct Ahead {
    /// The accepted batch's positions, not marked yet.
    unmarked: Vec<Position>,
    /// Ready records, none of them in `unmarked`, in the store's order.
    next: Vec<OutboxRecord>,
}

impl<S, P> Relay<S, P>
where
    S: OutboxStore,
    P: Publisher,
{
    /// A relay that publishes the records of `store` through `publisher`.
    pub fn new(store: S, publisher: P, config: RelayConfig) -> Self {
        Self {
            store,
            publisher,
            config,
        }
    }

    /// This instance's lease owner id.
    pub fn owner(&self) -> &str {
        &self.config.owner
    }

    /// Publishes until `shutdown` completes, then finishes the batch in hand, releases the
    /// lease and returns what it did.
    ///
    /// Store failures are logged, counted and retried after `poll_interval`; they do not
    /// end the relay.
    ///
    /// # Errors
    /// [`OutboxError::InvalidConfig`] when the configuration cannot work; the relay does
    /// not start.
    pub async fn run<F: Future>(self, shutdown: F) -> Result<RelayReport, OutboxError> {
        if let Some(reason) = self.config.problem() {
            return Err(OutboxError::InvalidConfig { reason });
        }
        let signal = pin!(shutdown);
        let mut shutdown = Shutdown::new(signal);
        let mut meter = Meter::new(&self.config.name);
        tracing::info!(outbox = %self.config.name, owner = %self.config.owner, "outbox relay started");
        let keeper = self.keeper();
        let mut last_token = None;
        while let Some(mut held) = keeper
            .take(&mut shutdown, &mut meter, &mut last_token)
            .await
        {
            let end = self
                .publish_while_held(&mut held, &mut shutdown, &mut meter)
                .await;
            if !keeper.ended(&held, end, &mut meter).await {
                break;
            }
        }
        let report = meter.report();
        tracing::info!(outbox = %self.config.name, owner = %self.config.owner, ?report, "outbox relay stopped");
        Ok(report)
    }

    /// The keeper of this relay's lease.
    fn keeper(&self) -> LeaseKeeper<'_, S> {
        LeaseKeeper {
            store: &self.store,
            config: &self.config,
            what: "outbox",
        }
    }

    /// Publishes batches while the lease is ours.
    async fn publish_while_held<F: Future>(
        &self,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        meter: &mut Meter,
    ) -> Holding {
        // The backlog gauges: every `poll_interval` when idle, at most once a second while
        // busy (on SQLite, reading the backlog counts every pending record).
        let mut backlog_read: Option<Instant> = None;
        let due = |read: Option<Instant>, every: Duration| {
            read.is_none_or(|read| read.elapsed() >= every)
        };
        let busy_every = self.config.poll_interval.max(BUSY_BACKLOG_EVERY);
        let mut retry_due: Option<Instant> = None;
        let mut ahead: Option<Ahead> = None;
        loop {
            if shutdown.requested() {
                if let Some(Ahead { unmarked, .. }) = ahead.take() {
                    self.mark_before_stopping(held, &unmarked, meter).await;
                }
                return Holding::Stopped;
            }
            if !self.keeper().renew_if_due(held, meter).await {
                return Holding::Lost;
            }
            if due(backlog_read, busy_every) {
                self.keeper().observe_backlog(meter).await;
                backlog_read = Some(Instant::now());
            }
            let (fetched, unmarked) = match ahead.take() {
                Some(Ahead { unmarked, next }) => (Ok(next), Some(unmarked)),
                None => (self.store.fetch_ready(self.config.batch_size).await, None),
            };
            let rest = match fetched {
                Ok(records) if records.is_empty() => true,
                Ok(records) => match self.publish_batch(records, unmarked, held, meter).await {
                    Batch::Done {
                        progress,
                        soonest_retry,
                        next,
                    } => {
                        if let Some(soonest) = soonest_retry {
                            let due = Instant::now() + soonest;
                            retry_due = Some(retry_due.map_or(due, |earlier| earlier.min(due)));
                        }
                        ahead = next;
                        // A batch that changed nothing (all held back) would come back as is.
                        !progress
                    }
                    Batch::LeaseLost => return Holding::Lost,
                    Batch::StoreFailed => true,
                },
                Err(error) => {
                    meter.store_error();
                    tracing::warn!(outbox = %self.config.name, %error, "could not fetch outbox records; trying again");
                    true
                }
            };
            if !rest {
                continue;
            }
            if due(backlog_read, self.config.poll_interval) {
                self.keeper().observe_backlog(meter).await;
                backlog_read = Some(Instant::now());
            }
            if let Some(end) = self.rest(held, shutdown, meter, &mut retry_due).await {
                return end;
            }
        }
    }

    /// Waits for the next poll (`poll_interval`, the earliest retry due, or a wake-up),
    /// renewing the lease meanwhile when due. `Some` when the relay must stop holding the
    /// lease.
    async fn rest<F: Future>(
        &self,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        meter: &mut Meter,
        retry_due: &mut Option<Instant>,
    ) -> Option<Holding> {
        let mut poll_at = Instant::now() + self.config.poll_interval;
        if let Some(due) = *retry_due {
            poll_at = poll_at.min(due);
        }
        if let Err(end) = self
            .keeper()
            .rest(poll_at, self.config.wake.as_deref(), held, shutdown, meter)
            .await
        {
            return Some(end);
        }
        if retry_due.is_some_and(|due| due <= Instant::now()) {
            *retry_due = None;
        }
        None
    }

    /// Publishes one batch and marks its records.
    async fn publish_batch(
        &self,
        records: Vec<OutboxRecord>,
        unmarked: Option<Vec<Position>>,
        held: &mut HeldLease,
        meter: &mut Meter,
    ) -> Batch {
        let span = tracing::info_span!(
            "outbox_relay_batch",
            outbox = %self.config.name,
            owner = %self.config.owner,
            fencing_token = held.lease.fencing_token,
            size = records.len(),
            first_position = records.first().map(|record| record.position),
            published = tracing::field::Empty,
            failed = tracing::field::Empty,
            held_back = tracing::field::Empty,
        );
        self.publish_batch_in_span(records, unmarked, held, meter)
            .instrument(span)
            .await
    }

    /// Publishes `records`; meanwhile marks `unmarked` (the previous batch, accepted
    /// whole) and, with `mark_while_publishing`, fetches what comes next.
    async fn publish_batch_in_span(
        &self,
        records: Vec<OutboxRecord>,
        unmarked: Option<Vec<Position>>,
        held: &mut HeldLease,
        meter: &mut Meter,
    ) -> Batch {
        meter.batch();
        let (slots, envelopes) = outcome::slots_of(records);
        let lease = held.lease.clone();
        let in_flight: Vec<Position> = slots.iter().map(|slot| slot.position).collect();
        // The previous batch's mark, then (with `mark_while_publishing`) the next fetch.
        let meanwhile = async {
            let overlap = self.config.mark_while_publishing;
            let limit = self.config.batch_size;
            match (&unmarked, overlap) {
                (Some(positions), true) => match self
                    .store
                    .mark_published_then_fetch(&lease, positions, limit, &in_flight)
                    .await
                {
                    Ok(fetched) => (Ok(()), Some(fetched)),
                    Err(error) => (Err(error), None),
                },
                (Some(positions), false) => {
                    (self.store.mark_published(&lease, positions).await, None)
                }
                (None, true) => (
                    Ok(()),
                    Some(self.store.fetch_ready_except(limit, &in_flight).await),
                ),
                (None, false) => (Ok(()), None),
            }
        };
        let publish = async {
            let started = Instant::now();
            let results = lease::publish_renewing(
                &self.publisher,
                &envelopes,
                &self.store,
                &self.config,
                held,
                meter,
            )
            .await;
            (results, started.elapsed())
        };
        // Boxed: store and publisher futures can be large (the SDKs'), and the relay's
        // own future would carry both inline.
        let ((results, took), (marked, next)) =
            tokio::join!(Box::pin(publish), Box::pin(meanwhile));
        let mut store_failed = match marked {
            Ok(()) => false,
            Err(OutboxError::LeaseLost { .. }) => {
                // What the broker accepted is published, lease or not: the report says so.
                if let Some(results) = results {
                    let outcome =
                        outcome::sort_results(&slots, results, &self.config, SystemTime::now());
                    meter.published(count(outcome.published.len()));
                }
                return Batch::LeaseLost;
            }
            Err(error) => {
                meter.store_error();
                tracing::warn!(%error, "could not mark the previous batch published; it will be published again");
                true
            }
        };
        let Some(results) = results else {
            return Batch::LeaseLost;
        };
        meter.publish_time(took);
        let outcome = outcome::sort_results(&slots, results, &self.config, SystemTime::now());
        let span = tracing::Span::current();
        span.record("published", outcome.published.len());
        span.record("failed", outcome.failures.len());
        span.record("held_back", outcome.held_back);
        meter.published(count(outcome.published.len()));
        meter.held_back(outcome.held_back);

        if !store_failed && let Some(next) = self.next_batch(&outcome, next, meter) {
            return Batch::Done {
                progress: true,
                soonest_retry: None,
                next: Some(Ahead {
                    unmarked: outcome.published,
                    next,
                }),
            };
        }
        match self.mark(held, &outcome, meter).await {
            Ok(failed) => store_failed |= failed,
            Err(lost) => return lost,
        }
        if store_failed {
            Batch::StoreFailed
        } else {
            Batch::Done {
                progress: !outcome.published.is_empty() || !outcome.failures.is_empty(),
                soonest_retry: outcome.soonest_retry,
                next: None,
            }
        }
    }

    /// The next batch, from what was fetched while publishing, when this batch was
    /// accepted whole (a failure must be marked first, so that the store holds its
    /// aggregate back) and there is one.
    fn next_batch(
        &self,
        outcome: &BatchOutcome,
        fetched: Option<Result<Vec<OutboxRecord>, OutboxError>>,
        meter: &mut Meter,
    ) -> Option<Vec<OutboxRecord>> {
        let fetched = match fetched? {
            Ok(fetched) => fetched,
            Err(error) => {
                meter.store_error();
                tracing::warn!(%error, "could not fetch the next outbox records while publishing");
                return None;
            }
        };
        if !outcome.failures.is_empty() || outcome.held_back > 0 {
            return None;
        }
        let in_flight: HashSet<Position> = outcome.published.iter().copied().collect();
        let next: Vec<OutboxRecord> = fetched
            .into_iter()
            .filter(|record| !in_flight.contains(&record.position))
            .take(self.config.batch_size)
            .collect();
        (!next.is_empty()).then_some(next)
    }

    /// Writes the marks of a batch; `Err(Batch::LeaseLost)` when a mark was refused,
    /// `Ok(true)` when one failed.
    async fn mark(
        &self,
        held: &HeldLease,
        outcome: &BatchOutcome,
        meter: &mut Meter,
    ) -> Result<bool, Batch> {
        let mut store_failed = false;
        if !outcome.published.is_empty() {
            match self
                .store
                .mark_published(&held.lease, &outcome.published)
                .await
            {
                Ok(()) => {}
                Err(OutboxError::LeaseLost { .. }) => return Err(Batch::LeaseLost),
                Err(error) => {
                    meter.store_error();
                    store_failed = true;
                    tracing::warn!(%error, count = outcome.published.len(), "could not mark published records; they will be published again");
                }
            }
        }
        if !outcome.failures.is_empty() {
            match self.store.mark_failed(&held.lease, &outcome.failures).await {
                Ok(()) => {
                    meter.failed(count(outcome.failures.len()), outcome.parked);
                    for failure in &outcome.failures {
                        if failure.retry_at.is_none() {
                            tracing::warn!(position = failure.position, reason = %failure.reason, "outbox record parked");
                        } else {
                            tracing::debug!(position = failure.position, reason = %failure.reason, "outbox record failed; will retry");
                        }
                    }
                }
                Err(OutboxError::LeaseLost { .. }) => return Err(Batch::LeaseLost),
                Err(error) => {
                    meter.store_error();
                    store_failed = true;
                    tracing::warn!(%error, count = outcome.failures.len(), "could not record failed publishes");
                }
            }
        }
        Ok(store_failed)
    }

    /// Marks the batch accepted last before the relay stops (what it has fetched beyond
    /// is left for the next relay).
    async fn mark_before_stopping(
        &self,
        held: &HeldLease,
        unmarked: &[Position],
        meter: &mut Meter,
    ) {
        if let Err(error) = self.store.mark_published(&held.lease, unmarked).await {
            meter.store_error();
            tracing::warn!(%error, count = unmarked.len(), "could not mark the last batch published; it will be published again");
        }
    }
}

/// A count for the report.
fn count(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}
