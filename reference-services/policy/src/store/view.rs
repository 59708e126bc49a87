//! [`PolicyConsistencyView`]: the policy service's own policies as a consistency check
//! sees them, the source of truth its replicas are checked against.

use dovetail_service_kit::store::TableView;

use dovetail_consistency::sqlite::SqliteDigests;

/// The `policies` table as a check's entries: key the policy id, version the policy's,
/// change time when this service last wrote it. Policies are never deleted (cancelling
/// one is a status), so no entry is a tombstone.
pub(super) const POLICIES: SqliteDigests = SqliteDigests {
    table: "policies",
    key: "policy_id",
    digests: "consistency_buckets",
    changed_at: Some("changed_at_ms"),
};

/// The set of the policies' digests and entries in the DynamoDB table (see
/// [`dovetail_consistency::dynamodb`]).
#[cfg(feature = "aws")]
pub(super) const POLICY_SET: &str = "policies";

/// The owner's [`View`](dovetail_consistency::View) of its policies.
///
/// On SQLite: digests from the table `consistency_buckets` (one row per bucket, kept in
/// each write's transaction), entries from `policies` by its `(bucket, policy_id)` index.
/// Rows written before the consistency columns existed have no change time (`None`), so
/// a difference on one is never taken for a write in flight.
///
/// On DynamoDB: the digest and entry items of the set `policies`
/// ([`dovetail_consistency::dynamodb::DynamoDbDigests`]), kept in each write's
/// `TransactWriteItems`, each entry with the write's change time. Policies written before
/// the store kept them are backfilled on the store's first open of the table, without a
/// change time ([`backfill_digests`](dovetail_service_kit::store::backfill_digests)).
///
/// Get one from [`PolicyStore::consistency_view`](super::PolicyStore::consistency_view);
/// check a replica against it with [`dovetail_consistency::Check`].
pub type PolicyConsistencyView = TableView;
