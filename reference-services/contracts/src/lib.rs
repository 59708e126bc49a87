//! The published contract of the reference services: the events they exchange and the
//! value types those events carry.
//!
//! In a database-per-service system the events are the only thing services share, so
//! they live here, apart from any service's code: the policy service writes
//! [`policy`] events, the claim service reads them into its own replica and writes
//! [`claim`] events, the auth service writes [`user`] events. Every event carries a full
//! snapshot of its aggregate after the change (event-carried state transfer): a consumer
//! keeps a replica by storing the snapshot with the highest version it has seen, which
//! makes duplicates and reordering harmless without any event-specific logic.

pub mod claim;
pub mod date;
pub mod money;
pub mod policy;
pub mod user;

pub use money::{Money, MoneyError};

/// Why an envelope does not hold the event a consumer expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContractError {
    /// The envelope's type is none this contract knows: subscribe with a filter on the
    /// types you handle, or deploy a consumer that knows the new type.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The payload does not match the schema of its type and version.
    #[error("the payload does not match its schema: {0}")]
    Payload(String),
}
