//! [`DynamoDbPolicyStore`]: policies in the service's DynamoDB table, beside its outbox.
//!
//! One table holds the policies, the outbox's items and the request records (see
//! [`dovetail_service_kit::store::dynamodb`]):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | policy | `policy#<policy id>` | `policy` | `policy_id`, `customer_id`, `version` (N), `snapshot` (the policy's JSON) |
//! | consistency digests and entries | `consistency#policies#...` | | see [`dovetail_consistency::dynamodb`]: one digest item per bucket and one entry item per policy, both written in each policy write's transaction |
//!
//! The global secondary index `by-customer` (partition key `customer_id`, sort key
//! `policy_id`, every attribute projected) lists a customer's policies in id order; only
//! policy items have those attributes, so the index holds nothing else. Like every
//! DynamoDB secondary index it is eventually consistent: a policy written a moment ago
//! may be missing from a listing for a moment (usually well under a second), while
//! [`get`](super::PolicyStore::get) reads strongly consistently.

use dovetail_consistency::dynamodb::DynamoDbDigests;
use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::{EventId, Source};
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    ServiceTable, SnapshotIndex, SnapshotItem, SnapshotItems, open_table,
};
use dovetail_service_kit::store::{SetItems, backfill_digests};

use super::view::{POLICY_SET, PolicyConsistencyView};
use super::{OpenedStore, PolicyWrite, RepairReport, StoreError, WriteOutcome};
use crate::domain::Policy;

/// The index listing a customer's policies.
pub const BY_CUSTOMER: &str = "by-customer";

const CUSTOMER_ID: &str = "customer_id";

/// The policy items: `policy#<id>`/`policy`, with `policy_id`.
pub(super) const POLICIES: SnapshotItems<PolicySnapshot> =
    SnapshotItems::new("policy", "policy_id");
/// A customer's policies.
const CUSTOMER_POLICIES: SnapshotIndex = SnapshotIndex {
    name: BY_CUSTOMER,
    partition_key: CUSTOMER_ID,
};

/// Policies in a DynamoDB table: one item per policy, written in the same
/// `TransactWriteItems` as the policy's event, the request's record, and the policy's
/// consistency digest and entry.
#[derive(Debug, Clone)]
pub struct DynamoDbPolicyStore {
    table: ServiceTable,
    digests: DynamoDbDigests,
}

impl DynamoDbPolicyStore {
    /// Opens the table `table` (creating it, its index and its TTL when missing) for the
    /// events of `source`, with the relay's store on its outbox and its commit signal;
    /// on the first open of a table made before the consistency digests, adds the entry
    /// and digest of each policy (see
    /// [`backfill_digests`](dovetail_service_kit::store::backfill_digests)).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the table cannot be created or has other keys; the
    /// message names it.
    pub async fn open(
        clients: &AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self>, StoreError> {
        let indexes = [POLICIES.index(&CUSTOMER_POLICIES)];
        let table = open_table(clients.dynamodb(), table, source, &indexes).await?;
        let digests = table.digests(POLICY_SET);
        // A table made before the digests: its policies' entries, once.
        backfill_digests(
            &table,
            &digests,
            SetItems {
                prefix: "policy#",
                sort_key: "policy",
            },
        )
        .await?;
        Ok(table.opened(crate::SERVICE, |table| Self { table, digests }))
    }

    /// See [`PolicyStore::write`](super::PolicyStore::write).
    ///
    /// The policy's bucket digest moves from its old entry to its new one (with the
    /// write's change time) in the same transaction, as
    /// [`SnapshotItems::digest_write`] says: a policy written before the store kept
    /// digests is added on its next write rather than taken out of a digest it was never
    /// in, and a write at any version is checked against the version it read (a
    /// [`StoreError::VersionConflict`] when another write came between).
    pub(super) async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        let policy = write.policy.snapshot();
        let id = &policy.policy_id;
        let (expected, digest) = POLICIES
            .digest_write(
                &self.table,
                &self.digests,
                id,
                policy.version,
                write.expected,
            )
            .await?;
        let item = SnapshotItem {
            id: &policy.policy_id,
            version: policy.version,
            snapshot: policy,
            attributes: &[(CUSTOMER_ID, &policy.customer_id)],
        };
        POLICIES
            .write(
                &self.table,
                item,
                expected,
                write.request.as_ref(),
                |unit| {
                    for action in digest {
                        unit.write(action);
                    }
                    write.change.append_to(unit, write.expected)?;
                    Ok(())
                },
            )
            .await
    }

    /// The consistency view of the policies in this table.
    pub fn consistency_view(&self) -> PolicyConsistencyView {
        self.table.consistency_view(self.digests.clone())
    }

    /// See [`PolicyStore::repair`](super::PolicyStore::repair).
    pub(super) async fn repair(
        &self,
        keys: Vec<String>,
        run: EventId,
    ) -> Result<RepairReport, StoreError> {
        super::repair::republish_on_dynamodb(&self.table, keys, run).await
    }

    /// See [`PolicyStore::get`](super::PolicyStore::get).
    pub(super) async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        let policy = POLICIES.get(&self.table, policy_id).await?;
        Ok(policy.map(Policy::from_snapshot))
    }

    /// See [`PolicyStore::list_by_customer`](super::PolicyStore::list_by_customer).
    pub(super) async fn list_by_customer(
        &self,
        customer_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Policy>, StoreError> {
        let policies = POLICIES
            .list(&self.table, &CUSTOMER_POLICIES, customer_id, after, limit)
            .await?;
        Ok(policies.into_iter().map(Policy::from_snapshot).collect())
    }

    /// See [`PolicyStore::ping`](super::PolicyStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.table.ping().await
    }
}
