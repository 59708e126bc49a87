//! [`PolicyConsistencyView`]: the policy service's own policies as a consistency check
//! sees them, the source of truth its replicas are checked against.

use std::future::Future;

use dovetail_consistency::{BucketRange, Digest, Entry, View, ViewError};
use dovetail_service_kit::store::sqlite::SharedConnection;

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

/// The owner's [`View`] of its policies on its SQLite file: digests from the table
/// `consistency_buckets` (one row per bucket, kept in each write's transaction), entries
/// from `policies` by its `(bucket, policy_id)` index. Rows written before the
/// consistency columns existed have no change time (`None`), so a difference on one is
/// never taken for a write in flight.
///
/// Get one from [`PolicyStore::consistency_view`](super::PolicyStore::consistency_view);
/// check a replica against it with [`dovetail_consistency::Check`].
#[derive(Debug, Clone)]
pub struct PolicyConsistencyView {
    connection: SharedConnection,
}

impl PolicyConsistencyView {
    pub(super) fn new(connection: SharedConnection) -> Self {
        Self { connection }
    }
}

impl View for PolicyConsistencyView {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        let connection = self.connection.clone();
        async move {
            connection
                .run(move |connection| Ok(POLICIES.digest(connection, range)?))
                .await
                .map_err(|error| ViewError::new("SQLite", error))
        }
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        let connection = self.connection.clone();
        async move {
            connection
                .run(move |connection| Ok(POLICIES.entries(connection, range)?))
                .await
                .map_err(|error| ViewError::new("SQLite", error))
        }
    }
}
