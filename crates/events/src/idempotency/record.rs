//! The rules every store applies to a key's record, as pure functions: what a claim gets,
//! which fencing token a new lease carries, whether a lease still holds its record.
//!
//! The Redis store runs the same rules inside Lua scripts; the contract suite in
//! `dovetail-testkit` checks that every store agrees.

use std::time::{Duration, SystemTime};

use super::clock::{duration_millis, epoch_micros, epoch_millis, from_epoch_millis};
use super::{ClaimOutcome, Fingerprint, Lease, LeaseOwner, StoredOutcome};

/// How long the record of an abandoned claim outlives its lease, so that the next claim
/// can report whose lease it took over and still rejects a reused key with another
/// payload. After that the record is removed like any expired one.
pub(crate) const ABANDONED_CLAIM_RETENTION: Duration = Duration::from_secs(60 * 60);

/// A key's record as a store reads it back.
#[derive(Debug, Clone)]
pub(crate) struct StoredRecord {
    pub(crate) fingerprint: Fingerprint,
    /// `None` for markers written in the caller's transaction, which have no lease.
    pub(crate) owner: Option<LeaseOwner>,
    pub(crate) fencing_token: u64,
    pub(crate) state: RecordState,
    /// When the record stops counting, in Unix milliseconds (a store may remove it later).
    pub(crate) expires_at_ms: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum RecordState {
    InProgress { held_until_ms: u64 },
    Processed { outcome: StoredOutcome },
}

impl StoredRecord {
    /// Whether the record still counts at `now_ms`; an expired record is as good as absent.
    pub(crate) fn is_live_at(&self, now_ms: u64) -> bool {
        self.expires_at_ms > now_ms
    }

    /// Whether `lease` is the lease this record was last granted to.
    fn granted_to(&self, lease: &Lease) -> bool {
        self.fencing_token == lease.fencing_token() && self.owner.as_ref() == Some(lease.owner())
    }
}

/// What a claim should do, given the record it found.
#[derive(Debug)]
pub(crate) enum ClaimDecision {
    /// Write a new in-progress record with this token, replacing whatever was there.
    Grant {
        fencing_token: u64,
        taken_over_from: Option<LeaseOwner>,
    },
    /// Write nothing, answer this (`Processed` or `InProgress`).
    Answer(ClaimOutcome),
    /// Write nothing, the key carries another payload.
    Mismatch { stored: Fingerprint },
}

/// The claim rules: absent or expired records are claimed afresh; a record with another
/// fingerprint is a mismatch; a processed record answers duplicates; a live lease makes
/// others wait; an expired or released lease is taken over with a higher fencing token.
pub(crate) fn decide_claim(
    existing: Option<&StoredRecord>,
    fingerprint: &Fingerprint,
    now: SystemTime,
) -> ClaimDecision {
    let now_ms = epoch_millis(now);
    let Some(record) = existing.filter(|record| record.is_live_at(now_ms)) else {
        return ClaimDecision::Grant {
            fencing_token: next_fencing_token(
                existing.map(|record| record.fencing_token),
                epoch_micros(now),
            ),
            taken_over_from: None,
        };
    };
    if record.fingerprint != *fingerprint {
        return ClaimDecision::Mismatch {
            stored: record.fingerprint,
        };
    }
    match &record.state {
        RecordState::Processed { outcome } => {
            ClaimDecision::Answer(ClaimOutcome::Processed(outcome.clone()))
        }
        RecordState::InProgress { held_until_ms } if *held_until_ms > now_ms => {
            ClaimDecision::Answer(ClaimOutcome::InProgress {
                held_until: from_epoch_millis(*held_until_ms),
            })
        }
        // A released record has no owner: nothing was taken over.
        RecordState::InProgress { .. } => ClaimDecision::Grant {
            fencing_token: next_fencing_token(Some(record.fencing_token), epoch_micros(now)),
            taken_over_from: record.owner.clone(),
        },
    }
}

/// The token of a new lease: one more than the previous token of the key, or the clock in
/// microseconds, whichever is greater. The clock part keeps tokens growing after a record
/// was removed, when the previous token is no longer known. (Microseconds since the
/// epoch stay below 2^53, exact in Redis's Lua numbers, until the year 2255.)
pub(crate) fn next_fencing_token(previous: Option<u64>, now_micros: u64) -> u64 {
    previous
        .map_or(1, |token| token.saturating_add(1))
        .max(now_micros)
        .max(1)
}

/// What [`release`](super::IdempotencyStore::release) leaves: the record with no owner
/// and a lease that ended at the epoch, keeping the fingerprint and the fencing token, so
/// the next claim takes it at once with a higher token and a reused key is still refused.
pub(crate) const RELEASED_HELD_UNTIL_MS: u64 = 0;

/// Whether a lease still holds its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseCheck {
    /// In progress under this lease (perhaps past its time, but not taken over).
    Held,
    /// Processed under this lease already (a retried `complete`).
    CompletedByIt,
    /// Taken over, released, processed under another lease, or gone.
    Lost,
}

pub(crate) fn check_lease(
    existing: Option<&StoredRecord>,
    lease: &Lease,
    now_ms: u64,
) -> LeaseCheck {
    match existing {
        Some(record) if record.is_live_at(now_ms) && record.granted_to(lease) => {
            match record.state {
                RecordState::InProgress { .. } => LeaseCheck::Held,
                RecordState::Processed { .. } => LeaseCheck::CompletedByIt,
            }
        }
        _ => LeaseCheck::Lost,
    }
}

/// When an in-progress record held until `held_until_ms` stops counting.
pub(crate) fn in_progress_expiry(held_until_ms: u64) -> u64 {
    held_until_ms.saturating_add(duration_millis(ABANDONED_CLAIM_RETENTION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: RecordState, token: u64, expires_at_ms: u64) -> StoredRecord {
        StoredRecord {
            fingerprint: Fingerprint::of(b"a"),
            owner: Some(LeaseOwner::new("old").expect("a valid owner")),
            fencing_token: token,
            state,
            expires_at_ms,
        }
    }

    fn at_ms(ms: u64) -> SystemTime {
        from_epoch_millis(ms)
    }

    #[test]
    fn tokens_grow_from_the_previous_token_or_the_clock() {
        assert_eq!(next_fencing_token(None, 0), 1);
        assert_eq!(next_fencing_token(None, 1_000), 1_000);
        assert_eq!(next_fencing_token(Some(5_000), 1_000), 5_001);
        assert_eq!(next_fencing_token(Some(5_000), 9_000), 9_000);
        assert_eq!(next_fencing_token(Some(u64::MAX), 0), u64::MAX);
    }

    #[test]
    fn an_expired_record_is_claimed_afresh_with_a_higher_token() {
        let old = record(
            RecordState::Processed {
                outcome: StoredOutcome::empty(),
            },
            10_000_000_000,
            2_000,
        );
        let decision = decide_claim(Some(&old), &Fingerprint::of(b"other"), at_ms(3_000));
        assert!(matches!(
            decision,
            ClaimDecision::Grant {
                fencing_token: 10_000_000_001,
                taken_over_from: None
            }
        ));
    }

    #[test]
    fn a_released_record_is_claimed_with_a_higher_token_and_no_takeover() {
        let mut released = record(
            RecordState::InProgress {
                held_until_ms: RELEASED_HELD_UNTIL_MS,
            },
            5_000_000,
            9_000,
        );
        released.owner = None;
        let decision = decide_claim(Some(&released), &Fingerprint::of(b"a"), at_ms(1));
        assert!(matches!(
            decision,
            ClaimDecision::Grant {
                fencing_token: 5_000_001,
                taken_over_from: None
            }
        ));
        assert!(matches!(
            decide_claim(Some(&released), &Fingerprint::of(b"b"), at_ms(1)),
            ClaimDecision::Mismatch { .. }
        ));
    }

    #[test]
    fn an_expired_lease_is_taken_over_and_a_live_one_is_not() {
        let held = record(
            RecordState::InProgress {
                held_until_ms: 2_000,
            },
            1_000,
            9_000,
        );
        let fingerprint = Fingerprint::of(b"a");
        assert!(matches!(
            decide_claim(Some(&held), &fingerprint, at_ms(1_500)),
            ClaimDecision::Answer(ClaimOutcome::InProgress { .. })
        ));
        let ClaimDecision::Grant {
            fencing_token,
            taken_over_from,
        } = decide_claim(Some(&held), &fingerprint, at_ms(2_000))
        else {
            unreachable!("an expired lease is granted again");
        };
        assert_eq!(fencing_token, 2_000_000, "from the clock in microseconds");
        assert_eq!(
            taken_over_from.map(|owner| owner.to_string()).as_deref(),
            Some("old")
        );
        assert!(matches!(
            decide_claim(Some(&held), &Fingerprint::of(b"b"), at_ms(2_000)),
            ClaimDecision::Mismatch { .. }
        ));
    }
}
