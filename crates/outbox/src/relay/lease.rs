//! The lease as the relay holds it: the store's [`RelayLease`] plus the local deadlines for
//! renewing it and for giving it up as lapsed.
//!
//! The relay measures the lease on its own monotonic clock, from the moment it *sent* the
//! acquire or renew call: the store's lease cannot last longer than that, whatever the
//! clocks of the store's machine say.

use std::pin::pin;
use std::time::Duration;

use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishResult, Publisher};
use tokio::time::Instant;

use super::RelayConfig;
use super::report::Meter;
use crate::{OutboxError, OutboxStore, RelayLease};

/// A lease this relay holds (as far as it knows).
#[derive(Debug, Clone)]
pub(crate) struct HeldLease {
    pub(crate) lease: RelayLease,
    /// When the lease lapses unless renewed before, measured from the call that got it.
    valid_until: Instant,
    /// When to renew it next.
    pub(crate) renew_at: Instant,
}

/// What a renewal found.
#[derive(Debug)]
pub(crate) enum Renewal {
    /// The lease is ours for another `lease_ttl`.
    Renewed,
    /// Another relay holds the lease, or it changed hands since we got it (a new fencing
    /// token): our writes would be refused, so stop publishing.
    Lost,
    /// The store did not answer; the lease may still be ours until it lapses.
    Failed(OutboxError),
}

/// The answer to an acquire or renew call, with the time it was sent.
pub(crate) struct Answer {
    sent_at: Instant,
    result: Result<Option<RelayLease>, OutboxError>,
}

/// Asks `store` for the lease (takes it or renews it).
pub(crate) async fn ask<S: OutboxStore>(store: &S, config: &RelayConfig) -> Answer {
    let sent_at = Instant::now();
    let result = store.acquire_lease(&config.owner, config.lease_ttl).await;
    Answer { sent_at, result }
}

impl Answer {
    /// The lease, when granted.
    pub(crate) fn into_held(self, config: &RelayConfig) -> Result<Option<HeldLease>, OutboxError> {
        let sent_at = self.sent_at;
        Ok(self.result?.map(|lease| HeldLease {
            lease,
            valid_until: sent_at + config.lease_ttl,
            renew_at: sent_at + config.renew_every,
        }))
    }
}

impl HeldLease {
    /// Applies the answer of a renewal.
    pub(crate) fn renewed(&mut self, answer: Answer, config: &RelayConfig) -> Renewal {
        match answer.result {
            Ok(Some(lease)) if lease.fencing_token == self.lease.fencing_token => {
                self.lease = lease;
                self.valid_until = answer.sent_at + config.lease_ttl;
                self.renew_at = answer.sent_at + config.renew_every;
                Renewal::Renewed
            }
            Ok(_) => Renewal::Lost,
            Err(error) => {
                // Try again soon, but not in a tight loop.
                self.renew_at = Instant::now() + retry_delay(config);
                Renewal::Failed(error)
            }
        }
    }

    /// Whether the lease may have lapsed: no renewal succeeded for `lease_ttl`.
    pub(crate) fn lapsed(&self) -> bool {
        Instant::now() >= self.valid_until
    }
}

/// How long to wait before retrying a failed renewal: a fraction of the renewal period, so a
/// few tries fit before the lease lapses.
fn retry_delay(config: &RelayConfig) -> Duration {
    (config.renew_every / 4).max(Duration::from_millis(1))
}

/// Publishes `envelopes`, renewing `held` whenever it is due meanwhile, so that a slow
/// broker call does not let the lease lapse; `None` when a renewal found the lease taken
/// over (the batch is abandoned: the new holder publishes it). A renewal that fails lets
/// the publish go on: if another relay took over meanwhile, the marks are refused by
/// fencing. Shared by the polling and the Streams relay.
pub(crate) async fn publish_renewing<P: Publisher, S: OutboxStore>(
    publisher: &P,
    envelopes: &[Envelope],
    store: &S,
    config: &RelayConfig,
    held: &mut HeldLease,
    meter: &mut Meter,
) -> Option<Vec<PublishResult>> {
    let mut publish = pin!(publisher.publish_batch(envelopes));
    loop {
        tokio::select! {
            results = &mut publish => return Some(results),
            () = tokio::time::sleep_until(held.renew_at) => {}
        }
        let mut renewal = pin!(ask(store, config));
        let (answer, results) = tokio::select! {
            answer = &mut renewal => (answer, None),
            results = &mut publish => (renewal.await, Some(results)),
        };
        match held.renewed(answer, config) {
            Renewal::Renewed => {}
            Renewal::Lost => {
                tracing::warn!(outbox = %config.name, "the outbox lease was taken over during a batch; abandoning it");
                return None;
            }
            Renewal::Failed(error) => {
                meter.store_error();
                tracing::warn!(outbox = %config.name, %error, "could not renew the outbox lease during a batch");
            }
        }
        if results.is_some() {
            return results;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn lease(token: u64) -> RelayLease {
        RelayLease {
            owner: "me".into(),
            fencing_token: token,
            held_until: SystemTime::now(),
        }
    }

    fn answer(result: Result<Option<RelayLease>, OutboxError>) -> Answer {
        Answer {
            sent_at: Instant::now(),
            result,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_keeps_the_token_or_the_lease_is_lost() {
        let config = RelayConfig {
            lease_ttl: Duration::from_secs(3),
            renew_every: Duration::from_secs(1),
            ..RelayConfig::default()
        };
        let mut held = answer(Ok(Some(lease(7))))
            .into_held(&config)
            .unwrap()
            .unwrap();
        assert_eq!(held.renew_at, Instant::now() + Duration::from_secs(1));

        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(matches!(
            held.renewed(answer(Ok(Some(lease(7)))), &config),
            Renewal::Renewed
        ));
        assert!(!held.lapsed());

        let failed = held.renewed(
            answer(Err(OutboxError::storage("renewing", "down"))),
            &config,
        );
        assert!(matches!(failed, Renewal::Failed(_)));
        assert_eq!(held.renew_at, Instant::now() + Duration::from_millis(250));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(held.lapsed(), "no renewal for a whole ttl");

        assert!(matches!(
            held.renewed(answer(Ok(Some(lease(8)))), &config),
            Renewal::Lost
        ));
        assert!(matches!(
            held.renewed(answer(Ok(None)), &config),
            Renewal::Lost
        ));
    }
}
