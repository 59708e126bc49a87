//! Repairing the policy service's replicas on DynamoDB: the same as on SQLite (see
//! [`repair`](super::repair)), each drifted policy's current snapshot republished through
//! the DynamoDB outbox's `DynamoDbUnitOfWork::republish`, in transactions of
//! [`PER_TRANSACTION`] policies.
//!
//! DynamoDB has no lock to hold between reading a policy and republishing it: the policy
//! is read (strongly consistently), the outbox checks its version item then and again in
//! the transaction, and a write that comes between fails the transaction as a conflict.
//! That policy is then reported as [`SkipReason::Refused`] (the write's own event carries
//! its newer state to the replicas, so it needs no repair) and the others of its
//! transaction are sent again without it.

use dovetail_contracts::policy::{AGGREGATE_TYPE, PolicySnapshot, PolicyUpdated};
use dovetail_events::envelope::{AggregateRef, EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_service_kit::store::dynamodb::ServiceTable;

use super::dynamodb::POLICIES;
use super::repair::{take_batch, with_sources};
use super::{RepairReport, Republished, SkipReason, Skipped, StoreError};

/// How many policies one transaction republishes: each takes two of its 100 actions (the
/// check of the policy's version item and the outbox record), and 25 keep it well
/// within its 4 MB too.
pub(super) const PER_TRANSACTION: usize = 25;

/// Republishes the current snapshot of each of the first
/// [`REPAIR_BATCH`](super::REPAIR_BATCH) distinct `keys` through `table`'s outbox, each
/// with `run` as its causation id. See
/// [`PolicyStore::repair`](super::PolicyStore::repair).
pub(super) async fn republish(
    table: &ServiceTable,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    let (batch, deferred) = take_batch(keys);
    let mut report = RepairReport {
        deferred,
        ..RepairReport::default()
    };
    let mut found = Vec::with_capacity(batch.len());
    for policy_id in batch {
        match POLICIES.get(table, &policy_id).await? {
            Some(policy) => found.push(policy),
            None => report.skipped.push(Skipped {
                policy_id,
                reason: SkipReason::NotFound,
            }),
        }
    }
    for chunk in found.chunks(PER_TRANSACTION) {
        republish_chunk(table, chunk.iter().collect(), run, &mut report).await?;
    }
    Ok(report)
}

/// Republishes `policies` in one transaction, sent again without a policy a write
/// changed meanwhile until it commits.
async fn republish_chunk(
    table: &ServiceTable,
    mut policies: Vec<&PolicySnapshot>,
    run: EventId,
    report: &mut RepairReport,
) -> Result<(), StoreError> {
    while !policies.is_empty() {
        let mut unit = table.outbox().unit_of_work();
        let mut pending = Vec::with_capacity(policies.len());
        for policy in policies {
            let aggregate = AggregateRef::parse(AGGREGATE_TYPE, &policy.policy_id)
                .map_err(OutboxError::invalid_event)?;
            let metadata = EventMetadata {
                causation_id: Some(run),
                ..EventMetadata::default()
            };
            let event = PolicyUpdated {
                policy: policy.clone(),
            };
            match unit
                .republish(aggregate, policy.version, &event, metadata)
                .await
            {
                Ok(_) => pending.push(policy),
                Err(error @ (OutboxError::InvalidEvent { .. } | OutboxError::Conflict { .. })) => {
                    report.skipped.push(refused(policy, &error));
                }
                Err(other) => return Err(other.into()),
            }
        }
        match unit.commit().await {
            Ok(committed) => {
                report
                    .republished
                    .extend(
                        pending
                            .iter()
                            .zip(committed.envelopes())
                            .map(|(policy, envelope)| Republished {
                                policy_id: policy.policy_id.clone(),
                                version: policy.version,
                                event_id: envelope.id(),
                            }),
                    );
                return Ok(());
            }
            Err(error @ OutboxError::Conflict { .. }) => {
                let OutboxError::Conflict { aggregate_id, .. } = &error else {
                    unreachable!("matched as a conflict");
                };
                let (moved, rest): (Vec<_>, Vec<_>) = pending
                    .into_iter()
                    .partition(|policy| &policy.policy_id == aggregate_id);
                if moved.is_empty() {
                    // Not one of ours: nothing to leave out, so do not loop.
                    return Err(error.into());
                }
                report
                    .skipped
                    .extend(moved.into_iter().map(|policy| refused(policy, &error)));
                policies = rest;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

fn refused(policy: &PolicySnapshot, error: &OutboxError) -> Skipped {
    Skipped {
        policy_id: policy.policy_id.clone(),
        reason: SkipReason::Refused(with_sources(error)),
    }
}
