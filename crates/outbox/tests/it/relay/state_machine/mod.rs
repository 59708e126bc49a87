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
//! store yields); leases and retries run on real time, with a 40 ms lease on the memory
//! store. The same cases run on DynamoDB against the emulator
//! (`needs_servers::dynamodb_state_machine`), through [`run_case`] with another
//! [`Writer`] and slower [`Timing`].

use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::relay::fixtures::World;

mod check;
mod model;

pub(crate) use model::{MemoryWriter, Timing, Writer};
use model::{Model, Relays};

const AGGREGATES: u8 = 4;

/// The memory store's clock: a 40 ms lease, `Run` in milliseconds.
pub(crate) const MEMORY: Timing = Timing {
    lease_ttl: Duration::from_millis(40),
    renew_every: Duration::from_millis(10),
    poll_interval: Duration::from_millis(5),
    run_unit: Duration::from_millis(1),
    drain_within: Duration::from_secs(10),
};

/// One step of a case.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A unit of work commits one event for each aggregate listed, in order.
    Commit(Vec<u8>),
    /// A unit of work builds events for these aggregates and rolls back.
    Abort(Vec<u8>),
    /// Time passes (in units of the case's `Timing::run_unit`).
    Run(u32),
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
    /// The broker is down for a while (in `run_unit`s).
    Outage(u32),
}

fn aggregates(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0..AGGREGATES, 1..=max)
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => aggregates(4).prop_map(Op::Commit),
        1 => aggregates(3).prop_map(Op::Abort),
        3 => (1_u32..15).prop_map(Op::Run),
        1 => Just(Op::StartRelay),
        1 => any::<Index>().prop_map(Op::StopRelay),
        1 => any::<Index>().prop_map(Op::KillRelay),
        1 => any::<Index>().prop_map(Op::CutOffRelay),
        2 => any::<Index>().prop_map(Op::FailOnce),
        1 => any::<Index>().prop_map(Op::Reject),
        1 => (1_u32..20).prop_map(Op::Outage),
    ]
}

/// How the relays of a case are set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setup {
    pub(crate) batch_size: usize,
    pub(crate) mark_while_publishing: bool,
}

/// Random setups: batches of one to five, marks overlapping publishes or not.
pub(crate) fn setup() -> impl Strategy<Value = Setup> {
    (1_usize..6, any::<bool>()).prop_map(|(batch_size, mark_while_publishing)| Setup {
        batch_size,
        mark_while_publishing,
    })
}

/// Runs `ops` with relays set up as `setup` says on `writer`'s outbox, drains it, and
/// checks the outcome.
pub(crate) async fn run_case<W: Writer>(
    ops: Vec<Op>,
    setup: Setup,
    mut writer: W,
    timing: Timing,
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let mut relays = Relays::new(World::on(writer.store()), setup.batch_size, timing);
    relays.mark_while_publishing = setup.mark_while_publishing;
    relays.start_first();
    for op in &ops {
        relays.apply(op, &mut model, &mut writer).await;
    }
    relays.drain().await?;
    check::check(&model, &relays)
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
        setup in setup(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(run_case(ops, setup, MemoryWriter::default(), MEMORY))?;
    }
}
