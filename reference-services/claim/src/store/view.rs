//! The claim service's tables as a consistency check sees them: [`PolicyReplicaView`],
//! its replica of policies, to be checked against the policy service's own view; and
//! [`ClaimConsistencyView`], its own claims, the source of truth their replicas (the
//! search index) are checked against.

use dovetail_service_kit::store::TableView;

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

/// The set of the policy replica's digests and entries in the DynamoDB table (see
/// [`dovetail_consistency::dynamodb`]), named for the replica, as on SQLite, because the
/// table holds the claims too.
#[cfg(feature = "aws")]
pub(super) const POLICY_REPLICA_SET: &str = "policy-replica";

/// The replica's [`View`](dovetail_consistency::View) of policies.
///
/// On SQLite: digests from `policy_replica_buckets` (one row per bucket, kept in the
/// transaction that applies a policy event), entries from `policy_replica` by its
/// `(bucket, policy_id)` index.
///
/// On DynamoDB: the digest and entry items of the set `policy-replica`
/// ([`dovetail_consistency::dynamodb::DynamoDbDigests`]), kept in the `TransactWriteItems`
/// that applies a policy event. Replicated policies written before the store kept them
/// are backfilled on the store's first open of the table
/// ([`backfill_digests`](dovetail_service_kit::store::backfill_digests)).
///
/// Get one from [`ClaimStore::policy_replica_view`](super::ClaimStore::policy_replica_view);
/// check it against the policy service's with [`dovetail_consistency::Check`].
pub type PolicyReplicaView = TableView;

/// The `claims` table as a check's entries: key the claim id, version the claim's,
/// change time when this service last wrote it. Claims are never deleted (a claim ends
/// rejected or paid), so no entry is a tombstone. Digests in `claim_buckets`, beside the
/// replica's `policy_replica_buckets` in the same file.
pub(super) const CLAIMS: SqliteDigests = SqliteDigests {
    table: "claims",
    key: "claim_id",
    digests: "claim_buckets",
    changed_at: Some("changed_at_ms"),
};

/// The set of the claims' digests and entries in the DynamoDB table (see
/// [`dovetail_consistency::dynamodb`]).
#[cfg(feature = "aws")]
pub(super) const CLAIM_SET: &str = "claims";

/// The owner's [`View`](dovetail_consistency::View) of its claims.
///
/// On SQLite: digests from `claim_buckets` (one row per bucket, kept in each claim
/// write's transaction), entries from `claims` by its `(bucket, claim_id)` index, each
/// with the time the claim last changed. Rows written before the consistency columns
/// existed have no change time (`None`), so a difference on one is never taken for a
/// write in flight.
///
/// On DynamoDB: the digest and entry items of the set `claims`
/// ([`dovetail_consistency::dynamodb::DynamoDbDigests`]), kept in each claim write's
/// `TransactWriteItems`, each entry with the write's change time. Claims written before
/// the store kept them are backfilled on the store's first open of the table, without a
/// change time ([`backfill_digests`](dovetail_service_kit::store::backfill_digests)).
///
/// Get one from [`ClaimStore::consistency_view`](super::ClaimStore::consistency_view);
/// check a replica of claims against it with [`dovetail_consistency::Check`].
pub type ClaimConsistencyView = TableView;
