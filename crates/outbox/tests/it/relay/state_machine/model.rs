//! What a case does and remembers: the [`Writer`] that commits into an outbox (the memory
//! one here; DynamoDB's under `needs_servers`), the [`Model`] of what was committed and
//! rolled back, the running [`Relays`], and how each [`Op`] applies to them.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dovetail_events::consumer::RetryBackoff;
use dovetail_events::envelope::{Envelope, EventId};
use dovetail_outbox::relay::{RelayConfig, RelayReport};
use dovetail_outbox::{MemoryOutboxStore, OutboxStore, Position};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio::sync::Notify;

use super::Op;
use crate::relay::fixtures::{Controls, Running, World, event};

const MAX_RELAYS: usize = 3;

/// An outbox the model commits into, the way a service would.
pub(crate) trait Writer {
    /// The relays' side of it.
    type Store: OutboxStore + Clone + Debug + 'static;

    /// The store relays work on; its clones share positions with this writer.
    fn store(&self) -> Self::Store;

    /// Commits one event for each aggregate listed (in order) in one unit of work;
    /// answers each event's id and position.
    fn commit(&mut self, aggregates: &[u8]) -> impl Future<Output = Vec<(EventId, Position)>>;

    /// Builds events for these aggregates in a unit of work that does not commit;
    /// answers, for each, an id a published copy would carry as its own id or its
    /// correlation id.
    fn abort(&mut self, aggregates: &[u8]) -> impl Future<Output = Vec<EventId>>;
}

/// The memory outbox, with sequences stamped as a unit of work would.
#[derive(Debug, Default)]
pub(crate) struct MemoryWriter {
    store: MemoryOutboxStore,
    /// The last committed sequence of each aggregate.
    last_sequence: HashMap<u8, u64>,
}

impl MemoryWriter {
    /// The events a unit of work would build for `aggregates`: each aggregate's next
    /// sequences.
    fn build(&self, aggregates: &[u8]) -> Vec<Envelope> {
        let mut next = self.last_sequence.clone();
        aggregates
            .iter()
            .map(|aggregate| {
                let sequence = next.entry(*aggregate).or_insert(0);
                *sequence += 1;
                event(&format!("agg-{aggregate}"), *sequence)
            })
            .collect()
    }
}

impl Writer for MemoryWriter {
    type Store = MemoryOutboxStore;

    fn store(&self) -> MemoryOutboxStore {
        self.store.clone()
    }

    async fn commit(&mut self, aggregates: &[u8]) -> Vec<(EventId, Position)> {
        let envelopes = self.build(aggregates);
        for aggregate in aggregates {
            *self.last_sequence.entry(*aggregate).or_insert(0) += 1;
        }
        let ids: Vec<EventId> = envelopes.iter().map(Envelope::id).collect();
        let positions = self.store.commit(envelopes);
        ids.into_iter().zip(positions).collect()
    }

    async fn abort(&mut self, aggregates: &[u8]) -> Vec<EventId> {
        // The sequences are not used up: a rolled-back transaction stamped nothing.
        self.build(aggregates).iter().map(Envelope::id).collect()
    }
}

/// What the test knows was committed and rolled back.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// Committed events, in commit order.
    pub(crate) committed: Vec<EventId>,
    /// Where each committed event sits in the outbox.
    pub(crate) by_position: HashMap<Position, EventId>,
    /// Ids (own or correlation) of events of rolled-back units of work.
    pub(crate) aborted: HashSet<EventId>,
}

impl Model {
    async fn commit<W: Writer>(&mut self, writer: &mut W, aggregates: &[u8]) {
        for (id, position) in writer.commit(aggregates).await {
            self.by_position.insert(position, id);
            self.committed.push(id);
        }
    }

    async fn abort<W: Writer>(&mut self, writer: &mut W, aggregates: &[u8]) {
        self.aborted.extend(writer.abort(aggregates).await);
    }

    fn pick(&self, index: &Index) -> Option<EventId> {
        (!self.committed.is_empty()).then(|| self.committed[index.index(self.committed.len())])
    }
}

/// The relays' clock: how long leases last, how often relays renew and poll, how long a
/// `Run` step lasts per unit, how long the final drain may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) lease_ttl: Duration,
    pub(crate) renew_every: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) run_unit: Duration,
    pub(crate) drain_within: Duration,
}

/// The relays of a case.
pub(crate) struct Relays<S = MemoryOutboxStore> {
    pub(crate) world: World<S>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) batch_size: usize,
    /// The relays' `mark_while_publishing`.
    pub(crate) mark_while_publishing: bool,
    pub(crate) timing: Timing,
    pub(crate) live: Vec<Running>,
    pub(crate) next_id: usize,
    pub(crate) killed: HashSet<usize>,
    pub(crate) reports: HashMap<usize, RelayReport>,
}

impl<S: OutboxStore + Clone + Debug + 'static> Relays<S> {
    pub(crate) fn new(world: World<S>, batch_size: usize, timing: Timing) -> Self {
        Self {
            world,
            wake: Arc::new(Notify::new()),
            batch_size,
            mark_while_publishing: true,
            timing,
            live: Vec::new(),
            next_id: 0,
            killed: HashSet::new(),
            reports: HashMap::new(),
        }
    }

    fn config(&self, id: usize) -> RelayConfig {
        let mut config = RelayConfig::default();
        config.name = "state-machine".into();
        config.owner = format!("relay-{id}");
        config.lease_ttl = self.timing.lease_ttl;
        config.renew_every = self.timing.renew_every;
        config.poll_interval = self.timing.poll_interval;
        config.batch_size = self.batch_size;
        config.backoff = RetryBackoff::new(Duration::from_millis(1), Duration::from_millis(8));
        config.max_attempts = 3;
        config.mark_while_publishing = self.mark_while_publishing;
        config.wake = Some(Arc::clone(&self.wake));
        config
    }

    fn start(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let config = self.config(id);
        self.live.push(self.world.start(id, config));
    }

    fn pick(&self, index: &Index) -> Option<usize> {
        (!self.live.is_empty()).then(|| index.index(self.live.len()))
    }

    async fn stop(&mut self, at: usize) {
        let relay = self.live.remove(at);
        let id = relay.relay;
        self.reports.insert(id, relay.stop().await);
    }

    async fn kill(&mut self, at: usize) {
        let relay = self.live.remove(at);
        Controls::set(&relay.controls.hang_after_publish, true);
        // Wait a little for it to be mid-batch; if it has nothing to publish, it dies idle.
        for _ in 0..15 {
            if Controls::get(&relay.controls.hanging) {
                break;
            }
            tokio::time::sleep(self.timing.poll_interval / 2).await;
        }
        self.killed.insert(relay.relay);
        relay.kill().await;
    }

    async fn cut_off(&self, at: usize) {
        let controls = &self.live[at].controls;
        Controls::set(&controls.lease_calls_fail, true);
        let outage = self.timing.lease_ttl + self.timing.lease_ttl / 2;
        let slow = u64::try_from(outage.as_millis()).unwrap();
        controls.publish_delay_ms.store(slow, Ordering::SeqCst);
        tokio::time::sleep(outage + self.timing.lease_ttl / 4).await;
        Controls::set(&controls.lease_calls_fail, false);
        controls.publish_delay_ms.store(0, Ordering::SeqCst);
    }

    /// Starts the case's first relay.
    pub(crate) fn start_first(&mut self) {
        self.start();
    }

    /// Applies `op` to the outbox (through `writer`), the relays and the broker.
    pub(crate) async fn apply<W: Writer>(&mut self, op: &Op, model: &mut Model, writer: &mut W) {
        let world = self.world.clone();
        match op {
            Op::Commit(aggregates) => {
                model.commit(writer, aggregates).await;
                self.wake.notify_one();
            }
            Op::Abort(aggregates) => model.abort(writer, aggregates).await,
            Op::Run(units) => tokio::time::sleep(self.timing.run_unit * *units).await,
            Op::StartRelay => {
                if self.live.len() < MAX_RELAYS {
                    self.start();
                }
            }
            Op::StopRelay(index) => {
                if let Some(at) = self.pick(index) {
                    self.stop(at).await;
                }
            }
            Op::KillRelay(index) => {
                if let Some(at) = self.pick(index) {
                    self.kill(at).await;
                }
            }
            Op::CutOffRelay(index) => {
                if let Some(at) = self.pick(index) {
                    self.cut_off(at).await;
                }
            }
            Op::FailOnce(index) => {
                if let Some(id) = model.pick(index) {
                    world.broker.fail_once(id);
                }
            }
            Op::Reject(index) => {
                if let Some(id) = model.pick(index) {
                    world.reject_once(id);
                }
            }
            Op::Outage(units) => {
                world.broker.set_unavailable(true);
                tokio::time::sleep(self.timing.run_unit * *units).await;
                world.broker.set_unavailable(false);
            }
        }
    }

    /// Stops every relay, heals the broker, and runs one more relay until the outbox is
    /// empty, releasing parked records as it goes.
    pub(crate) async fn drain(&mut self) -> Result<(), TestCaseError> {
        while !self.live.is_empty() {
            self.stop(0).await;
        }
        let world = self.world.clone();
        world.broker.set_unavailable(false);
        world.clear_rejects();
        self.start();
        let deadline = tokio::time::Instant::now() + self.timing.drain_within;
        loop {
            world.store.unpark_all().await.unwrap();
            self.wake.notify_one();
            if world.backlog().await.pending == 0 {
                break;
            }
            prop_assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox did not drain: {:?}",
                world.backlog().await
            );
            tokio::time::sleep(self.timing.poll_interval * 2).await;
        }
        self.stop(0).await;
        Ok(())
    }
}
