//! What a batch's publish results mean for the outbox: which records to mark published,
//! which to schedule for a retry or park, and which to leave alone.

use std::time::{Duration, SystemTime};

use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishError, PublishResult};

use super::RelayConfig;
use crate::{Failure, OutboxRecord, Position};

/// What the relay keeps of a record while its envelope is with the publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    /// The record's position.
    pub(crate) position: Position,
    /// Its failed attempts before this batch.
    pub(crate) attempts: u32,
}

/// The slots of `records` and, in the same order, their envelopes for the publisher.
pub(crate) fn slots_of(records: Vec<OutboxRecord>) -> (Vec<Slot>, Vec<Envelope>) {
    records
        .into_iter()
        .map(|record| {
            let slot = Slot {
                position: record.position,
                attempts: record.attempts,
            };
            (slot, record.envelope)
        })
        .unzip()
}

/// The marks one batch calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// Records the broker accepted.
    pub(crate) published: Vec<Position>,
    /// Records whose publish failed, each with its retry time or parked.
    pub(crate) failures: Vec<Failure>,
    /// How many of `failures` park their record.
    pub(crate) parked: u64,
    /// Records not sent because an earlier record of their aggregate failed in this batch:
    /// left untouched (no attempt counted). The store holds them back behind the failed
    /// record, so they go out after it, in order.
    pub(crate) held_back: u64,
    /// The soonest retry among `failures`, from now.
    pub(crate) soonest_retry: Option<Duration>,
}

/// Sorts `results` (one per record of the batch, in order) into marks. A missing result is
/// a retriable failure: the publisher broke its contract, and the record must not be lost.
pub(crate) fn sort_results(
    records: &[Slot],
    results: Vec<PublishResult>,
    config: &RelayConfig,
    now: SystemTime,
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    let mut results = results.into_iter();
    for record in records {
        let result = results.next().unwrap_or_else(|| {
            Err(PublishError::Unavailable {
                reason: "the publisher returned no result for this event".to_owned(),
            })
        });
        let error = match result {
            Ok(()) => {
                outcome.published.push(record.position);
                continue;
            }
            Err(PublishError::EarlierEventFailed { .. }) => {
                outcome.held_back += 1;
                continue;
            }
            Err(error) => error,
        };
        let attempts = record.attempts.saturating_add(1);
        let park = !error.is_retriable() || attempts >= config.max_attempts;
        let (retry_at, reason) = if park {
            outcome.parked += 1;
            let why = if error.is_retriable() {
                format!("parked after {attempts} failed attempts")
            } else {
                "parked: not retriable".to_owned()
            };
            (None, format!("{error} ({why})"))
        } else {
            let delay = config.backoff.delay(attempts);
            outcome.soonest_retry = Some(
                outcome
                    .soonest_retry
                    .map_or(delay, |soonest| soonest.min(delay)),
            );
            (Some(now + delay), error.to_string())
        };
        outcome.failures.push(Failure {
            position: record.position,
            reason,
            retry_at,
        });
    }
    outcome
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use dovetail_events::consumer::RetryBackoff;
    use dovetail_events::envelope::EventId;

    use super::*;

    fn unavailable() -> PublishResult {
        Err(PublishError::Unavailable {
            reason: "down".into(),
        })
    }

    #[test]
    fn results_become_marks() {
        let config = RelayConfig {
            backoff: RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            max_attempts: 3,
            ..RelayConfig::default()
        };
        let now = SystemTime::UNIX_EPOCH;
        let records: Vec<Slot> = [(1, 0), (2, 0), (3, 3), (4, 1), (5, 0), (6, 0)]
            .into_iter()
            .map(|(position, attempts)| Slot { position, attempts })
            .collect();
        let results = vec![
            Ok(()),
            Err(PublishError::Rejected {
                event_id: EventId::generate(),
                code: "Denied".into(),
                message: "no".into(),
            }),
            unavailable(),
            unavailable(),
            Err(PublishError::EarlierEventFailed {
                earlier: EventId::generate(),
            }),
            // The sixth result is missing.
        ];

        let outcome = sort_results(&records, results, &config, now);

        assert_eq!(outcome.published, [1]);
        assert_eq!(outcome.held_back, 1, "held back records are left alone");
        let marks: Vec<_> = outcome
            .failures
            .iter()
            .map(|f| (f.position, f.retry_at))
            .collect();
        assert_eq!(
            marks,
            [
                (2, None),                               // not retriable: parked at once
                (3, None),                               // fourth failure, max 3: parked
                (4, Some(now + Duration::from_secs(2))), // second failure: base × 2
                (6, Some(now + Duration::from_secs(1))), // no result: a retriable failure
            ]
        );
        assert_eq!(outcome.parked, 2);
        assert_eq!(outcome.soonest_retry, Some(Duration::from_secs(1)));
        assert!(outcome.failures[0].reason.contains("not retriable"));
        assert!(
            outcome.failures[1]
                .reason
                .contains("after 4 failed attempts")
        );
    }
}
