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
//! [`get`](DynamoDbPolicyStore::get) reads strongly consistently.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use dovetail_events::envelope::Source;
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::dynamodb::DynamoDbOutboxStore;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    SecondaryIndex, ServiceTable, backend, number_of, open_table, string_of,
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
const VERSION: &str = "version";
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
            // The policy item's own condition failed while its version item's did not
            // (they move together, so only if the table was changed by hand): say which
            // version the policy has, as the SQLite store does.
            Err(StoreError::Backend(message)) => {
                let policy_id = write.policy.id();
                let current = self.current_version(policy_id).await?;
                let as_expected = match write.expected {
                    ExpectedVersion::New => current.is_none(),
                    ExpectedVersion::Exactly(version) => current == Some(version),
                    ExpectedVersion::Any => current.is_some(),
                };
                // At the version this write would have made, it may have committed after
                // all (an answer lost on the way): only a retry can tell.
                if as_expected || current == Some(write.policy.version()) {
                    Err(StoreError::Backend(message))
                } else {
                    Err(StoreError::VersionConflict {
                        id: policy_id.to_owned(),
                        current,
                    })
                }
            }
            other => other,
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
        let mut policies = Vec::with_capacity(limit.min(100));
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while policies.len() < limit {
            let remaining = i32::try_from(limit - policies.len()).unwrap_or(i32::MAX);
            let mut query = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .index_name(BY_CUSTOMER)
                .expression_attribute_names("#customer", CUSTOMER_ID)
                .expression_attribute_values(":customer", AttributeValue::S(customer_id.to_owned()))
                .limit(remaining)
                .set_exclusive_start_key(start.take());
            query = match after {
                // DynamoDB refuses an empty string in a key condition: no cursor, no
                // lower bound.
                Some(after) if !after.is_empty() => query
                    .key_condition_expression("#customer = :customer AND #policy > :after")
                    .expression_attribute_names("#policy", POLICY_ID)
                    .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
                _ => query.key_condition_expression("#customer = :customer"),
            };
            let page = query.send().await.map_err(|error| {
                backend(&format!("listing the policies of customer {customer_id}"), &error)
            })?;
            for item in page.items() {
                policies.push(parse_item(item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        policies.truncate(limit);
        Ok(policies)
    }

    /// See [`PolicyStore::ping`](super::PolicyStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.table.key("ping", "ping")))
            .send()
            .await
            .map_err(|error| backend(&format!("reading the table {}", self.table.name()), &error))?;
        Ok(())
    }

    fn policy_key(&self, policy_id: &str) -> HashMap<String, AttributeValue> {
        self.table.key(format!("policy#{policy_id}"), POLICY_SORT_KEY)
    }

    /// The policy's item, conditional on the version the write expects.
    fn policy_put(&self, write: &PolicyWrite) -> Result<TransactWriteItem, StoreError> {
        let snapshot = write.policy.snapshot();
        let json = serde_json::to_string(snapshot)
            .map_err(|error| StoreError::Backend(format!("policy {} does not serialize: {error}", snapshot.policy_id)))?;
        let mut item = self.policy_key(&snapshot.policy_id);
        item.extend([
            (POLICY_ID.to_owned(), AttributeValue::S(snapshot.policy_id.clone())),
            (CUSTOMER_ID.to_owned(), AttributeValue::S(snapshot.customer_id.clone())),
            (VERSION.to_owned(), AttributeValue::N(snapshot.version.to_string())),
            (SNAPSHOT.to_owned(), AttributeValue::S(json)),
        ]);
        let put = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(item))
            .expression_attribute_names("#pk", &self.table.outbox().config().partition_key);
        let put = match write.expected {
            ExpectedVersion::New => put.condition_expression("attribute_not_exists(#pk)"),
            ExpectedVersion::Exactly(version) => put
                .condition_expression("attribute_exists(#pk) AND #version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
            ExpectedVersion::Any => put.condition_expression("attribute_exists(#pk)"),
        };
        let put = put
            .build()
            .map_err(|error| backend("building the policy's item", &error))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The stored version of the policy, read strongly consistently.
    async fn current_version(&self, policy_id: &str) -> Result<Option<u64>, StoreError> {
        let read = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.policy_key(policy_id)))
            .consistent_read(true)
            .projection_expression("#version")
            .expression_attribute_names("#version", VERSION)
            .send()
            .await
            .map_err(|error| backend(&format!("reading the version of policy {policy_id}"), &error))?;
        Ok(read.item().and_then(|item| number_of(item, VERSION)))
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
