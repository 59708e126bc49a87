//! [`RelayConfig`]: how a [`Relay`](super::Relay) leases, polls, retries and parks.

use std::sync::Arc;
use std::time::Duration;

use dovetail_events::consumer::RetryBackoff;
use tokio::sync::Notify;

/// How a [`Relay`](super::Relay) works an outbox.
///
/// Start from [`RelayConfig::default`] and change the fields that matter:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use dovetail_events::consumer::RetryBackoff;
/// use dovetail_outbox::relay::RelayConfig;
///
/// let wake = Arc::new(tokio::sync::Notify::new());
/// let mut config = RelayConfig::default();
/// config.name = "policy-service".into();
/// config.batch_size = 50;
/// config.wake = Some(Arc::clone(&wake)); // `wake.notify_one()` after each commit
/// config.backoff = RetryBackoff::new(Duration::from_millis(500), Duration::from_secs(60));
/// config.max_attempts = 8;
/// ```
///
/// Each relay instance needs an owner of its own: a clone of a configuration keeps the
/// owner, and two relays with one owner would both believe they hold the lease. Build each
/// instance's configuration from [`RelayConfig::default`], or set `owner` explicitly.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayConfig {
    /// The outbox's name in metrics (label `outbox`) and logs, e.g. the service's name;
    /// default `"outbox"`. Relays of one outbox share it.
    pub name: String,
    /// This relay instance's lease owner id: unique per instance (default `relay-` and a
    /// random UUID, new for every [`RelayConfig::default`]).
    pub owner: String,
    /// How long the lease lasts unless renewed (default 30 seconds). When a relay dies,
    /// another one takes over at most this long after its last renewal.
    pub lease_ttl: Duration,
    /// How often the holder renews its lease, during long batches too (default 10
    /// seconds). Must be shorter than `lease_ttl`, with room for a few failed renewals.
    pub renew_every: Duration,
    /// The most records fetched and published in one batch (at least 1; default 100).
    pub batch_size: usize,
    /// How long an idle relay waits before looking for work again, and how often a relay
    /// in standby tries to take the lease (default 1 second). With `wake` set, this is only
    /// the fallback for commits of other processes.
    pub poll_interval: Duration,
    /// Signalled after commits in the same process, so the relay publishes at once instead
    /// of at its next poll; with SQLite, `SqliteOutbox::commits()`. A signal of your own
    /// must be given with [`Notify::notify_one`], which keeps it for a relay that is busy
    /// publishing (`notify_waiters` alone would lose it). Only the relay holding the lease
    /// listens. Default: none.
    pub wake: Option<Arc<Notify>>,
    /// The delay before a record that failed retriably is tried again, from its number of
    /// failed attempts (default 1 second doubling up to 5 minutes).
    pub backoff: RetryBackoff,
    /// After this many failed attempts a record is parked: it is not retried until an
    /// operator releases it ([`OutboxStore::unpark_all`](crate::OutboxStore::unpark_all)),
    /// and it holds back its aggregate's later events meanwhile (at least 1; default 10).
    pub max_attempts: u32,
    /// Marks a batch the broker accepted whole while the next batch is being published,
    /// instead of before publishing it (default `true`): the store's work (the mark, and
    /// fetching the batch after) overlaps the broker's. The next batch leaves out the
    /// records in flight, and a batch with any failure is marked before anything else is
    /// fetched, so per-aggregate order is kept either way. The cost: the at-least-once
    /// window is two batches instead of one, since a relay that dies or loses its lease
    /// mid-publish may leave the previous batch unmarked too.
    pub mark_while_publishing: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            name: "outbox".to_owned(),
            owner: format!("relay-{}", uuid::Uuid::new_v4()),
            lease_ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            wake: None,
            backoff: RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(300)),
            max_attempts: 10,
            mark_while_publishing: true,
        }
    }
}

impl RelayConfig {
    /// Why the configuration cannot work, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        if self.name.trim().is_empty() {
            Some("name is empty".to_owned())
        } else if self.owner.trim().is_empty() {
            Some("owner is empty".to_owned())
        } else if self.batch_size == 0 {
            Some("batch_size must be at least 1".to_owned())
        } else if self.max_attempts == 0 {
            Some("max_attempts must be at least 1".to_owned())
        } else if self.poll_interval.is_zero() {
            Some("poll_interval must be above zero".to_owned())
        } else if self.renew_every.is_zero() || self.renew_every >= self.lease_ttl {
            Some(format!(
                "renew_every ({:?}) must be above zero and shorter than lease_ttl ({:?})",
                self.renew_every, self.lease_ttl
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_owners_unique() {
        let config = RelayConfig::default();
        assert_eq!(config.problem(), None);
        assert_ne!(config.owner, RelayConfig::default().owner);
        assert!(config.owner.starts_with("relay-"));
    }

    #[test]
    fn problems_are_named() {
        type Breaks = fn(&mut RelayConfig);
        let broken: [(Breaks, &str); 6] = [
            (|c| c.name = " ".into(), "name"),
            (|c| c.owner = String::new(), "owner"),
            (|c| c.batch_size = 0, "batch_size"),
            (|c| c.max_attempts = 0, "max_attempts"),
            (|c| c.poll_interval = Duration::ZERO, "poll_interval"),
            (|c| c.renew_every = c.lease_ttl, "renew_every"),
        ];
        for (breaks, named) in broken {
            let mut config = RelayConfig::default();
            breaks(&mut config);
            assert!(config.problem().unwrap().contains(named), "{named}");
        }
    }
}
