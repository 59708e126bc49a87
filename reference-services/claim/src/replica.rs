//! The claim service's replica of policies: a consumer of policy events that keeps, per
//! policy, the snapshot of the highest version it has seen.
//!
//! Duplicates and reordering are harmless twice over: each event's "processed" marker
//! commits with the replica row (a redelivery changes nothing), and a row is only
//! replaced by a higher version (a late event changes nothing).
//!
//! # When the replica has not caught up
//!
//! A claim against a policy the replica does not have yet is refused with `409` and
//! `Retry-After: 1`, type `policy-not-replicated`, saying the policy's events may still be
//! on their way; a claim against a policy the replica still has as a draft is refused
//! with `422` saying the same. The claim service never calls the policy service to fill
//! the gap: that would couple its availability to the policy service's, which is what
//! the database-per-service pattern avoids. The lag is measured
//! (`claim_replica_lag_seconds`) and is milliseconds on the embedded stack.
//!
//! # When the replica has drifted
//!
//! An event the replica never applied (dead-lettered and not replayed, published before
//! the subscription existed) leaves it behind for good, which no lag metric shows. On
//! either backend, [`ClaimStore::policy_replica_view`] gives the replica's
//! [`dovetail_consistency::View`], kept in the transaction that applies each event;
//! checked against the policy service's
//! ([`dovetail_consistency::Check`]), it names each policy the replica lacks, holds at
//! an old version, or holds without the owner having it. The policy service repairs
//! what a check finds (`PolicyStore::repair` republishes each drifted policy's snapshot
//! through its outbox, and this consumer applies it); nothing runs the two on a schedule
//! yet.

use std::time::SystemTime;

use dovetail_contracts::policy::PolicyEvent;
use dovetail_events::consumer::HandlerError;
use dovetail_events::envelope::Envelope;
use dovetail_events::idempotency::Fingerprint;

use crate::store::{ClaimStore, ReplicaOutcome, StoreError};

/// Applies one policy event to the replica.
///
/// # Errors
/// [`HandlerError::rejected`] for an event that is not a policy event or reuses an event
/// id with another payload (to the dead-letter queue); [`HandlerError::retriable`] when
/// the database fails.
pub async fn apply(store: &ClaimStore, envelope: Envelope) -> Result<ReplicaOutcome, HandlerError> {
    let event = PolicyEvent::from_envelope(&envelope)
        .map_err(|error| HandlerError::rejected(error.to_string()))?;
    let fingerprint = Fingerprint::of(envelope.payload().to_string().as_bytes());
    let outcome = store
        .apply_policy(envelope.id(), fingerprint, event.snapshot().clone())
        .await
        .map_err(|error| match error {
            StoreError::KeyReused { .. } => HandlerError::rejected(error.to_string()),
            other => HandlerError::retriable(other.to_string()),
        })?;
    let outcome_label = match outcome {
        ReplicaOutcome::Applied => "applied",
        ReplicaOutcome::Stale => "stale",
        ReplicaOutcome::Duplicate => "duplicate",
    };
    metrics::counter!("claim_replica_events_total", "outcome" => outcome_label).increment(1);
    if let Ok(lag) = SystemTime::now().duration_since(SystemTime::from(envelope.occurred_at())) {
        metrics::histogram!("claim_replica_lag_seconds").record(lag.as_secs_f64());
    }
    Ok(outcome)
}
