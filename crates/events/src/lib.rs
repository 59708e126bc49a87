//! Events between services that each own their database: the envelope, typed events with
//! upcasting, and idempotent consumers.
//!
//! - [`envelope`]: the [`Envelope`](envelope::Envelope) every event travels in, typed
//!   events ([`Event`](envelope::Event)) with upcasting of old schema versions, and the
//!   envelope's forms on the wire: its JSON body, message attributes, CloudEvents 1.0, and
//!   the size limits of SNS, SQS and EventBridge.
//!
//! (Crate documentation is completed as the modules land.)

#[cfg(feature = "sqlite")]
pub mod bus;
pub mod consumer;
pub mod envelope;
pub mod idempotency;
pub mod publish;

mod error_chain;
pub(crate) use error_chain::error_chain;
