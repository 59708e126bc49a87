//! [`republish_items`]: a repair on a DynamoDB table (feature `aws`), each drifted
//! aggregate's current snapshot republished through the DynamoDB outbox's
//! `DynamoDbUnitOfWork::republish`, in transactions of [`PER_TRANSACTION`] aggregates.
//! The report is the same as on SQLite (see [`RepairReport`]).
//!
//! DynamoDB has no lock to hold between reading an aggregate and republishing it: the
//! item is read (strongly consistently), the outbox checks its version item then and
//! again in the transaction, and a write that comes between fails the transaction as a
//! conflict. That aggregate is then reported as [`SkipReason::Refused`] (the write's own
//! event carries its newer state to the replicas, so it needs no repair) and the others
//! of its transaction are sent again without it.

use std::future::Future;
use std::pin::Pin;

use dovetail_events::envelope::{EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_outbox::dynamodb::DynamoDbUnitOfWork;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;
use super::dynamodb::{ServiceTable, SnapshotItems};
use super::repair::{RepairReport, Republished, SkipReason, Skipped, metadata};

/// How many aggregates one transaction republishes: each takes two of its 100 actions
/// (the check of the aggregate's version item and the outbox record), and 25 keep it
/// well within its 4 MB too.
pub const PER_TRANSACTION: usize = 25;

/// What a service's republish of one aggregate returns: the future of adding its event to
/// the unit of work, answering the event's type.
pub type RepublishFuture<'a> =
    Pin<Box<dyn Future<Output = Result<&'static str, OutboxError>> + Send + 'a>>;

/// Republishes the current snapshot of each of the first
/// [`REPAIR_BATCH`](super::REPAIR_BATCH) distinct `keys` of `items` through `table`'s
/// outbox, each with `run` as its causation id: `republish` adds the service's event for
/// the snapshot at its version (with the metadata given) to the unit of work, with
/// `DynamoDbUnitOfWork::republish`, and answers its type.
///
/// Each key costs one strongly consistent read of its item, then one read of its outbox
/// version item and two actions of a transaction of [`PER_TRANSACTION`].
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB fails or an item is unreadable; what committed
/// before stays republished (harmless: a replica ignores what it already has).
pub async fn republish_items<S, F>(
    table: &ServiceTable,
    items: &SnapshotItems<S>,
    keys: Vec<String>,
    run: EventId,
    republish: F,
) -> Result<RepairReport, StoreError>
where
    S: Serialize + DeserializeOwned + Send + Sync,
    F: for<'a> Fn(&'a mut DynamoDbUnitOfWork, &'a S, u64, EventMetadata) -> RepublishFuture<'a>
        + Sync,
{
    let (mut report, batch) = RepairReport::start(keys);
    let mut found = Vec::with_capacity(batch.len());
    for key in batch {
        match items.get_versioned(table, &key).await? {
            Some((version, snapshot)) => found.push(Found {
                key,
                version,
                snapshot,
            }),
            None => report.skipped.push(Skipped {
                key,
                reason: SkipReason::NotFound,
            }),
        }
    }
    for chunk in found.chunks(PER_TRANSACTION) {
        republish_chunk(table, chunk.iter().collect(), run, &republish, &mut report).await?;
    }
    Ok(report)
}

/// An aggregate read for a repair.
struct Found<S> {
    key: String,
    version: u64,
    snapshot: S,
}

/// Republishes `found` in one transaction, sent again without an aggregate a write
/// changed meanwhile until it commits.
async fn republish_chunk<S, F>(
    table: &ServiceTable,
    mut found: Vec<&Found<S>>,
    run: EventId,
    republish: &F,
    report: &mut RepairReport,
) -> Result<(), StoreError>
where
    S: Sync,
    F: for<'a> Fn(&'a mut DynamoDbUnitOfWork, &'a S, u64, EventMetadata) -> RepublishFuture<'a>
        + Sync,
{
    while !found.is_empty() {
        let mut unit = table.outbox().unit_of_work();
        let mut pending = Vec::with_capacity(found.len());
        for item in found {
            match republish(&mut unit, &item.snapshot, item.version, metadata(run)).await {
                Ok(event_type) => pending.push((item, event_type)),
                Err(error @ (OutboxError::InvalidEvent { .. } | OutboxError::Conflict { .. })) => {
                    report.skipped.push(refused(item, &error));
                }
                Err(other) => return Err(other.into()),
            }
        }
        match unit.commit().await {
            Ok(committed) => {
                report
                    .republished
                    .extend(pending.iter().zip(committed.envelopes()).map(
                        |((item, event_type), envelope)| Republished {
                            key: item.key.clone(),
                            version: item.version,
                            event_type,
                            event_id: envelope.id(),
                        },
                    ));
                return Ok(());
            }
            Err(error @ OutboxError::Conflict { .. }) => {
                let OutboxError::Conflict { aggregate_id, .. } = &error else {
                    unreachable!("matched as a conflict");
                };
                let (moved, rest): (Vec<_>, Vec<_>) = pending
                    .into_iter()
                    .map(|(item, _)| item)
                    .partition(|item| &item.key == aggregate_id);
                if moved.is_empty() {
                    // Not one of ours: nothing to leave out, so do not loop.
                    return Err(error.into());
                }
                report
                    .skipped
                    .extend(moved.into_iter().map(|item| refused(item, &error)));
                found = rest;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}

fn refused<S>(item: &Found<S>, error: &OutboxError) -> Skipped {
    Skipped {
        key: item.key.clone(),
        reason: SkipReason::refused(error),
    }
}
