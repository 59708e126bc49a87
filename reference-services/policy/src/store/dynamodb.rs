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

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use dovetail_events::envelope::Source;
use dovetail_outbox::dynamodb::DynamoDbOutboxStore;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    IndexQuery, SecondaryIndex, ServiceTable, VERSION, backend, open_table, string_of,
};
use tokio::sync::Notify;

use super::sqlite::parse_snapshot;
use super::{PolicyWrite, StoreError, WriteOutcome};
use crate::domain::Policy;

/// The index listing a customer's policies.
pub const BY_CUSTOMER: &str = "by-customer";
/// The sort key of a policy item.
const POLICY_SORT_KEY: &str = "policy";

const POLICY_ID: &str = "policy_id";
const CUSTOMER_ID: &str = "customer_id";
const SNAPSHOT: &str = "snapshot";

/// Policies in a DynamoDB table: one item per policy, written in the same
/// `TransactWriteItems` as the policy's event and the request's record.
#[derive(Debug, Clone)]
pub struct DynamoDbPolicyStore {
    table: ServiceTable,
}

impl DynamoDbPolicyStore {
    /// Opens the table `table` (creating it, its index and its TTL when missing) for the
    /// events of `source`, and the relay's store on its outbox.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the table cannot be created or has other keys; the
    /// message names it.
    pub async fn open(
        clients: &AwsClients,
        table: &str,
        source: Source,
    ) -> Result<(Self, DynamoDbOutboxStore), StoreError> {
        let index = SecondaryIndex {
            name: BY_CUSTOMER.to_owned(),
            partition_key: CUSTOMER_ID.to_owned(),
            sort_key: POLICY_ID.to_owned(),
        };
        let table = open_table(clients.dynamodb(), table, source, &[index]).await?;
        let relay_store = table.outbox().store(format!("{}.relay", crate::SERVICE));
        Ok((Self { table }, relay_store))
    }

    /// The signal each commit gives the relay in this process.
    pub fn commits(&self) -> Arc<Notify> {
        self.table.outbox().commits()
    }

    /// See [`PolicyStore::write`](super::PolicyStore::write).
    pub(super) async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        let put = self.policy_put(&write)?;
        let written = self
            .table
            .write(write.request.as_ref(), |unit| {
                unit.write(put);
                write.change.append_to(unit, write.expected)?;
                Ok(())
            })
            .await;
        match written {
            Ok(outcome) => Ok(outcome),
            Err(error) => Err(self
                .table
                .explain_versioned(
                    error,
                    self.policy_key(write.policy.id()),
                    write.policy.id(),
                    write.expected,
                    write.policy.version(),
                )
                .await),
        }
    }

    /// See [`PolicyStore::get`](super::PolicyStore::get).
    pub(super) async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        let read = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.policy_key(policy_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| backend(&format!("reading policy {policy_id}"), &error))?;
        read.item().map(parse_item).transpose()
    }

    /// See [`PolicyStore::list_by_customer`](super::PolicyStore::list_by_customer).
    pub(super) async fn list_by_customer(
        &self,
        customer_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Policy>, StoreError> {
        let query = IndexQuery {
            index: BY_CUSTOMER,
            partition_key: CUSTOMER_ID,
            value: customer_id,
            sort_key: POLICY_ID,
        };
        let items = self.table.query_index(&query, after, limit).await?;
        items.iter().map(parse_item).collect()
    }

    /// See [`PolicyStore::ping`](super::PolicyStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.table.ping().await
    }

    fn policy_key(&self, policy_id: &str) -> HashMap<String, AttributeValue> {
        self.table
            .key(format!("policy#{policy_id}"), POLICY_SORT_KEY)
    }

    /// The policy's item, conditional on the version the write expects.
    fn policy_put(&self, write: &PolicyWrite) -> Result<TransactWriteItem, StoreError> {
        let snapshot = write.policy.snapshot();
        let json = serde_json::to_string(snapshot).map_err(|error| {
            StoreError::Backend(format!(
                "policy {} does not serialize: {error}",
                snapshot.policy_id
            ))
        })?;
        let mut item = self.policy_key(&snapshot.policy_id);
        item.extend([
            (
                POLICY_ID.to_owned(),
                AttributeValue::S(snapshot.policy_id.clone()),
            ),
            (
                CUSTOMER_ID.to_owned(),
                AttributeValue::S(snapshot.customer_id.clone()),
            ),
            (
                VERSION.to_owned(),
                AttributeValue::N(snapshot.version.to_string()),
            ),
            (SNAPSHOT.to_owned(), AttributeValue::S(json)),
        ]);
        self.table.versioned_put(item, write.expected)
    }
}

fn parse_item(item: &HashMap<String, AttributeValue>) -> Result<Policy, StoreError> {
    let json = string_of(item, SNAPSHOT).ok_or_else(|| {
        StoreError::Backend(format!(
            "the policy item {:?} has no `snapshot` string",
            string_of(item, POLICY_ID).unwrap_or("?")
        ))
    })?;
    parse_snapshot(json)
}
