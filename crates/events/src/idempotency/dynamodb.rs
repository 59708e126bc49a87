//! [`DynamoDbIdempotencyStore`]: one item per key, conditional writes, DynamoDB TTL; and
//! the "processed" marker as a `TransactWriteItem` for the caller's own transaction.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, KeySchemaElement,
    KeyType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
};

use super::clock::{duration_millis, epoch_micros, epoch_millis, from_epoch_millis};
use super::record::{
    ClaimDecision, LeaseCheck, RELEASED_HELD_UNTIL_MS, RecordState, StoredRecord, check_lease,
    decide_claim, in_progress_expiry, next_fencing_token,
};
use super::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, MarkOutcome, StoreOperation, StoredOutcome,
};

const STORE: &str = "DynamoDB";

/// How often a claim retries when the item changes between its read and its write.
const CLAIM_ATTEMPTS: usize = 8;

/// How long [`DynamoDbIdempotencyStore::create_table_if_missing`] waits for the table.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

// Attribute names of an item, besides the configurable partition key and TTL attribute.
const FINGERPRINT: &str = "fingerprint";
const OWNER: &str = "owner";
const FENCING_TOKEN: &str = "fencing_token";
const STATE: &str = "state";
const HELD_UNTIL_MS: &str = "held_until_ms";
const EXPIRES_AT_MS: &str = "expires_at_ms";
const OUTCOME: &str = "outcome";

const IN_PROGRESS: &str = "in_progress";
const PROCESSED: &str = "processed";

/// The item may be (re)claimed: absent, expired, or an expired lease on the same payload.
const CLAIMABLE: &str = "(attribute_not_exists(#pk) OR #expires_at_ms <= :now \
     OR (#state = :in_progress AND #held_until_ms <= :now AND #fingerprint = :fingerprint))";

/// The item is still held by the lease given in `:owner` and `:fencing_token`.
const HELD_BY_LEASE: &str = "#owner = :owner AND #fencing_token = :fencing_token \
     AND #state = :in_progress AND #expires_at_ms > :now";

/// Where [`DynamoDbIdempotencyStore`] keeps its items.
///
/// # Example
/// ```
/// use dovetail_events::idempotency::DynamoDbIdempotencyConfig;
///
/// // A table of its own, with the defaults: partition key `pk`, TTL on `expires_at`.
/// let own = DynamoDbIdempotencyConfig::new("claims-idempotency");
/// // Items in the service's table beside its data, under a prefix.
/// let shared = DynamoDbIdempotencyConfig::new("claims")
///     .with_partition_key("id")
///     .with_key_prefix("idem#")
///     .with_ttl_attribute("ttl");
/// assert_eq!(shared.partition_key, "id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamoDbIdempotencyConfig {
    /// The table's name.
    pub table: String,
    /// The name of the table's partition key, a string attribute. Default `pk`. The
    /// table must not have a sort key.
    pub partition_key: String,
    /// Put before every idempotency key to make the partition key's value, e.g.
    /// `idem#` when the table holds other items too. Default empty.
    pub key_prefix: String,
    /// The table's TTL attribute: epoch seconds after which DynamoDB may delete an item.
    /// Default `expires_at`.
    pub ttl_attribute: String,
}

impl DynamoDbIdempotencyConfig {
    /// Items in `table`, with the defaults.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            partition_key: "pk".to_owned(),
            key_prefix: String::new(),
            ttl_attribute: "expires_at".to_owned(),
        }
    }

    /// The same, with another partition key attribute name.
    #[must_use]
    pub fn with_partition_key(self, partition_key: impl Into<String>) -> Self {
        Self {
            partition_key: partition_key.into(),
            ..self
        }
    }

    /// The same, with a prefix before every key.
    #[must_use]
    pub fn with_key_prefix(self, key_prefix: impl Into<String>) -> Self {
        Self {
            key_prefix: key_prefix.into(),
            ..self
        }
    }

    /// The same, with another TTL attribute name.
    #[must_use]
    pub fn with_ttl_attribute(self, ttl_attribute: impl Into<String>) -> Self {
        Self {
            ttl_attribute: ttl_attribute.into(),
            ..self
        }
    }
}

/// An [`IdempotencyStore`] in a DynamoDB table, one item per key.
///
/// Every operation is one conditional write (`PutItem`, `UpdateItem` or `DeleteItem`
/// with a `ConditionExpression`); a claim reads the item only when its first write is
/// refused. The item's TTL attribute (`expires_at`, epoch seconds) lets DynamoDB delete
/// it once it expires; since that deletion is lazy (up to days), reads and conditions use
/// `expires_at_ms` and treat an expired item as absent.
///
/// Leases are compared with this process's clock: keep the clocks of the consumers in
/// sync (NTP), and leases long compared with their skew.
///
/// | attribute | type | content |
/// |---|---|---|
/// | partition key (`pk`) | S | key prefix + idempotency key |
/// | `fingerprint` | B | SHA-256 of the payload |
/// | `owner`, `fencing_token` | S, N | the lease last granted (no `owner` on transactional markers) |
/// | `state` | S | `in_progress` or `processed` |
/// | `held_until_ms` | N | end of the lease, Unix milliseconds |
/// | `expires_at_ms` | N | when the item stops counting, Unix milliseconds |
/// | TTL attribute (`expires_at`) | N | the same in epoch seconds, rounded up, for DynamoDB TTL |
/// | `outcome` | B | the stored outcome of a processed key |
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use dovetail_events::idempotency::{
///     DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore, Fingerprint, IdempotencyKey,
///     IdempotencyStore, LeaseOwner,
/// };
///
/// # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let store = DynamoDbIdempotencyStore::new(client, DynamoDbIdempotencyConfig::new("claims-idem"));
/// store.create_table_if_missing().await?;
/// let key = IdempotencyKey::new("evt-1")?;
/// let claim = store
///     .try_claim(&key, &Fingerprint::of(b"{}"), &LeaseOwner::random(), Duration::from_secs(30))
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbIdempotencyStore {
    client: Client,
    config: DynamoDbIdempotencyConfig,
}

impl DynamoDbIdempotencyStore {
    /// A store on `client`'s account, in the table `config` names.
    pub fn new(client: Client, config: DynamoDbIdempotencyConfig) -> Self {
        Self { client, config }
    }

    /// Where the items are.
    pub fn config(&self) -> &DynamoDbIdempotencyConfig {
        &self.config
    }

    /// Creates the table if it does not exist (partition key only, on-demand billing),
    /// waits until it is active, and enables TTL on the TTL attribute. Safe to call on
    /// every start, from several processes at once.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when DynamoDB refuses, the table exists with another
    /// key schema, the table does not become active within a minute, or the table's TTL
    /// is already enabled on another attribute.
    pub async fn create_table_if_missing(&self) -> Result<(), IdempotencyError> {
        let failed =
            |error: BoxedSdkError| IdempotencyError::backend(STORE, StoreOperation::Open, error);
        let table = &self.config.table;
        let described = self.client.describe_table().table_name(table).send().await;
        match described {
            Ok(output) => {
                let keys = output
                    .table()
                    .map(aws_sdk_dynamodb::types::TableDescription::key_schema)
                    .unwrap_or_default();
                let expected = keys.len() == 1
                    && keys[0].attribute_name() == self.config.partition_key
                    && keys[0].key_type() == &KeyType::Hash;
                if !expected {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Open,
                        Problem(format!(
                            "the table {table} exists, but its key is not the partition key `{}` \
                             alone",
                            self.config.partition_key
                        )),
                    ));
                }
            }
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) =>
            {
                let created = self
                    .client
                    .create_table()
                    .table_name(table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(&self.config.partition_key)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|error| failed(error.into()))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(&self.config.partition_key)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|error| failed(error.into()))?,
                    )
                    .send()
                    .await;
                // Another process creating it at the same time is fine.
                if let Err(error) = created
                    && !error
                        .as_service_error()
                        .is_some_and(aws_sdk_dynamodb::operation::create_table::CreateTableError::is_resource_in_use_exception)
                {
                    return Err(failed(error.into()));
                }
            }
            Err(error) => return Err(failed(error.into())),
        }
        self.wait_until_active().await?;
        self.enable_ttl().await
    }

    async fn wait_until_active(&self) -> Result<(), IdempotencyError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.config.table)
                .send()
                .await
                .map_err(|error| IdempotencyError::backend(STORE, StoreOperation::Open, error))?;
            let status = described.table().and_then(|table| table.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IdempotencyError::backend(
                    STORE,
                    StoreOperation::Open,
                    Problem(format!(
                        "the table {} did not become ACTIVE within {} s",
                        self.config.table,
                        TABLE_ACTIVE_TIMEOUT.as_secs()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), IdempotencyError> {
        let failed =
            |error: BoxedSdkError| IdempotencyError::backend(STORE, StoreOperation::Open, error);
        let wanted = &self.config.ttl_attribute;
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.config.table)
            .send()
            .await
            .map_err(|error| failed(error.into()))?;
        if let Some(ttl) = described.time_to_live_description() {
            let enabled = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(attribute) if enabled && attribute == wanted => return Ok(()),
                Some(attribute) if enabled => {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Open,
                        Problem(format!(
                            "the table {} has TTL enabled on `{attribute}`, not on `{wanted}`; \
                             configure the store's ttl_attribute as `{attribute}`",
                            self.config.table
                        )),
                    ));
                }
                _ => {}
            }
        }
        self.client
            .update_time_to_live()
            .table_name(&self.config.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(wanted)
                    .build()
                    .map_err(|error| failed(error.into()))?,
            )
            .send()
            .await
            .map_err(|error| failed(error.into()))?;
        Ok(())
    }

    /// The "processed" marker of `key` as one action of the caller's
    /// `TransactWriteItems`, so that the handler's writes and the marker commit together
    /// (or neither does). A first delivery costs one transaction and no lease.
    ///
    /// The action is a `Put` whose condition holds when the key has no live item, or only
    /// an expired lease on the same payload; otherwise DynamoDB cancels the whole
    /// transaction. Hand the cancellation reasons to
    /// [`interpret_marker_cancellation`](Self::interpret_marker_cancellation) with the
    /// action's index to learn whether the message is a duplicate.
    ///
    /// # Panics
    /// Never: the `Put` builder's required fields (table name, item) are always set.
    ///
    /// # Example
    /// ```no_run
    /// use std::time::Duration;
    /// use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    /// use dovetail_events::idempotency::{
    ///     DynamoDbIdempotencyStore, Fingerprint, IdempotencyKey, MarkOutcome, StoredOutcome,
    /// };
    ///
    /// # async fn example(
    /// #     store: DynamoDbIdempotencyStore,
    /// #     client: aws_sdk_dynamodb::Client,
    /// #     business_write: aws_sdk_dynamodb::types::TransactWriteItem,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// let key = IdempotencyKey::new("evt-1")?;
    /// let fingerprint = Fingerprint::of(b"{}");
    /// let marker = store.processed_marker_put(
    ///     &key,
    ///     &fingerprint,
    ///     &StoredOutcome::from("created"),
    ///     Duration::from_secs(24 * 3600),
    /// );
    /// let sent = client
    ///     .transact_write_items()
    ///     .transact_items(business_write) // index 0
    ///     .transact_items(marker) // index 1
    ///     .send()
    ///     .await;
    /// let outcome = match sent {
    ///     Ok(_) => MarkOutcome::Marked,
    ///     Err(error) => {
    ///         let reasons = match error.as_service_error() {
    ///             Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
    ///                 canceled.cancellation_reasons().to_vec()
    ///             }
    ///             _ => return Err(error.into()),
    ///         };
    ///         match store.interpret_marker_cancellation(&reasons, 1, &key, &fingerprint).await? {
    ///             Some(outcome) => outcome, // Duplicate or InProgress
    ///             None => return Err(error.into()), // another action's condition failed
    ///         }
    ///     }
    /// };
    /// # Ok(())
    /// # }
    /// ```
    pub fn processed_marker_put(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &StoredOutcome,
        retain: Duration,
    ) -> TransactWriteItem {
        let now = SystemTime::now();
        let now_ms = epoch_millis(now);
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let mut item = self.key_item(key);
        item.extend([
            (FINGERPRINT.to_owned(), fingerprint_value(fingerprint)),
            (
                FENCING_TOKEN.to_owned(),
                number(next_fencing_token(None, epoch_micros(now))),
            ),
            (STATE.to_owned(), AttributeValue::S(PROCESSED.to_owned())),
            (HELD_UNTIL_MS.to_owned(), number(now_ms)),
            (EXPIRES_AT_MS.to_owned(), number(expires_at_ms)),
            (
                self.config.ttl_attribute.clone(),
                number(ttl_seconds(expires_at_ms)),
            ),
            (
                OUTCOME.to_owned(),
                AttributeValue::B(Blob::new(outcome.as_bytes())),
            ),
        ]);
        let put = Put::builder()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression(CLAIMABLE)
            .set_expression_attribute_names(Some(self.names(&[
                "pk",
                "expires_at_ms",
                "state",
                "held_until_ms",
                "fingerprint",
            ])))
            .set_expression_attribute_values(Some(values([
                (":now", number(now_ms)),
                (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
                (":fingerprint", fingerprint_value(fingerprint)),
            ])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("table name and item are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// Why the marker from [`processed_marker_put`](Self::processed_marker_put), sent as
    /// action `index` of a `TransactWriteItems` that DynamoDB cancelled, was refused.
    ///
    /// Returns `None` when the marker's condition did not fail: another action's
    /// condition did, or the transaction was cancelled for a conflict or throttling, and
    /// the caller handles that. Otherwise the item is examined (from the reason, or read
    /// again): [`MarkOutcome::Duplicate`] with the stored outcome when the key was
    /// processed; [`MarkOutcome::InProgress`] when a lease holds it or it changed under
    /// the transaction (leave the message for redelivery).
    ///
    /// # Errors
    /// [`IdempotencyError::PayloadMismatch`] when the key's item has another fingerprint;
    /// [`IdempotencyError::Backend`] when the read fails;
    /// [`IdempotencyError::CorruptRecord`] when the item cannot be read.
    pub async fn interpret_marker_cancellation(
        &self,
        reasons: &[CancellationReason],
        index: usize,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<Option<MarkOutcome>, IdempotencyError> {
        let Some(reason) = reasons.get(index) else {
            return Ok(None);
        };
        if reason.code() != Some("ConditionalCheckFailed") {
            return Ok(None);
        }
        let record = match reason.item() {
            Some(item) if !item.is_empty() => Some(self.parse(key, item)?),
            _ => self.read(key, StoreOperation::MarkProcessed).await?,
        };
        let now = SystemTime::now();
        let outcome = match decide_claim(record.as_ref(), fingerprint, now) {
            ClaimDecision::Answer(ClaimOutcome::Processed(outcome)) => {
                MarkOutcome::Duplicate(outcome)
            }
            ClaimDecision::Answer(ClaimOutcome::InProgress { held_until }) => {
                MarkOutcome::InProgress { held_until }
            }
            ClaimDecision::Mismatch { stored } => {
                return Err(IdempotencyError::PayloadMismatch {
                    key: key.clone(),
                    stored,
                    presented: *fingerprint,
                });
            }
            // The item changed since the transaction ran (released, expired): free now,
            // so a redelivery will succeed.
            ClaimDecision::Answer(ClaimOutcome::Claimed { .. }) | ClaimDecision::Grant { .. } => {
                MarkOutcome::InProgress { held_until: now }
            }
        };
        Ok(Some(outcome))
    }

    /// The item's key attribute.
    fn key_item(&self, key: &IdempotencyKey) -> HashMap<String, AttributeValue> {
        HashMap::from([(
            self.config.partition_key.clone(),
            AttributeValue::S(format!("{}{}", self.config.key_prefix, key.as_str())),
        )])
    }

    /// `#name` placeholders for the attributes an expression uses.
    fn names(&self, used: &[&str]) -> HashMap<String, String> {
        used.iter()
            .map(|name| {
                let attribute = match *name {
                    "pk" => self.config.partition_key.clone(),
                    "ttl" => self.config.ttl_attribute.clone(),
                    other => other.to_owned(),
                };
                (format!("#{name}"), attribute)
            })
            .collect()
    }

    /// Reads the key's item with a consistent read; `None` when there is none.
    async fn read(
        &self,
        key: &IdempotencyKey,
        operation: StoreOperation,
    ) -> Result<Option<StoredRecord>, IdempotencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| IdempotencyError::backend(STORE, operation, error))?;
        output.item().map(|item| self.parse(key, item)).transpose()
    }

    fn parse(
        &self,
        key: &IdempotencyKey,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<StoredRecord, IdempotencyError> {
        let corrupt = |reason: String| IdempotencyError::CorruptRecord {
            key: key.clone(),
            reason,
        };
        let number_of = |name: &str| -> Result<u64, IdempotencyError> {
            match item.get(name) {
                Some(AttributeValue::N(number)) => number
                    .parse::<u64>()
                    .map_err(|_| corrupt(format!("`{name}` is not a whole number: {number}"))),
                _ => Err(corrupt(format!("`{name}` is missing or not a number"))),
            }
        };
        let fingerprint = match item.get(FINGERPRINT) {
            Some(AttributeValue::B(bytes)) => Fingerprint::from_slice(bytes.as_ref())
                .map_err(|_| corrupt("`fingerprint` is not 32 bytes".to_owned()))?,
            _ => return Err(corrupt("`fingerprint` is missing or not binary".to_owned())),
        };
        let owner = match item.get(OWNER) {
            Some(AttributeValue::S(owner)) => Some(
                LeaseOwner::new(owner.as_str())
                    .map_err(|_| corrupt("`owner` is not a valid lease owner".to_owned()))?,
            ),
            None => None,
            Some(_) => return Err(corrupt("`owner` is not a string".to_owned())),
        };
        let state = match item.get(STATE) {
            Some(AttributeValue::S(state)) if state == IN_PROGRESS => RecordState::InProgress {
                held_until_ms: number_of(HELD_UNTIL_MS)?,
            },
            Some(AttributeValue::S(state)) if state == PROCESSED => RecordState::Processed {
                outcome: match item.get(OUTCOME) {
                    Some(AttributeValue::B(bytes)) => StoredOutcome::new(bytes.as_ref()),
                    None => StoredOutcome::empty(),
                    Some(_) => return Err(corrupt("`outcome` is not binary".to_owned())),
                },
            },
            _ => {
                return Err(corrupt(
                    "`state` is neither in_progress nor processed".to_owned(),
                ));
            }
        };
        Ok(StoredRecord {
            fingerprint,
            owner,
            fencing_token: number_of(FENCING_TOKEN)?,
            state,
            expires_at_ms: number_of(EXPIRES_AT_MS)?,
        })
    }

    /// One conditional put of a new lease with `fencing_token`; `Err(Some(item))` or
    /// `Err(None)` (item not returned) when the condition failed.
    async fn put_lease(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        fencing_token: u64,
        now_ms: u64,
        held_until_ms: u64,
    ) -> Result<Result<Option<StoredRecord>, Option<StoredRecord>>, IdempotencyError> {
        let expires_at_ms = in_progress_expiry(held_until_ms);
        let mut item = self.key_item(key);
        item.extend([
            (FINGERPRINT.to_owned(), fingerprint_value(fingerprint)),
            (
                OWNER.to_owned(),
                AttributeValue::S(owner.as_str().to_owned()),
            ),
            (FENCING_TOKEN.to_owned(), number(fencing_token)),
            (STATE.to_owned(), AttributeValue::S(IN_PROGRESS.to_owned())),
            (HELD_UNTIL_MS.to_owned(), number(held_until_ms)),
            (EXPIRES_AT_MS.to_owned(), number(expires_at_ms)),
            (
                self.config.ttl_attribute.clone(),
                number(ttl_seconds(expires_at_ms)),
            ),
        ]);
        let sent = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression(format!(
                "{CLAIMABLE} AND (attribute_not_exists(#fencing_token) OR #fencing_token < :fencing_token)"
            ))
            .set_expression_attribute_names(Some(self.names(&[
                "pk",
                "expires_at_ms",
                "state",
                "held_until_ms",
                "fingerprint",
                "fencing_token",
            ])))
            .set_expression_attribute_values(Some(values([
                (":now", number(now_ms)),
                (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
                (":fingerprint", fingerprint_value(fingerprint)),
                (":fencing_token", number(fencing_token)),
            ])))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(output) => {
                let previous = output
                    .attributes()
                    .filter(|item| !item.is_empty())
                    .map(|item| self.parse(key, item))
                    .transpose()?;
                Ok(Ok(previous))
            }
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    let current = refused
                        .item()
                        .filter(|item| !item.is_empty())
                        .map(|item| self.parse(key, item))
                        .transpose()?;
                    Ok(Err(current))
                }
                _ => Err(IdempotencyError::backend(
                    STORE,
                    StoreOperation::Claim,
                    error,
                )),
            },
        }
    }

    /// Attribute values of a lease condition (`HELD_BY_LEASE`), plus `extra`.
    fn lease_values<const N: usize>(
        lease: &Lease,
        now_ms: u64,
        extra: [(&str, AttributeValue); N],
    ) -> HashMap<String, AttributeValue> {
        let mut all = values([
            (
                ":owner",
                AttributeValue::S(lease.owner().as_str().to_owned()),
            ),
            (":fencing_token", number(lease.fencing_token())),
            (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
            (":now", number(now_ms)),
        ]);
        all.extend(values(extra));
        all
    }
}

impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        // First try as if the key were new; a refusal tells what is there.
        let mut fencing_token = next_fencing_token(None, epoch_micros(SystemTime::now()));
        for _ in 0..CLAIM_ATTEMPTS {
            let now = SystemTime::now();
            let now_ms = epoch_millis(now);
            let held_until_ms = now_ms.saturating_add(duration_millis(lease));
            let written = self
                .put_lease(
                    key,
                    fingerprint,
                    owner,
                    fencing_token,
                    now_ms,
                    held_until_ms,
                )
                .await?;
            let current = match written {
                Ok(previous) => {
                    // The previous item, if it still counted, was a lease taken over.
                    let taken_over_from = previous
                        .filter(|record| record.is_live_at(now_ms))
                        .and_then(|record| record.owner);
                    return Ok(ClaimOutcome::Claimed {
                        lease: Lease::new(
                            key.clone(),
                            owner.clone(),
                            fencing_token,
                            from_epoch_millis(held_until_ms),
                        ),
                        taken_over_from,
                    });
                }
                Err(Some(current)) => Some(current),
                Err(None) => self.read(key, StoreOperation::Claim).await?,
            };
            match decide_claim(current.as_ref(), fingerprint, now) {
                ClaimDecision::Answer(outcome) => return Ok(outcome),
                ClaimDecision::Mismatch { stored } => {
                    return Err(IdempotencyError::PayloadMismatch {
                        key: key.clone(),
                        stored,
                        presented: *fingerprint,
                    });
                }
                // Claimable after all (it changed, or our token was not above the
                // previous one): try again with a token above what is there.
                ClaimDecision::Grant {
                    fencing_token: next,
                    ..
                } => fencing_token = next.max(fencing_token.saturating_add(1)),
            }
        }
        Err(IdempotencyError::backend(
            STORE,
            StoreOperation::Claim,
            Problem(format!(
                "the item of key `{key}` kept changing; gave up after {CLAIM_ATTEMPTS} attempts"
            )),
        ))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        let now_ms = epoch_millis(SystemTime::now());
        let held_until_ms = now_ms.saturating_add(duration_millis(extend));
        let expires_at_ms = in_progress_expiry(held_until_ms);
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression(
                "SET #held_until_ms = :held_until_ms, #expires_at_ms = :expires_at_ms, #ttl = :ttl",
            )
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
                "ttl",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [
                    (":held_until_ms", number(held_until_ms)),
                    (":expires_at_ms", number(expires_at_ms)),
                    (":ttl", number(ttl_seconds(expires_at_ms))),
                ],
            )))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Lease::new(
                lease.key().clone(),
                lease.owner().clone(),
                lease.fencing_token(),
                from_epoch_millis(held_until_ms),
            )),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(lost(lease))
            }
            Err(error) => Err(IdempotencyError::backend(
                STORE,
                StoreOperation::Heartbeat,
                error,
            )),
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        let now_ms = epoch_millis(SystemTime::now());
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression(
                "SET #state = :processed, #outcome = :outcome, #held_until_ms = :now, \
                 #expires_at_ms = :expires_at_ms, #ttl = :ttl",
            )
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
                "outcome",
                "ttl",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [
                    (":processed", AttributeValue::S(PROCESSED.to_owned())),
                    (
                        ":outcome",
                        AttributeValue::B(Blob::new(outcome.into_bytes())),
                    ),
                    (":expires_at_ms", number(expires_at_ms)),
                    (":ttl", number(ttl_seconds(expires_at_ms))),
                ],
            )))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let refused = match sent {
            Ok(_) => return Ok(()),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => refused
                    .item()
                    .filter(|item| !item.is_empty())
                    .map(|item| self.parse(lease.key(), item))
                    .transpose()?,
                _ => {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Complete,
                        error,
                    ));
                }
            },
        };
        let current = match refused {
            Some(current) => Some(current),
            None => self.read(lease.key(), StoreOperation::Complete).await?,
        };
        // A retried complete whose first attempt went through is a success.
        match check_lease(current.as_ref(), lease, now_ms) {
            LeaseCheck::CompletedByIt => Ok(()),
            LeaseCheck::Held | LeaseCheck::Lost => Err(lost(lease)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        // The item stays, ownerless and expired, so the next claim raises its token.
        let now_ms = epoch_millis(SystemTime::now());
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression("SET #held_until_ms = :released REMOVE #owner")
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [(":released", number(RELEASED_HELD_UNTIL_MS))],
            )))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(lost(lease))
            }
            Err(error) => Err(IdempotencyError::backend(
                STORE,
                StoreOperation::Release,
                error,
            )),
        }
    }
}

type BoxedSdkError = super::BoxError;

/// A problem DynamoDB did not report as an error: a table of the wrong shape, or an item
/// that kept changing.
#[derive(Debug)]
struct Problem(String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Problem {}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn fingerprint_value(fingerprint: &Fingerprint) -> AttributeValue {
    AttributeValue::B(Blob::new(fingerprint.as_bytes().as_slice()))
}

fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    pairs
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Epoch seconds for DynamoDB TTL, rounded up so TTL never deletes an item early.
fn ttl_seconds(expires_at_ms: u64) -> u64 {
    expires_at_ms.div_ceil(1_000)
}

fn lost(lease: &Lease) -> IdempotencyError {
    IdempotencyError::LeaseLost {
        key: lease.key().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_rounded_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(1_000), 1);
        assert_eq!(ttl_seconds(1_001), 2);
    }
}
