//! Errors of the embedded bus.

/// What went wrong in the embedded bus.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The bus's SQLite file could not be read or written (disk full, permissions,
    /// corruption, locked by another program).
    ///
    /// ### Handling
    /// Retriable when transient (locked, busy); otherwise an operator must fix the file or
    /// the disk. Nothing was half-written: every bus operation is one transaction.
    #[error("the embedded bus storage failed: {0}")]
    Storage(String),
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

impl From<rusqlite::Error> for BusError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Storage(crate::error_chain(&error))
    }
}
