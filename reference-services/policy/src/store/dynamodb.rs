//! [`DynamoDbPolicyStore`]: policies in the service's DynamoDB table, beside its outbox.
//!
//! One table holds the policies, the outbox's items and the request records (see
//! [`dovetail_service_kit::store::dynamodb`]):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | policy | `policy#<policy id>` | `policy` | `policy_id`, `customer_id`, `version` (N), `snapshot` (the policy's JSON) |
//!
//! The global secondary index `by-customer` (partition key `customer_id`, sort key
//! `policy_id`, every attribute projected) lists a customer's policies in id order; only
//! policy items have those attributes, so the index holds nothing else. Like every
//! DynamoDB secondary index it is eventually consistent: a policy written a moment ago
//! may be missing from a listing for a moment (usually well under a second), while
//! [`get`](super::PolicyStore::get) reads strongly consistently.

use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::Source;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    ServiceTable, SnapshotIndex, SnapshotItem, SnapshotItems, open_table,
};

use super::{OpenedStore, PolicyWrite, StoreError, WriteOutcome};
use crate::domain::Policy;

/// The index listing a customer's policies.
pub const BY_CUSTOMER: &str = "by-customer";

const CUSTOMER_ID: &str = "customer_id";

/// The policy items: `policy#<id>`/`policy`, with `policy_id`.
const POLICIES: SnapshotItems<PolicySnapshot> = SnapshotItems::new("policy", "policy_id");
/// A customer's policies.
const CUSTOMER_POLICIES: SnapshotIndex = SnapshotIndex {
    name: BY_CUSTOMER,
    partition_key: CUSTOMER_ID,
};

/// Policies in a DynamoDB table: one item per policy, written in the same
/// `TransactWriteItems` as the policy's event and the request's record.
#[derive(Debug, Clone)]
pub struct DynamoDbPolicyStore {
    table: ServiceTable,
}

impl DynamoDbPolicyStore {
    /// Opens the table `table` (creating it, its index and its TTL when missing) for the
    /// events of `source`, with the relay's store on its outbox and its commit signal.
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
        Ok(table.opened(crate::SERVICE, |table| Self { table }))
    }

    /// See [`PolicyStore::write`](super::PolicyStore::write).
    pub(super) async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        let policy = write.policy.snapshot();
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
                write.expected,
                write.request.as_ref(),
                |unit| {
                    write.change.append_to(unit, write.expected)?;
                    Ok(())
                },
            )
            .await
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
