//! Errors of the embedded bus.

use std::sync::Arc;

/// What went wrong in the embedded bus.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus's SQLite file could not be read or written (disk full, permissions,
    /// corruption, locked by another program).
    ///
    /// ### Handling
    /// Retriable when transient (locked, busy); otherwise an operator must fix the file or
    /// the disk. Nothing was half-written: every bus operation is one transaction.
    #[error("the embedded bus storage failed {operation}")]
    Storage {
        /// What was being done, such as `opening /data/bus.db`.
        operation: String,
        /// SQLite's error, or what was wrong with what it held.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// No topic of this name was created.
    ///
    /// ### Handling
    /// Create it first with [`EmbeddedBus::create_topic`](super::EmbeddedBus::create_topic).
    #[error("the embedded bus has no topic `{0}`; create it with EmbeddedBus::create_topic")]
    UnknownTopic(String),
    /// No subscription of this name was created.
    ///
    /// ### Handling
    /// Create it first with [`EmbeddedBus::subscribe`](super::EmbeddedBus::subscribe).
    #[error("the embedded bus has no subscription `{0}`; create it with EmbeddedBus::subscribe")]
    UnknownSubscription(String),
    /// A subscription of this name exists with a different topic, filter or redrive limit.
    ///
    /// ### Handling
    /// Use another name, or delete the old subscription first.
    #[error("subscription `{name}` already exists with other settings: {existing}")]
    SubscriptionConflict {
        /// The subscription.
        name: String,
        /// Its existing settings.
        existing: String,
    },
    /// The receipt no longer matches the message: its visibility timeout lapsed and it was
    /// received again (or it was already settled).
    ///
    /// ### Handling
    /// Nothing to do: the newer receiver settles the message. Make visibility timeouts
    /// longer than handlers take (the consumer's heartbeat does this for you).
    #[error(
        "the receipt for message {message_id} is stale: the message was received again or settled"
    )]
    StaleReceipt {
        /// The message.
        message_id: String,
    },
}

impl BusError {
    /// A storage failure while doing `operation`, caused by `source` (an error, or a
    /// message saying what was wrong).
    pub(crate) fn storage(
        operation: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Storage {
            operation: operation.into(),
            source: Arc::from(source.into()),
        }
    }
}

impl From<rusqlite::Error> for BusError {
    fn from(error: rusqlite::Error) -> Self {
        Self::storage("reading or writing the bus's SQLite file", error)
    }
}
