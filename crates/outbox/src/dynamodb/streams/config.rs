//! [`StreamsRelayConfig`]: how a [`StreamsRelay`](super::StreamsRelay) leases, reads the
//! stream, retries, parks and sweeps.

use std::time::Duration;

use crate::relay::RelayConfig;

/// The most records DynamoDB Streams returns from one `GetRecords` call.
const GET_RECORDS_LIMIT: usize = 1_000;

/// How a [`StreamsRelay`](super::StreamsRelay) works a DynamoDB outbox's stream.
///
/// The lease, retry and parking settings are the polling relay's ([`RelayConfig`]), with
/// the same meaning; `batch_size` is the most stream records read in one `GetRecords` (at
/// most 1000), and `poll_interval` how long the relay waits when the stream had nothing
/// new. Start from [`StreamsRelayConfig::default`]:
///
/// ```
/// use std::time::Duration;
/// use dovetail_outbox::dynamodb::StreamsRelayConfig;
///
/// let mut config = StreamsRelayConfig::default();
/// config.relay.name = "policy-service".into();
/// config.relay.poll_interval = Duration::from_millis(250);
/// config.sweep_every = Duration::from_secs(30);
/// config.sweep_after = Duration::from_secs(120);
/// ```
///
/// As with [`RelayConfig`], each relay instance needs an owner of its own
/// (`relay.owner`); build each instance's configuration from
/// [`StreamsRelayConfig::default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamsRelayConfig {
    /// Lease, batch, polling, wake-up, backoff and parking settings, as for the polling
    /// relay.
    pub relay: RelayConfig,
    /// How often the sweeper looks for pending records the stream did not deliver
    /// (default one minute).
    pub sweep_every: Duration,
    /// How old (since commit) a pending record must be before the sweeper publishes it
    /// (default five minutes). Younger records are left to the stream; keep it well above
    /// the relay's usual lag and far below the stream's 24-hour retention. Zero makes the
    /// sweeper publish every pending record it finds.
    pub sweep_after: Duration,
    /// How often, with the crate's `metrics` feature, the relay reads the outbox's
    /// backlog for the `dovetail_outbox_pending`, `_parked` and `_oldest_pending_seconds`
    /// gauges, the polling relay's (default 15 seconds). Each reading is a strongly
    /// consistent `Query` per shard, so it is kept apart from `poll_interval`.
    pub backlog_every: Duration,
}

impl Default for StreamsRelayConfig {
    fn default() -> Self {
        Self {
            relay: RelayConfig::default(),
            sweep_every: Duration::from_secs(60),
            sweep_after: Duration::from_secs(300),
            backlog_every: Duration::from_secs(15),
        }
    }
}

impl StreamsRelayConfig {
    /// Why the configuration cannot work, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if let Some(problem) = self.relay.problem() {
            Some(problem)
        } else if self.relay.batch_size > GET_RECORDS_LIMIT {
            Some(format!(
                "batch_size ({}) must be at most {GET_RECORDS_LIMIT}, the GetRecords limit",
                self.relay.batch_size
            ))
        } else if self.sweep_every.is_zero() {
            Some("sweep_every must be above zero".to_owned())
        } else if self.backlog_every.is_zero() {
            Some("backlog_every must be above zero".to_owned())
        } else {
            None
        }
    }

    /// The `GetRecords` limit.
    pub(crate) fn records_limit(&self) -> i32 {
        i32::try_from(self.relay.batch_size).unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_problems_named() {
        assert_eq!(StreamsRelayConfig::default().problem(), None);
        let mut config = StreamsRelayConfig::default();
        config.relay.batch_size = 1_001;
        assert!(config.problem().unwrap().contains("batch_size"));
        let config = StreamsRelayConfig {
            sweep_every: Duration::ZERO,
            ..StreamsRelayConfig::default()
        };
        assert!(config.problem().unwrap().contains("sweep_every"));
        let config = StreamsRelayConfig {
            backlog_every: Duration::ZERO,
            ..StreamsRelayConfig::default()
        };
        assert!(config.problem().unwrap().contains("backlog_every"));
        let mut config = StreamsRelayConfig::default();
        config.relay.max_attempts = 0;
        assert!(config.problem().unwrap().contains("max_attempts"));
    }
}
