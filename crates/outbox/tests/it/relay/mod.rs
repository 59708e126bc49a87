//! The relay: its rules one test each (`behaviour`), and a state-machine property over random
//! commits, aborted units of work, relay crashes, lease losses and broker failures
//! (`state_machine`), on the memory outbox and the memory broker.

mod behaviour;
pub(crate) mod fixtures;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
pub(crate) mod state_machine;
