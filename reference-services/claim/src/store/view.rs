//! [`PolicyReplicaView`]: the claim service's replica of policies as a consistency check
//! sees it, to be checked against the policy service's own view.

use dovetail_service_kit::store::SqliteTableView;

use dovetail_consistency::sqlite::SqliteDigests;

/// The `policy_replica` table as a check's entries: key the policy id, version the one
/// of the newest snapshot applied. No change time: the check reads that from the owner.
/// Its digests are in `policy_replica_buckets`, named for the table (not
/// `consistency_buckets`, as in the policy service) because this file holds the claims
/// too, which may get a view of their own.
pub(super) const POLICY_REPLICA: SqliteDigests = SqliteDigests {
    table: "policy_replica",
    key: "policy_id",
    digests: "policy_replica_buckets",
    changed_at: None,
};

/// The replica's [`View`](dovetail_consistency::View) of policies on the claim service's
/// SQLite file: digests from `policy_replica_buckets` (one row per bucket, kept in the
/// transaction that applies a policy event), entries from `policy_replica` by its `(bucket,
/// policy_id)` index.
///
/// Get one from [`ClaimStore::policy_replica_view`](super::ClaimStore::policy_replica_view);
/// check it against the policy service's with [`dovetail_consistency::Check`].
pub type PolicyReplicaView = SqliteTableView;
