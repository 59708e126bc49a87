//! [`DynamoDbRunStore`]: run records and the runners' lease in a DynamoDB table, shared by
//! every runner of every instance that names it.
//!
//! One table, keys `pk` and `sk` (strings):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | the lease | `lease` | `runner` | `owner`, `token`, `expires_at_ms` |
//! | a run | `run` | the run id (UUID v7: time order) | `record` (JSON), `status` |
//! | a queued run's marker | `queued` | the run id | – |
//! | the schedule | `schedule` | `last` | `last_ms`: when the latest scheduled run was created |
//!
//! Every read is strongly consistent; the lease changes hands only through a conditional
//! write on the state last read, so two runners never both get it. Runs live in one
//! partition: a runner writes a few items every few minutes, far below a partition's
//! limits.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use futures_util::future::BoxFuture;

use crate::error::BoxError;
use crate::runner::record::{RunId, RunRecord, RunStatus, Trigger};
use crate::runner::store::{RunLease, RunStore};

/// How long [`DynamoDbRunStore::create_table_if_missing`] waits for the table.
const TABLE_WAIT: Duration = Duration::from_secs(60);

/// Run records and the lease in the DynamoDB table `table` (keys `pk` and `sk`): the
/// lease item (`lease`/`runner`: `owner`, `token`, `expires_at_ms`), one item per run
/// (`run`/run id: the record as JSON), a marker per queued run (`queued`/run id) and the
/// schedule (`schedule`/`last`). Reads are strongly consistent; the lease changes hands
/// only through a conditional write over the very state read.
///
/// ```no_run
/// use dovetail_consistency::DynamoDbRunStore;
///
/// # async fn open(client: aws_sdk_dynamodb::Client) -> Result<(), dovetail_consistency::BoxError> {
/// let store = DynamoDbRunStore::new(client, "dovetail-consistency-runs");
/// store.create_table_if_missing().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbRunStore {
    client: Client,
    table: String,
}

type Item = HashMap<String, AttributeValue>;

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn number(item: &Item, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn parse(item: &Item) -> Result<RunRecord, BoxError> {
    let json = text(item, "record").ok_or("a run item has no `record` attribute")?;
    serde_json::from_str(json)
        .map_err(|error| format!("a stored run record is not valid: {error}").into())
}

fn conditional_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata, R>(
    error: &SdkError<E, R>,
) -> bool {
    error
        .as_service_error()
        .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
        == Some("ConditionalCheckFailedException")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl DynamoDbRunStore {
    /// The store in `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed(&self, what: &str, error: impl std::error::Error) -> BoxError {
        format!(
            "{what} in the DynamoDB table {}: {}",
            self.table,
            DisplayErrorContext(error)
        )
        .into()
    }

    /// Creates the table (on-demand capacity) unless it exists, and waits until it is
    /// active. Safe to call on every start, from several processes at once.
    ///
    /// # Errors
    /// When DynamoDB refuses, or the table does not become active within a minute.
    pub async fn create_table_if_missing(&self) -> Result<(), BoxError> {
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        if let Err(error) = described {
            if !error.as_service_error().is_some_and(
                aws_sdk_dynamodb::operation::describe_table::DescribeTableError::is_resource_not_found_exception,
            ) {
                return Err(self.failed("describing the runs' table", error));
            }
            let mut request = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest);
            for (name, key_type) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
                request = request
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(name)
                            .attribute_type(ScalarAttributeType::S)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(name)
                            .key_type(key_type)
                            .build()?,
                    );
            }
            if let Err(error) = request.send().await
                && !error.as_service_error().is_some_and(
                    aws_sdk_dynamodb::operation::create_table::CreateTableError::is_resource_in_use_exception,
                )
            {
                return Err(self.failed("creating the runs' table", error));
            }
        }
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        loop {
            let status = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|error| self.failed("waiting for the runs' table", error))?
                .table()
                .and_then(|table| table.table_status().cloned());
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the DynamoDB table {} is not active after {TABLE_WAIT:?}",
                    self.table
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn take_lease(&self, owner: String, ttl: Duration) -> Result<Option<RunLease>, BoxError> {
        let held = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("lease", "runner")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("reading the runners' lease", error))?
            .item;
        let now = now_ms();
        let token = match &held {
            None => 1,
            Some(item) => {
                let token = number(item, "token").unwrap_or(0);
                if text(item, "owner") == Some(owner.as_str()) {
                    token
                } else if number(item, "expires_at_ms").unwrap_or(0) <= now {
                    token + 1
                } else {
                    return Ok(None);
                }
            }
        };
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let mut item = key("lease", "runner");
        item.insert("owner".into(), AttributeValue::S(owner));
        item.insert("token".into(), AttributeValue::N(token.to_string()));
        item.insert(
            "expires_at_ms".into(),
            AttributeValue::N(now.saturating_add(ttl_ms).to_string()),
        );
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        // Written only over the very state read: a renewal and a takeover that read the
        // same state cannot both succeed.
        put = match &held {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(seen) => {
                let mut put = put.condition_expression(
                    "#owner = :owner AND #token = :token AND #expires = :expires",
                );
                for (name, placeholder) in [
                    ("owner", "owner"),
                    ("token", "token"),
                    ("expires_at_ms", "expires"),
                ] {
                    let value = seen
                        .get(name)
                        .cloned()
                        .unwrap_or(AttributeValue::Null(true));
                    put = put
                        .expression_attribute_names(format!("#{placeholder}"), name)
                        .expression_attribute_values(format!(":{placeholder}"), value);
                }
                put
            }
        };
        match put.send().await {
            Ok(_) => Ok(Some(RunLease { token })),
            // Another runner wrote the lease since we read it.
            Err(error) if conditional_failed(&error) => Ok(None),
            Err(error) => Err(self.failed("taking the runners' lease", error)),
        }
    }

    async fn put_record(&self, record: RunRecord) -> Result<(), BoxError> {
        let sk = record.id.to_string();
        let mut item = key("run", &sk);
        item.insert(
            "record".into(),
            AttributeValue::S(serde_json::to_string(&record)?),
        );
        item.insert(
            "status".into(),
            AttributeValue::S(record.status.as_str().to_owned()),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|error| self.failed("saving a run record", error))?;
        // The marker follows the record: a marker left by a crash between the two writes
        // names a run no longer queued, which `queued` skips.
        if record.status == RunStatus::Queued {
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(key("queued", &sk)))
                .send()
                .await
                .map_err(|error| self.failed("marking a run queued", error))?;
        } else {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key("queued", &sk)))
                .send()
                .await
                .map_err(|error| self.failed("unmarking a started run", error))?;
        }
        if record.trigger == Trigger::Scheduled {
            let updated = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key("schedule", "last")))
                .update_expression("SET last_ms = :at")
                .condition_expression("attribute_not_exists(last_ms) OR last_ms < :at")
                .expression_attribute_values(
                    ":at",
                    AttributeValue::N(record.created_at_ms.to_string()),
                )
                .send()
                .await;
            if let Err(error) = updated
                && !conditional_failed(&error)
            {
                return Err(self.failed("recording the schedule", error));
            }
        }
        Ok(())
    }

    async fn get_record(&self, id: RunId) -> Result<Option<RunRecord>, BoxError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key("run", &id.to_string())))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.failed("reading a run record", error))?
            .item;
        item.as_ref().map(parse).transpose()
    }

    async fn query(
        &self,
        pk: &str,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, BoxError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .scan_index_forward(!newest_first)
                .consistent_read(true)
                .set_limit(limit.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| self.failed("listing runs", error))?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || limit.is_some_and(|n| items.len() >= n) {
                return Ok(items);
            }
        }
    }
}

impl RunStore for DynamoDbRunStore {
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>> {
        Box::pin(self.take_lease(owner.to_owned(), ttl))
    }

    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>> {
        let owner = owner.to_owned();
        Box::pin(async move {
            let released = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key("lease", "runner")))
                .update_expression("SET expires_at_ms = :zero")
                .condition_expression("#owner = :me")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":zero", AttributeValue::N("0".into()))
                .expression_attribute_values(":me", AttributeValue::S(owner))
                .send()
                .await;
            match released {
                Ok(_) => Ok(()),
                Err(error) if conditional_failed(&error) => Ok(()),
                Err(error) => Err(self.failed("giving up the runners' lease", error)),
            }
        })
    }

    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.put_record(record.clone()))
    }

    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>> {
        Box::pin(self.get_record(id))
    }

    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        Box::pin(async move {
            let items = self.query("run", true, Some(limit)).await?;
            items.iter().take(limit).map(parse).collect()
        })
    }

    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        Box::pin(async move {
            let mut queued = Vec::new();
            for marker in self.query("queued", false, None).await? {
                let Some(id) = text(&marker, "sk").and_then(|id| id.parse::<RunId>().ok()) else {
                    continue;
                };
                if let Some(record) = self.get_record(id).await?
                    && record.status == RunStatus::Queued
                {
                    queued.push(record);
                }
            }
            Ok(queued)
        })
    }

    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        Box::pin(async move {
            let item = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key("schedule", "last")))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| self.failed("reading the schedule", error))?
                .item;
            Ok(item.as_ref().and_then(|item| number(item, "last_ms")))
        })
    }
}
