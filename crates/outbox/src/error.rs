//! Errors of units of work, outbox stores and relays.

/// What went wrong with an outbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// Another writer changed the aggregate since it was read: the expected version did
    /// not match. Nothing of the unit of work was committed.
    ///
    /// ### Handling
    /// Reload the aggregate and decide again (for an HTTP API: 409 Conflict, or 412
    /// Precondition Failed when the version came from `If-Match`).
    #[error(
        "aggregate {aggregate_type}/{aggregate_id} is at version {actual}, not {expected}: \
         another write came first; reload it and try again"
    )]
    Conflict {
        /// The aggregate's type.
        aggregate_type: String,
        /// The aggregate's id.
        aggregate_id: String,
        /// The version the unit of work expected.
        expected: String,
        /// The version found.
        actual: u64,
    },
    /// A condition of the service's own writes in the unit of work failed (on DynamoDB,
    /// the `ConditionExpression` of an action given to `DynamoDbUnitOfWork::write`), so
    /// nothing was committed, events included.
    ///
    /// ### Handling
    /// A business outcome, not a fault: what the condition checks is not as the service
    /// assumed (the item exists already, a limit is reached). Reload it and decide again;
    /// an HTTP API typically answers 409 Conflict. Sending the same unit of work again
    /// fails the same way.
    #[error(
        "the condition of business write(s) {writes:?} failed ({detail}), so nothing was \
         committed; reload what it checks and decide again"
    )]
    BusinessConditionFailed {
        /// The indexes of the writes whose conditions failed, in the order they were
        /// given to the unit of work.
        writes: Vec<usize>,
        /// What the database said about them.
        detail: String,
    },
    /// The unit of work is larger than the backend can commit at once (DynamoDB: 100
    /// actions, 4 MB); nothing was sent.
    ///
    /// ### Handling
    /// Split the work into several units, or keep large data out of the items.
    #[error("the unit of work is over the {limit} limit of {backend}: {actual} (split it)")]
    TooLarge {
        /// The backend whose limit it is.
        backend: &'static str,
        /// The limit, e.g. "100 actions" or "4 MB".
        limit: String,
        /// What the unit of work needed.
        actual: String,
    },
    /// An event could not be turned into an envelope (its payload did not serialize, or a
    /// name was invalid).
    ///
    /// ### Handling
    /// A bug in the event type; nothing was committed.
    #[error("an event could not be enveloped")]
    InvalidEvent {
        /// Why: the payload's serialization error, or what was wrong with a name, a
        /// version or the event's size.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The relay's lease was taken over by another relay (its fencing token is stale).
    ///
    /// ### Handling
    /// Stop publishing; the other relay carries on. Events this relay published meanwhile
    /// may be published again by it: consumers are idempotent.
    #[error("the relay lease `{lease}` was taken over by another relay")]
    LeaseLost {
        /// The lease's name.
        lease: String,
    },
    /// A relay's configuration cannot work (for example, it renews its lease no sooner
    /// than the lease lapses); the relay did not start.
    ///
    /// ### Handling
    /// A deployment mistake: fix the configuration named in the message.
    #[error("the relay configuration cannot work: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed (locked, full, unreachable, corrupt) while doing `operation`.
    ///
    /// ### Handling
    /// Usually transient: retry the unit of work; a relay retries by itself. The
    /// database's own error is the [`source`](std::error::Error::source): print the
    /// chain (e.g. `anyhow`'s `{:#}`) to see it.
    #[error("the outbox storage failed: {operation}")]
    Storage {
        /// What was being done, such as `fetch_ready` or `opening /data/policy.db`.
        operation: String,
        /// The database's error (SDK and driver types are kept opaque).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl OutboxError {
    /// An [`InvalidEvent`](Self::InvalidEvent): the event could not be enveloped because
    /// of `source` (an error, or a message saying what was wrong).
    pub fn invalid_event(
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::InvalidEvent {
            source: source.into(),
        }
    }

    /// A [`Storage`](Self::Storage) error: `source` failed while doing `operation`. A
    /// `String` or `&str` is accepted as the source for failures that carry no error
    /// value (an answer lacking a field).
    pub fn storage(
        operation: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Storage {
            operation: operation.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::OutboxError;

    #[test]
    fn a_storage_error_names_the_operation_and_keeps_its_source() {
        let error =
            OutboxError::storage("fetch_ready", std::io::Error::other("database is locked"));
        assert_eq!(error.to_string(), "the outbox storage failed: fetch_ready");
        assert_eq!(
            error.source().map(ToString::to_string).as_deref(),
            Some("database is locked")
        );
    }
}
