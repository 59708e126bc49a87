//! Repairing the claim service's replicas (the search index's claims): each claim a
//! consistency check found drifted gets its current snapshot republished through the
//! outbox, so the replicas' ordinary consumers fix their copies. Nothing writes a replica
//! directly; the owner only sends its state again.
//!
//! # Which event is republished
//! The event of the claim's last change, told by its status: each status is entered by
//! exactly one event (`submitted` by `claim.filed`, `under_review` by
//! `claim.review_started`, `approved` by `claim.approved`, `rejected` by
//! `claim.rejected`, `paid` by `claim.paid`), and every claim event carries the whole
//! snapshot (a rejection's reason included), so the event republished is the one a
//! replica would have got, at the claim's current version. The envelope's causation id
//! (the check run's id) says why it exists.
//!
//! The same shape as the policy service's repair (`dovetail_policy::store::repair`),
//! keyed by claim id.

use dovetail_contracts::claim::{
    AGGREGATE_TYPE, ClaimApproved, ClaimFiled, ClaimPaid, ClaimRejected, ClaimReviewStarted,
    ClaimSnapshot, ClaimStatus,
};
use dovetail_events::envelope::{AggregateRef, EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_outbox::sqlite::{SqliteOutbox, SqliteUnitOfWork};
use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// The most claims one [`repair`](super::ClaimStore::repair) call republishes: the first
/// this many distinct keys it is given. The rest come back in
/// [`RepairReport::deferred`], for the next call. One call is one transaction, holding
/// SQLite's write lock while it reads and republishes, and its records reach the relay
/// together; the cap keeps both short so repairing a badly drifted replica does not
/// stall the service's own writes or flood the relay. The caller paces the calls.
pub const REPAIR_BATCH: usize = 100;

/// What one [`repair`](super::ClaimStore::repair) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The claims republished, in the order of the keys given.
    pub republished: Vec<Republished>,
    /// The keys not republished, each with why; the others went ahead regardless.
    pub skipped: Vec<Skipped>,
    /// The keys beyond [`REPAIR_BATCH`], untouched: pass them to the next call.
    pub deferred: Vec<String>,
}

/// One claim whose snapshot was republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    /// The claim's id.
    pub claim_id: String,
    /// The version republished: the claim's current one, not raised by the repair.
    pub version: u64,
    /// The type of the event republished (`claim.approved`), the one of its status.
    pub event_type: &'static str,
    /// The republished event's id (new; the event at this version first published had
    /// another).
    pub event_id: EventId,
}

/// A key the repair did not republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key as given.
    pub claim_id: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a key was not republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// This service has no such claim: a replica holding it got an event of another
    /// claim service (a subscription to the wrong topic, say). Republishing cannot fix
    /// that; the replica's copy is the replica's operators' to remove.
    NotFound,
    /// The outbox refused to republish it (the message says why, such as a claim row
    /// whose version is not the outbox's); run the check again before retrying.
    Refused(String),
}

/// Republishes the current snapshot of each of the first [`REPAIR_BATCH`] distinct
/// `keys` in one unit of work of `outbox` on `connection`, each with `run` as its
/// causation id. See [`ClaimStore::repair`](super::ClaimStore::repair).
pub(super) fn republish(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    let mut report = RepairReport::default();
    let mut batch: Vec<String> = Vec::new();
    for key in keys {
        if batch.contains(&key) || report.deferred.contains(&key) {
            continue;
        }
        if batch.len() < REPAIR_BATCH {
            batch.push(key);
        } else {
            report.deferred.push(key);
        }
    }
    let mut unit = outbox.begin(connection)?;
    let mut pending = Vec::new();
    for claim_id in batch {
        // Read in the unit of work's transaction, which holds the write lock until
        // commit: no write can come between this version and the republish.
        let row: Option<(i64, String)> = unit
            .transaction()
            .prepare_cached("SELECT version, snapshot FROM claims WHERE claim_id = ?1")?
            .query_row([&claim_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((version, json)) = row else {
            report.skipped.push(Skipped {
                claim_id,
                reason: SkipReason::NotFound,
            });
            continue;
        };
        let claim: ClaimSnapshot = serde_json::from_str(&json)
            .map_err(|error| StoreError::backend(format!("reading claim {claim_id}"), error))?;
        // The row's version, which the check saw, and which the outbox must hold.
        let version = u64::try_from(version).unwrap_or(0);
        match republish_claim(&mut unit, claim, version, run) {
            Ok(event_type) => pending.push((claim_id, version, event_type)),
            Err(error @ (OutboxError::InvalidEvent { .. } | OutboxError::Conflict { .. })) => {
                report.skipped.push(Skipped {
                    claim_id,
                    reason: SkipReason::Refused(with_sources(&error)),
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    let committed = unit.commit()?;
    // One envelope per republished claim, in the order of the republishes.
    report.republished = pending
        .into_iter()
        .zip(committed.envelopes())
        .map(|((claim_id, version, event_type), envelope)| Republished {
            claim_id,
            version,
            event_type,
            event_id: envelope.id(),
        })
        .collect();
    Ok(report)
}

/// Republishes `claim` as the event of its status, at `version`; that event's type.
fn republish_claim(
    unit: &mut SqliteUnitOfWork<'_>,
    claim: ClaimSnapshot,
    version: u64,
    run: EventId,
) -> Result<&'static str, OutboxError> {
    use dovetail_events::envelope::Event;

    let aggregate =
        AggregateRef::parse(AGGREGATE_TYPE, &claim.claim_id).map_err(OutboxError::invalid_event)?;
    let metadata = EventMetadata {
        causation_id: Some(run),
        ..EventMetadata::default()
    };
    // The claim service's events go through `append`: the outbox keeps the version.
    match claim.status {
        ClaimStatus::Submitted => unit
            .republish(aggregate, version, &ClaimFiled { claim }, metadata)
            .map(|()| ClaimFiled::TYPE),
        ClaimStatus::UnderReview => unit
            .republish(aggregate, version, &ClaimReviewStarted { claim }, metadata)
            .map(|()| ClaimReviewStarted::TYPE),
        ClaimStatus::Approved => unit
            .republish(aggregate, version, &ClaimApproved { claim }, metadata)
            .map(|()| ClaimApproved::TYPE),
        ClaimStatus::Rejected => unit
            .republish(aggregate, version, &ClaimRejected { claim }, metadata)
            .map(|()| ClaimRejected::TYPE),
        ClaimStatus::Paid => unit
            .republish(aggregate, version, &ClaimPaid { claim }, metadata)
            .map(|()| ClaimPaid::TYPE),
    }
}

/// `error`'s message followed by its sources', which say what the outbox refused and why.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
