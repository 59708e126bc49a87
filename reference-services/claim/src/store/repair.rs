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
//! The report, the batch and the loops on each backend are the kit's
//! ([`dovetail_service_kit::store::republish_rows`], `republish_items`), as for the
//! policy service; this module says which event a claim is republished as.

use dovetail_contracts::claim::{
    AGGREGATE_TYPE, ClaimApproved, ClaimFiled, ClaimPaid, ClaimRejected, ClaimReviewStarted,
    ClaimSnapshot, ClaimStatus,
};
use dovetail_events::envelope::{AggregateRef, Event, EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_outbox::sqlite::{SqliteOutbox, SqliteUnitOfWork};
use dovetail_service_kit::store::{RepairReport, SnapshotRows, republish_rows};
use rusqlite::Connection;

use super::StoreError;

/// The claims' rows: `claims`, keyed by `claim_id`.
const CLAIM_ROWS: SnapshotRows = SnapshotRows {
    table: "claims",
    key: "claim_id",
};

/// Republishes the current snapshot of each of the first
/// [`REPAIR_BATCH`](super::REPAIR_BATCH) distinct `keys` in one unit of work of `outbox`
/// on `connection`, each with `run` as its causation id. See
/// [`ClaimStore::repair`](super::ClaimStore::repair).
pub(super) fn republish(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    republish_rows(
        connection,
        outbox,
        CLAIM_ROWS,
        keys,
        run,
        |unit, claim: ClaimSnapshot, version, metadata| {
            let aggregate = aggregate(&claim)?;
            as_status_event(
                claim,
                OnSqlite {
                    unit,
                    aggregate,
                    version,
                    metadata,
                },
            )
        },
    )
}

/// The same on DynamoDB: see [`republish_items`](dovetail_service_kit::store::republish_items).
#[cfg(feature = "aws")]
pub(super) async fn republish_on_dynamodb(
    table: &dovetail_service_kit::store::dynamodb::ServiceTable,
    items: &dovetail_service_kit::store::dynamodb::SnapshotItems<ClaimSnapshot>,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    dovetail_service_kit::store::republish_items(
        table,
        items,
        keys,
        run,
        |unit, claim, version, metadata| match aggregate(claim) {
            Ok(aggregate) => as_status_event(
                claim.clone(),
                OnDynamoDb {
                    unit,
                    aggregate,
                    version,
                    metadata,
                },
            ),
            Err(error) => Box::pin(async move { Err(error) }),
        },
    )
    .await
}

fn aggregate(claim: &ClaimSnapshot) -> Result<AggregateRef, OutboxError> {
    AggregateRef::parse(AGGREGATE_TYPE, &claim.claim_id).map_err(OutboxError::invalid_event)
}

/// Adds one event, of any type, to a unit of work: what [`as_status_event`] hands the
/// event of a claim's status to.
trait Republish {
    /// What adding it answers (the event's type, or the future of it).
    type Out;
    fn republish<E: Event + Send + Sync + 'static>(self, event: E) -> Self::Out;
}

/// Republishes `claim` through `to` as the event of its status: each status is entered
/// by exactly one event.
fn as_status_event<R: Republish>(claim: ClaimSnapshot, to: R) -> R::Out {
    match claim.status {
        ClaimStatus::Submitted => to.republish(ClaimFiled { claim }),
        ClaimStatus::UnderReview => to.republish(ClaimReviewStarted { claim }),
        ClaimStatus::Approved => to.republish(ClaimApproved { claim }),
        ClaimStatus::Rejected => to.republish(ClaimRejected { claim }),
        ClaimStatus::Paid => to.republish(ClaimPaid { claim }),
    }
}

/// A republish in a SQLite unit of work, at `version` (the claim service's events go
/// through `append`: the outbox keeps the version).
struct OnSqlite<'u, 'c> {
    unit: &'u mut SqliteUnitOfWork<'c>,
    aggregate: AggregateRef,
    version: u64,
    metadata: EventMetadata,
}

impl Republish for OnSqlite<'_, '_> {
    type Out = Result<&'static str, OutboxError>;

    fn republish<E: Event + Send + Sync + 'static>(self, event: E) -> Self::Out {
        self.unit
            .republish(self.aggregate, self.version, &event, self.metadata)
            .map(|()| E::TYPE)
    }
}

/// A republish in a DynamoDB unit of work, at `version`.
#[cfg(feature = "aws")]
struct OnDynamoDb<'u> {
    unit: &'u mut dovetail_outbox::dynamodb::DynamoDbUnitOfWork,
    aggregate: AggregateRef,
    version: u64,
    metadata: EventMetadata,
}

#[cfg(feature = "aws")]
impl<'u> Republish for OnDynamoDb<'u> {
    type Out = dovetail_service_kit::store::RepublishFuture<'u>;

    fn republish<E: Event + Send + Sync + 'static>(self, event: E) -> Self::Out {
        Box::pin(async move {
            self.unit
                .republish(self.aggregate, self.version, &event, self.metadata)
                .await?;
            Ok(E::TYPE)
        })
    }
}
