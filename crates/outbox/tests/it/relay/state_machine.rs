//! A state-machine property of the relay: random sequences of commits, aborted units of
//! work, relays started, stopped, killed mid-batch or cut off from their lease, and broker
//! failures, against a model of what was committed. After draining with a healthy broker:
//!
//! - every committed event was published at least once;
//! - no event of an aborted unit of work was ever published;
//! - per aggregate, the first publications come in sequence order (`n + 1` never before `n`);
//! - an event is published more than once only when a relay published it and then did not
//!   mark it because it was killed or lost its lease (the at-least-once window), and at most
//!   once more per such miss;
//! - the report of each relay that stopped agrees with what the broker saw from it.
//!
//! The runtime is single-threaded and relays interleave at every store call (the observed
//! store yields); leases and retries run on real time, with a 40 ms lease.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use dovetail_events::consumer::RetryBackoff;
use dovetail_events::envelope::{Envelope, EventId};
use dovetail_outbox::relay::{RelayConfig, RelayReport};
use dovetail_outbox::{OutboxStore, Position};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio::sync::Notify;

use super::fixtures::{Controls, Entry, Refusal, Running, World, event, wake};

const AGGREGATES: u8 = 4;
const LEASE_TTL: Duration = Duration::from_millis(40);
const MAX_RELAYS: usize = 3;

/// One step of a case.
#[derive(Debug, Clone)]
enum Op {
    /// A unit of work commits one event for each aggregate listed, in order.
    Commit(Vec<u8>),
    /// A unit of work builds events for these aggregates and rolls back.
    Abort(Vec<u8>),
    /// Time passes (milliseconds).
    Run(u64),
    /// Another relay instance starts (up to three at once).
    StartRelay,
    /// A relay stops gracefully.
    StopRelay(Index),
    /// A relay is killed, mid-batch if it is publishing: after the broker accepted the
    /// batch and before the relay marks it.
    KillRelay(Index),
    /// A relay cannot reach the store's lease for longer than the lease lasts, and its
    /// publishes are slow meanwhile: another relay may take over while it publishes.
    CutOffRelay(Index),
    /// The broker fails the next publish of a committed event (retriable).
    FailOnce(Index),
    /// The broker refuses the next publish of a committed event (not retriable: parks it).
    Reject(Index),
    /// The broker is down for a while (milliseconds).
    Outage(u64),
}

fn aggregates(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0..AGGREGATES, 1..=max)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => aggregates(4).prop_map(Op::Commit),
        1 => aggregates(3).prop_map(Op::Abort),
        3 => (1_u64..15).prop_map(Op::Run),
        1 => Just(Op::StartRelay),
        1 => any::<Index>().prop_map(Op::StopRelay),
        1 => any::<Index>().prop_map(Op::KillRelay),
        1 => any::<Index>().prop_map(Op::CutOffRelay),
        2 => any::<Index>().prop_map(Op::FailOnce),
        1 => any::<Index>().prop_map(Op::Reject),
        1 => (1_u64..20).prop_map(Op::Outage),
    ]
}

/// What the test knows was committed and rolled back.
#[derive(Debug, Default)]
struct Model {
    /// The last committed sequence of each aggregate.
    last_sequence: HashMap<u8, u64>,
    /// Committed events, in commit order.
    committed: Vec<EventId>,
    /// Where each committed event sits in the outbox.
    by_position: HashMap<Position, EventId>,
    /// Events of rolled-back units of work.
    aborted: HashSet<EventId>,
}

impl Model {
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

    fn commit(&mut self, aggregates: &[u8], world: &World) {
        let envelopes = self.build(aggregates);
        for aggregate in aggregates {
            *self.last_sequence.entry(*aggregate).or_insert(0) += 1;
        }
        let ids: Vec<EventId> = envelopes.iter().map(Envelope::id).collect();
        let positions = world.store.commit(envelopes);
        self.by_position
            .extend(positions.into_iter().zip(ids.iter().copied()));
        self.committed.extend(ids);
    }

    fn abort(&mut self, aggregates: &[u8]) {
        // The sequences are not used up: a rolled-back transaction stamped nothing.
        self.aborted
            .extend(self.build(aggregates).iter().map(Envelope::id));
    }

    fn pick(&self, index: &Index) -> Option<EventId> {
        (!self.committed.is_empty()).then(|| self.committed[index.index(self.committed.len())])
    }
}

/// The relays of a case.
struct Relays {
    world: World,
    wake: Arc<Notify>,
    batch_size: usize,
    live: Vec<Running>,
    next_id: usize,
    killed: HashSet<usize>,
    reports: HashMap<usize, RelayReport>,
}

impl Relays {
    fn config(&self, id: usize) -> RelayConfig {
        let mut config = RelayConfig::default();
        config.name = "state-machine".into();
        config.owner = format!("relay-{id}");
        config.lease_ttl = LEASE_TTL;
        config.renew_every = Duration::from_millis(10);
        config.poll_interval = Duration::from_millis(5);
        config.batch_size = self.batch_size;
        config.backoff = RetryBackoff::new(Duration::from_millis(1), Duration::from_millis(8));
        config.max_attempts = 3;
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
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.killed.insert(relay.relay);
        relay.kill().await;
    }

    async fn cut_off(&self, at: usize) {
        let controls = &self.live[at].controls;
        Controls::set(&controls.lease_calls_fail, true);
        let outage = LEASE_TTL + Duration::from_millis(20);
        let slow = u64::try_from(outage.as_millis()).unwrap();
        controls.publish_delay_ms.store(slow, Ordering::SeqCst);
        tokio::time::sleep(outage + Duration::from_millis(10)).await;
        Controls::set(&controls.lease_calls_fail, false);
        controls.publish_delay_ms.store(0, Ordering::SeqCst);
    }
}

async fn apply(op: &Op, model: &mut Model, relays: &mut Relays) {
    let world = relays.world.clone();
    match op {
        Op::Commit(aggregates) => {
            model.commit(aggregates, &world);
            relays.wake.notify_one();
        }
        Op::Abort(aggregates) => model.abort(aggregates),
        Op::Run(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Op::StartRelay => {
            if relays.live.len() < MAX_RELAYS {
                relays.start();
            }
        }
        Op::StopRelay(index) => {
            if let Some(at) = relays.pick(index) {
                relays.stop(at).await;
            }
        }
        Op::KillRelay(index) => {
            if let Some(at) = relays.pick(index) {
                relays.kill(at).await;
            }
        }
        Op::CutOffRelay(index) => {
            if let Some(at) = relays.pick(index) {
                relays.cut_off(at).await;
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
        Op::Outage(ms) => {
            world.broker.set_unavailable(true);
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            world.broker.set_unavailable(false);
        }
    }
}

/// Stops every relay, heals the broker, and runs one more relay until the outbox is empty,
/// releasing parked records as it goes.
async fn drain(relays: &mut Relays) -> Result<(), TestCaseError> {
    while !relays.live.is_empty() {
        relays.stop(0).await;
    }
    let world = relays.world.clone();
    world.broker.set_unavailable(false);
    world.clear_rejects();
    relays.start();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        world.store.unpark_all().await.unwrap();
        relays.wake.notify_one();
        if world.backlog().await.pending == 0 {
            break;
        }
        prop_assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not drain: {:?}",
            world.backlog().await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    relays.stop(0).await;
    Ok(())
}

/// After a mark refused for a lost lease, a relay fetches nothing more until the lease is
/// granted to it again: no double work beyond the batch in hand.
fn fenced_relays_stop(entries: &[Entry]) -> Result<(), TestCaseError> {
    let mut fenced: HashSet<usize> = HashSet::new();
    for entry in entries {
        match entry {
            Entry::Marked {
                relay,
                result: Err(Refusal::LeaseLost),
                ..
            }
            | Entry::Failed {
                relay,
                result: Err(Refusal::LeaseLost),
                ..
            } => {
                fenced.insert(*relay);
            }
            Entry::Leased { relay } => {
                fenced.remove(relay);
            }
            Entry::Fetched { relay } => {
                prop_assert!(
                    !fenced.contains(relay),
                    "relay {relay} fetched again after its lease was lost, before taking it again"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Acceptances that no successful mark followed, per event, after checking that each has
/// an allowed cause (the relay was killed, or lost its lease).
fn unmarked_acceptances(
    entries: &[Entry],
    model: &Model,
    relays: &Relays,
) -> Result<HashMap<EventId, usize>, TestCaseError> {
    let mut unmarked: HashMap<EventId, usize> = HashMap::new();
    let mut in_hand: HashMap<usize, Vec<EventId>> = HashMap::new();
    let miss = |ids: Vec<EventId>, unmarked: &mut HashMap<EventId, usize>| {
        for id in ids {
            *unmarked.entry(id).or_insert(0) += 1;
        }
    };
    for entry in entries {
        match entry {
            Entry::Published { relay, accepted } => {
                if let Some(previous) = in_hand.remove(relay) {
                    // Published again without marking the last batch: only after a renewal
                    // found its lease taken over.
                    let lost = relays.reports.get(relay).is_none_or(|r| r.leases_lost > 0);
                    prop_assert!(lost, "relay {relay} skipped marks without losing its lease");
                    miss(previous, &mut unmarked);
                }
                if !accepted.is_empty() {
                    in_hand.insert(*relay, accepted.clone());
                }
            }
            Entry::Marked {
                relay,
                positions,
                result,
            } => {
                let batch = in_hand.remove(relay).unwrap_or_default();
                match result {
                    Ok(()) => {
                        let marked: HashSet<EventId> =
                            positions.iter().map(|p| model.by_position[p]).collect();
                        let accepted: HashSet<EventId> = batch.iter().copied().collect();
                        prop_assert_eq!(
                            marked,
                            accepted,
                            "relay {} marks what was accepted",
                            relay
                        );
                    }
                    Err(Refusal::LeaseLost) => miss(batch, &mut unmarked),
                    Err(Refusal::Other) => prop_assert!(false, "no store failure was injected"),
                }
            }
            Entry::Failed { .. } | Entry::Leased { .. } | Entry::Fetched { .. } => {}
        }
    }
    for (relay, batch) in in_hand {
        prop_assert!(
            relays.killed.contains(&relay),
            "relay {relay} stopped without marking its last batch"
        );
        miss(batch, &mut unmarked);
    }
    Ok(unmarked)
}

fn check(model: &Model, relays: &Relays) -> Result<(), TestCaseError> {
    let world = &relays.world;
    let published = world.published();
    let mut times: HashMap<EventId, usize> = HashMap::new();
    for envelope in &published {
        *times.entry(envelope.id()).or_insert(0) += 1;
    }

    for id in &model.committed {
        prop_assert!(
            times.contains_key(id),
            "committed event {id} was never published"
        );
    }
    let committed: HashSet<EventId> = model.committed.iter().copied().collect();
    for id in times.keys() {
        prop_assert!(
            !model.aborted.contains(id),
            "aborted event {id} was published"
        );
        prop_assert!(committed.contains(id), "unknown event {id} was published");
    }

    // First publications per aggregate: 1, 2, 3, ... in that order.
    let mut seen: HashSet<EventId> = HashSet::new();
    let mut next: HashMap<String, u64> = HashMap::new();
    for envelope in &published {
        if seen.insert(envelope.id()) {
            let aggregate = envelope.aggregate_id().as_str().to_owned();
            let expected = next.entry(aggregate.clone()).or_insert(1);
            prop_assert_eq!(
                envelope.sequence().get(),
                *expected,
                "first publication of {} out of order",
                aggregate
            );
            *expected += 1;
        }
    }

    let entries = world.journal.entries();
    fenced_relays_stop(&entries)?;
    let unmarked = unmarked_acceptances(&entries, model, relays)?;
    for (id, count) in &times {
        let window = unmarked.get(id).copied().unwrap_or(0);
        prop_assert!(
            *count <= 1 + window,
            "event {id} published {count} times with only {window} unmarked acceptances"
        );
    }

    for (relay, report) in &relays.reports {
        let accepted: usize = entries
            .iter()
            .map(|entry| match entry {
                Entry::Published { relay: r, accepted } if r == relay => accepted.len(),
                _ => 0,
            })
            .sum();
        prop_assert_eq!(
            report.published,
            u64::try_from(accepted).unwrap(),
            "relay {}",
            relay
        );
    }
    Ok(())
}

async fn run_case(ops: Vec<Op>, batch_size: usize) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut relays = Relays {
        world: World::new(),
        wake: wake(),
        batch_size,
        live: Vec::new(),
        next_id: 0,
        killed: HashSet::new(),
        reports: HashMap::new(),
    };
    relays.start();
    for op in &ops {
        apply(op, &mut model, &mut relays).await;
    }
    drain(&mut relays).await?;
    check(&model, &relays)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn relays_publish_every_committed_event_at_least_once_and_in_order(
        ops in proptest::collection::vec(op(), 1..24),
        batch_size in 1_usize..6,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(run_case(ops, batch_size))?;
    }
}

/// The check itself catches what it should: a relay that reorders an aggregate.
#[test]
fn the_order_check_catches_a_reordering() {
    let world = World::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (second, first) = (event("agg-0", 2), event("agg-0", 1));
    let model = Model {
        committed: vec![first.id(), second.id()],
        ..Model::default()
    };
    runtime.block_on(async {
        use dovetail_events::publish::Publisher as _;
        world.broker.publish_batch(&[second, first]).await;
    });
    let relays = Relays {
        world,
        wake: wake(),
        batch_size: 1,
        live: Vec::new(),
        next_id: 0,
        killed: HashSet::new(),
        reports: HashMap::new(),
    };
    let failure = check(&model, &relays).unwrap_err();
    assert!(failure.to_string().contains("out of order"), "{failure}");
}
