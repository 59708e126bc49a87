//! How the idempotent consumer layer derives keys, holds leases and treats races.

use std::num::NonZeroUsize;
use std::time::Duration;

/// Where the idempotency key of a delivery comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// The `id` of the event envelope in the body (the default). Stable across every
    /// republication of the event by a relay, unlike the transport's message id.
    EventId,
    /// The transport's message id: only for bodies that are not envelopes, since a
    /// republished message gets a new one.
    MessageId,
    /// A message attribute of this name.
    Attribute(String),
}

/// What a delivery does when another consumer holds a live lease on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InProgressPolicy {
    /// Fail retriably at once: the transport redelivers it after its backoff, by when the
    /// other consumer has usually finished (the default; never blocks a handler slot).
    RetryLater,
    /// Wait, polling the store every `poll`, for at most `max_wait`; then fail retriably.
    Wait {
        /// How often to try the claim again.
        poll: Duration,
        /// How long to wait at most.
        max_wait: Duration,
    },
}

/// Configuration of [`IdempotencyLayer`](super::IdempotencyLayer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConfig {
    /// Prefixed to every key, so consumers that share a store never see each other's
    /// records: one namespace per consumer (e.g. `claim-service.policy-replica`).
    pub namespace: String,
    /// Where keys come from.
    pub key_source: KeySource,
    /// How long a claim holds the key before others may take it over.
    pub lease: Duration,
    /// How often a running handler extends its lease; well under `lease`.
    pub heartbeat_every: Duration,
    /// How long a processed record is kept: duplicates older than this are processed
    /// again. Keep it longer than the transport's longest redelivery (SQS: 14 days).
    pub retain: Duration,
    /// What to do when another consumer holds the key.
    pub in_progress: InProgressPolicy,
    /// Keys remembered in this process as processed, answering duplicates without a
    /// round trip to the store; `None` turns the cache off.
    pub cache_capacity: Option<NonZeroUsize>,
}

impl IdempotencyConfig {
    /// Defaults for `namespace`: keys from the event id, 30 s leases extended every 10 s,
    /// records kept 14 days, retry later when in progress, a cache of 10,000 keys.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            key_source: KeySource::EventId,
            lease: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            retain: Duration::from_secs(14 * 24 * 3600),
            in_progress: InProgressPolicy::RetryLater,
            cache_capacity: NonZeroUsize::new(10_000),
        }
    }
}
