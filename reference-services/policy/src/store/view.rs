//! [`PolicyConsistencyView`]: the policy service's own policies as a consistency check
//! sees them, the source of truth its replicas are checked against.

use dovetail_service_kit::store::SqliteTableView;

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

/// The owner's [`View`](dovetail_consistency::View) of its policies on its SQLite file:
/// digests from the table `consistency_buckets` (one row per bucket, kept in each write's
/// transaction), entries from `policies` by its `(bucket, policy_id)` index. Rows written
/// before the consistency columns existed have no change time (`None`), so a difference on
/// one is never taken for a write in flight.
///
/// Get one from [`PolicyStore::consistency_view`](super::PolicyStore::consistency_view);
/// check a replica against it with [`dovetail_consistency::Check`].
pub type PolicyConsistencyView = SqliteTableView;
