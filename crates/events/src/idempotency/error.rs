//! The errors of the idempotency stores.

use std::fmt;

use super::{Fingerprint, IdempotencyKey};

/// The source of a [`IdempotencyError::Backend`] error: the backend client's own error,
/// kept opaque so that no third-party type is part of this crate's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a store was doing when its backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Opening the store or creating its schema or table.
    Open,
    /// [`try_claim`](super::IdempotencyStore::try_claim).
    Claim,
    /// [`heartbeat`](super::IdempotencyStore::heartbeat).
    Heartbeat,
    /// [`complete`](super::IdempotencyStore::complete).
    Complete,
    /// [`release`](super::IdempotencyStore::release).
    Release,
    /// Writing or interpreting a "processed" marker in the caller's transaction.
    MarkProcessed,
    /// Removing expired records.
    Purge,
}

impl fmt::Display for StoreOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Claim => "claim a key",
            Self::Heartbeat => "extend a lease",
            Self::Complete => "complete a key",
            Self::Release => "release a lease",
            Self::MarkProcessed => "mark a key processed",
            Self::Purge => "purge expired records",
        })
    }
}

/// Why an idempotency store refused or failed an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The key was claimed or processed with a payload of another fingerprint: the
    /// producer reused a key for a different message.
    ///
    /// ### Handling
    /// Not retriable and not a duplicate: do not process the message and do not answer
    /// it with the stored outcome. Send it to the dead-letter queue with this reason
    /// (over HTTP: 422 Unprocessable Content).
    #[error(
        "the idempotency key `{key}` was already used for a different payload \
         (stored fingerprint {stored}, this one {presented})"
    )]
    PayloadMismatch {
        /// The reused key.
        key: IdempotencyKey,
        /// The fingerprint of the payload first seen with the key.
        stored: Fingerprint,
        /// The fingerprint of the payload presented now.
        presented: Fingerprint,
    },

    /// The lease is no longer held: it expired and another lease on the key was granted
    /// (a higher fencing token), or it was released, or the record is gone.
    ///
    /// ### Handling
    /// Stop working on the message and do not acknowledge it as processed by this
    /// consumer: its outcome was not recorded, and the key now belongs to another lease
    /// (which will record its own) or to nobody (a redelivery claims it afresh). Effects
    /// already applied may be applied again by the new holder, which is why handlers
    /// fence their writes with the token or keep the window short with heartbeats.
    #[error(
        "the lease on idempotency key `{key}` is lost (it expired and was taken over, or the record is gone)"
    )]
    LeaseLost {
        /// The key of the lost lease.
        key: IdempotencyKey,
    },

    /// A stored record could not be read back: wrong types or sizes, unknown state.
    ///
    /// ### Handling
    /// Not retriable: the record was written by something else or damaged. Alert, and
    /// remove or repair the record by hand; the message stays unprocessed meanwhile.
    #[error("the stored record for idempotency key `{key}` is unreadable: {reason}")]
    CorruptRecord {
        /// The key whose record is unreadable.
        key: IdempotencyKey,
        /// What is wrong with it.
        reason: String,
    },

    /// The backend (database, server, network) failed.
    ///
    /// ### Handling
    /// Usually transient: leave the message for redelivery (do not acknowledge it) and
    /// let the consumer's backoff retry it. The source says what the backend reported.
    #[error("the {store} idempotency store could not {operation}")]
    Backend {
        /// Which store: `"memory"`, `"SQLite"`, `"DynamoDB"`, `"Redis"`, or another
        /// implementation's name.
        store: &'static str,
        /// What it was doing.
        operation: StoreOperation,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl IdempotencyError {
    /// A [`Backend`](Self::Backend) error, for implementations of the store.
    pub fn backend(
        store: &'static str,
        operation: StoreOperation,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            store,
            operation,
            source: source.into(),
        }
    }

    /// Whether trying again later may succeed (the backend failed), as opposed to the
    /// message or the lease being refused for good.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Backend { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_does_not_repeat_the_source() {
        let error = IdempotencyError::backend(
            "SQLite",
            StoreOperation::Claim,
            std::io::Error::other("disk I/O error"),
        );
        let message = error.to_string();
        assert_eq!(
            message,
            "the SQLite idempotency store could not claim a key"
        );
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk I/O error"));
        assert!(error.is_retriable());
    }
}
