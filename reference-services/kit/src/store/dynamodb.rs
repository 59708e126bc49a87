//! The services' stores on DynamoDB (feature `aws`): [`open_table`] creates a service's
//! one table (the outbox's layout plus the service's secondary indexes), and
//! [`ServiceTable::write`] commits a change, its events and its request record in one
//! `TransactWriteItems`.
//!
//! A service's table holds, besides the outbox's items (see
//! [`dovetail_outbox::dynamodb`]), its own items under keys of its choosing (an
//! aggregate's snapshot through [`SnapshotItems`], written, read and listed the same way
//! by every service) and the records of `Idempotency-Key`s and of processed events:
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | key record | `request#<key>` (such as `request#POST /claims:<key>`) | `request` | those of `dovetail-events`' DynamoDB idempotency items: `fingerprint`, `state` (`processed`), `expires_at_ms`, `outcome` (the recorded response), TTL `expires_at` |
//!
//! A key record is the "processed" marker of
//! [`DynamoDbIdempotencyStore::processed_marker_put`], with the table's sort key added,
//! so one table's TTL removes expired records and outbox items alike.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use dovetail_consistency::Entry;
use dovetail_consistency::dynamodb::{DynamoDbDigests, DynamoDbView};
use dovetail_events::envelope::Source;
use dovetail_events::idempotency::{
    DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore, Fingerprint, IdempotencyKey, StoredOutcome,
};
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::dynamodb::{DynamoDbOutbox, DynamoDbOutboxConfig, DynamoDbUnitOfWork};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    IDEMPOTENCY_RETENTION, OpenedStore, RequestRecord, StoreError, TableView, WriteOutcome,
};
use crate::RecordedResponse;

/// The partition key prefix of request records.
const REQUEST_PREFIX: &str = "request#";
/// The sort key of request records.
const REQUEST_SORT_KEY: &str = "request";
/// The version attribute of versioned items.
pub const VERSION: &str = "version";

pub use dovetail_outbox::dynamodb::SecondaryIndex;

/// A service's table and outbox on DynamoDB: the outbox to begin units of work from and
/// the client for the service's own reads.
#[derive(Debug, Clone)]
pub struct ServiceTable {
    outbox: DynamoDbOutbox,
    client: Client,
    requests: DynamoDbIdempotencyStore,
}

/// Opens the service's table `table`, creating it when missing with the outbox's layout
/// (string keys `pk` and `sk`, on-demand billing, a stream of new images, TTL on
/// `expires_at`) and `indexes`; adds the indexes an existing table lacks and waits until
/// they are built. Safe to call on every start, from several processes at once.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB refuses, the table has other keys, or an index
/// is not built in time; the message names the table and what to do.
pub async fn open_table(
    client: &Client,
    table: &str,
    source: Source,
    indexes: &[SecondaryIndex],
) -> Result<ServiceTable, StoreError> {
    let mut config = DynamoDbOutboxConfig::new(table, source);
    config.secondary_indexes = indexes.to_vec();
    let outbox = DynamoDbOutbox::new(client.clone(), config);
    outbox.create_table_if_missing().await?;
    let config = outbox.config();
    let requests = DynamoDbIdempotencyStore::new(
        client.clone(),
        DynamoDbIdempotencyConfig::new(table)
            .with_partition_key(config.partition_key.clone())
            .with_key_prefix(REQUEST_PREFIX)
            .with_ttl_attribute(config.ttl_attribute.clone()),
    );
    Ok(ServiceTable {
        outbox,
        client: client.clone(),
        requests,
    })
}

impl ServiceTable {
    /// The service's store `wrap` makes of this table, opened with the relay's store on
    /// its outbox (leased as `<service>.relay`) and the signal of its commits.
    pub fn opened<S>(self, service: &str, wrap: impl FnOnce(Self) -> S) -> OpenedStore<S> {
        let relay_store = self.outbox.store(format!("{service}.relay"));
        let commits = self.outbox.commits();
        OpenedStore {
            store: wrap(self),
            relay_store: relay_store.into(),
            commits,
        }
    }

    /// The outbox on the table (for units of work, the relay's store and its wake-up).
    pub fn outbox(&self) -> &DynamoDbOutbox {
        &self.outbox
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.outbox.config().table
    }

    /// Where the consistency digests and entries of the set `set` (such as `policies`)
    /// live in this table: see [`DynamoDbDigests`]. Keep them in each write's unit of
    /// work ([`DynamoDbDigests::record`]), and read them through
    /// [`consistency_view`](Self::consistency_view).
    pub fn digests(&self, set: &str) -> DynamoDbDigests {
        let config = self.outbox.config();
        DynamoDbDigests::new(self.name(), set)
            .with_keys(config.partition_key.clone(), config.sort_key.clone())
    }

    /// The consistency check's view of `digests`' set, read on this table's client.
    pub fn consistency_view(&self, digests: DynamoDbDigests) -> TableView {
        TableView::DynamoDb(DynamoDbView::new(self.client.clone(), digests))
    }

    /// The key of the item `pk`/`sk` in the table's key attributes.
    pub fn key(
        &self,
        pk: impl Into<String>,
        sk: impl Into<String>,
    ) -> HashMap<String, AttributeValue> {
        let config = self.outbox.config();
        HashMap::from([
            (config.partition_key.clone(), AttributeValue::S(pk.into())),
            (config.sort_key.clone(), AttributeValue::S(sk.into())),
        ])
    }

    /// Commits, in one `TransactWriteItems`: `request`'s record when given (or, when its
    /// key was used before, nothing: the earlier answer), and what `apply` adds to the
    /// unit of work (the service's conditional writes and its events).
    ///
    /// The record is looked up first, so a retry is answered without a transaction; its
    /// marker in the transaction (conditional on the key being free) settles a race
    /// between two requests with the same key: the loser's transaction is cancelled, and
    /// it answers from the winner's record.
    ///
    /// # Errors
    /// - [`StoreError::KeyReused`] when the key was used with another request,
    ///   [`StoreError::KeyInProgress`] when a lease holds it;
    /// - [`StoreError::VersionConflict`] when an aggregate's version is not the expected
    ///   one (from the outbox's version items);
    /// - whatever `apply` returns;
    /// - [`StoreError::Backend`] when DynamoDB fails, or a business write's own condition
    ///   fails (the message names it; nothing was committed).
    pub async fn write(
        &self,
        request: Option<&RequestRecord>,
        apply: impl FnOnce(&mut DynamoDbUnitOfWork) -> Result<(), StoreError>,
    ) -> Result<WriteOutcome, StoreError> {
        let keyed = match request {
            Some(request) => Some((request, request_key(request)?)),
            None => None,
        };
        if let Some((request, key)) = &keyed
            && let Some(answer) = self.recorded(request, key).await?
        {
            return Ok(answer);
        }
        let mut unit = self.outbox.unit_of_work();
        if let Some((request, key)) = &keyed {
            unit.write(self.processed_marker(
                key,
                &request.fingerprint,
                &StoredOutcome::new(request.response.to_bytes()),
                IDEMPOTENCY_RETENTION,
            ));
        }
        apply(&mut unit)?;
        match unit.commit().await {
            Ok(_) => Ok(WriteOutcome::Written),
            Err(error) => {
                // Another request with the same key may have committed first; or this
                // very transaction did, and only its answer was lost.
                if let Some((request, key)) = &keyed
                    && let Some(answer) = self.recorded(request, key).await?
                {
                    return Ok(answer);
                }
                Err(error.into())
            }
        }
    }

    /// The "processed" marker of `key` as a `TransactWriteItem` for a transaction of
    /// the caller's: [`DynamoDbIdempotencyStore::processed_marker_put`] of
    /// `dovetail-events` (conditional on the key being free, or expired), with the
    /// table's sort key. Read what a refused marker met with
    /// [`key_record`](Self::key_record).
    pub fn processed_marker(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &StoredOutcome,
        retain: Duration,
    ) -> TransactWriteItem {
        let mut marker = self
            .requests
            .processed_marker_put(key, fingerprint, outcome, retain);
        if let Some(put) = marker.put.as_mut() {
            put.item.insert(
                self.outbox.config().sort_key.clone(),
                AttributeValue::S(REQUEST_SORT_KEY.to_owned()),
            );
        }
        marker
    }

    /// What the record of `key` says to an attempt with `fingerprint`, read strongly
    /// consistently.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the read fails or the record is unreadable.
    pub async fn key_record(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<KeyRecord, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(self.name())
            .set_key(Some(self.key(
                format!("{REQUEST_PREFIX}{}", key.as_str()),
                REQUEST_SORT_KEY,
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| backend(&format!("reading the record of key {key}"), error))?;
        let Some(item) = read.item() else {
            return Ok(KeyRecord::Free);
        };
        let record = RecordItem::parse(item).map_err(|reason| {
            StoreError::backend(format!("reading the record of key {key}"), reason)
        })?;
        let now = epoch_ms(SystemTime::now());
        Ok(if record.expires_at_ms <= now {
            KeyRecord::Free
        } else if &record.fingerprint != fingerprint {
            KeyRecord::OtherPayload
        } else if record.processed {
            KeyRecord::Processed(StoredOutcome::new(record.outcome.unwrap_or_default()))
        } else if record.held_until_ms > now {
            KeyRecord::InProgress
        } else {
            KeyRecord::Free
        })
    }

    /// Up to `limit` items of the secondary index `index` whose `partition_key` is
    /// `value`, in the order of `sort_key`, after the sort key value `after`; as many
    /// queries as DynamoDB's 1 MB pages need. Eventually consistent, like every
    /// secondary index.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the query fails.
    pub async fn query_index(
        &self,
        index: &IndexQuery<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut items = Vec::with_capacity(limit.min(100));
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        while items.len() < limit {
            let remaining = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
            let mut query = self
                .client
                .query()
                .table_name(self.name())
                .index_name(index.index)
                .expression_attribute_names("#partition", index.partition_key)
                .expression_attribute_values(
                    ":partition",
                    AttributeValue::S(index.value.to_owned()),
                )
                .limit(remaining)
                .set_exclusive_start_key(start.take());
            query = match after {
                // DynamoDB refuses an empty string in a key condition: no cursor, no
                // lower bound.
                Some(after) if !after.is_empty() => query
                    .key_condition_expression("#partition = :partition AND #sort > :after")
                    .expression_attribute_names("#sort", index.sort_key)
                    .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
                _ => query.key_condition_expression("#partition = :partition"),
            };
            let page = query.send().await.map_err(|error| {
                backend(
                    &format!("querying the index {} for {:?}", index.index, index.value),
                    error,
                )
            })?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    /// The `Put` of a service's versioned item (`item` holds its key, a `version`
    /// number attribute and the rest), conditional on what the write expects: absent for
    /// [`ExpectedVersion::New`], at that version for [`ExpectedVersion::Exactly`],
    /// present for [`ExpectedVersion::Any`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the request cannot be built (a bug).
    pub fn versioned_put(
        &self,
        item: HashMap<String, AttributeValue>,
        expected: ExpectedVersion,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.name())
            .set_item(Some(item))
            .expression_attribute_names("#pk", &self.outbox.config().partition_key);
        let put = match expected {
            ExpectedVersion::New => put.condition_expression("attribute_not_exists(#pk)"),
            ExpectedVersion::Exactly(version) => put
                .condition_expression("attribute_exists(#pk) AND #version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", AttributeValue::N(version.to_string())),
            ExpectedVersion::Any => put.condition_expression("attribute_exists(#pk)"),
        };
        let put = put
            .build()
            .map_err(|error| backend("building a versioned item", error))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The `version` of the item at `key`, read strongly consistently; `None` when there
    /// is no such item.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the read fails.
    pub async fn version_of(
        &self,
        key: HashMap<String, AttributeValue>,
    ) -> Result<Option<u64>, StoreError> {
        let read = self
            .client
            .get_item()
            .table_name(self.name())
            .set_key(Some(key))
            .consistent_read(true)
            .projection_expression("#version")
            .expression_attribute_names("#version", VERSION)
            .send()
            .await
            .map_err(|error| backend("reading an item's version", error))?;
        Ok(read.item().and_then(|item| number_of(item, VERSION)))
    }

    /// Explains a [`write`](Self::write) of a [`versioned_put`](Self::versioned_put)
    /// that failed with `error`: when the item (at `key`, named `id`) is not at the
    /// version `expected` says (its own condition failed while the outbox's version item
    /// agreed, which only a change by hand makes possible), a
    /// [`StoreError::VersionConflict`] with the version found, as the SQLite stores say;
    /// otherwise `error` itself. An item already at `written` (the version the write
    /// would have made) may be this write's own, committed with its answer lost: that
    /// stays `error`, for the caller to retry.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the item cannot be read.
    pub async fn explain_versioned(
        &self,
        error: StoreError,
        key: HashMap<String, AttributeValue>,
        id: &str,
        expected: ExpectedVersion,
        written: u64,
    ) -> StoreError {
        if !matches!(error, StoreError::Backend { .. }) {
            return error;
        }
        let current = match self.version_of(key).await {
            Ok(current) => current,
            Err(read) => return read,
        };
        let as_expected = match expected {
            ExpectedVersion::New => current.is_none(),
            ExpectedVersion::Exactly(version) => current == Some(version),
            ExpectedVersion::Any => current.is_some(),
        };
        if as_expected || current == Some(written) {
            error
        } else {
            StoreError::VersionConflict {
                id: id.to_owned(),
                current,
            }
        }
    }

    /// Whether the table answers: one cheap read.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .get_item()
            .table_name(self.name())
            .set_key(Some(self.key("ping", "ping")))
            .send()
            .await
            .map_err(|error| backend(&format!("reading the table {}", self.name()), error))?;
        Ok(())
    }

    /// What an earlier request with the same key decided, if one did: its answer when it
    /// was the same request, else the error a client gets.
    async fn recorded(
        &self,
        request: &RequestRecord,
        key: &IdempotencyKey,
    ) -> Result<Option<WriteOutcome>, StoreError> {
        match self.key_record(key, &request.fingerprint).await? {
            KeyRecord::Free => Ok(None),
            KeyRecord::Processed(outcome) => {
                let response =
                    RecordedResponse::from_bytes(outcome.as_bytes()).map_err(|error| {
                        StoreError::backend(
                            format!("reading the recorded response of {key}"),
                            error,
                        )
                    })?;
                Ok(Some(WriteOutcome::Replayed(response)))
            }
            KeyRecord::OtherPayload => Err(StoreError::KeyReused {
                key: request.client_key().to_owned(),
            }),
            KeyRecord::InProgress => Err(StoreError::KeyInProgress {
                key: request.client_key().to_owned(),
            }),
        }
    }
}

/// The attribute of a snapshot item that holds the snapshot's JSON.
pub const SNAPSHOT: &str = "snapshot";

/// One kind of aggregate kept in a service's table as versioned snapshot items, one item
/// per aggregate:
///
/// | `pk` | `sk` | attributes |
/// |---|---|---|
/// | `<kind>#<id>` | `<kind>` | the id (under the id attribute), `version` (N), `snapshot` (`S` as JSON), the string attributes its indexes list it by |
///
/// [`write`](Self::write) puts an item in the service's transaction, conditional on the
/// version the change expects; [`get`](Self::get) reads one strongly consistently;
/// [`list`](Self::list) lists them in id order through a [`SnapshotIndex`] (eventually
/// consistent, like every secondary index).
///
/// ```
/// use dovetail_service_kit::store::dynamodb::{SnapshotIndex, SnapshotItems};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PolicySnapshot { policy_id: String, customer_id: String, version: u64 }
///
/// const POLICIES: SnapshotItems<PolicySnapshot> = SnapshotItems::new("policy", "policy_id");
/// const BY_CUSTOMER: SnapshotIndex = SnapshotIndex { name: "by-customer", partition_key: "customer_id" };
///
/// let index = POLICIES.index(&BY_CUSTOMER);
/// assert_eq!((index.partition_key.as_str(), index.sort_key.as_str()), ("customer_id", "policy_id"));
/// ```
pub struct SnapshotItems<S> {
    kind: &'static str,
    id_attribute: &'static str,
    snapshot: PhantomData<fn() -> S>,
}

impl<S> std::fmt::Debug for SnapshotItems<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotItems")
            .field("kind", &self.kind)
            .field("id_attribute", &self.id_attribute)
            .finish()
    }
}

/// A secondary index of [`SnapshotItems`]: the items with its partition key attribute,
/// in id order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotIndex {
    /// The index's name.
    pub name: &'static str,
    /// Its partition key, a string attribute of the items.
    pub partition_key: &'static str,
}

/// An aggregate's item to write: see [`SnapshotItems::write`].
#[derive(Debug)]
pub struct SnapshotItem<'a, S> {
    /// The aggregate's id.
    pub id: &'a str,
    /// Its version after the change.
    pub version: u64,
    /// Its snapshot after the change.
    pub snapshot: &'a S,
    /// The string attributes its indexes list it by, besides its id (such as
    /// `("customer_id", "cust-1")`).
    pub attributes: &'a [(&'a str, &'a str)],
}

impl<S: Serialize + DeserializeOwned> SnapshotItems<S> {
    /// The items of aggregates of `kind` (such as `policy`), whose id is the attribute
    /// `id_attribute` (such as `policy_id`).
    pub const fn new(kind: &'static str, id_attribute: &'static str) -> Self {
        Self {
            kind,
            id_attribute,
            snapshot: PhantomData,
        }
    }

    /// The definition of `index` for [`open_table`]: its partition key, and the id as its
    /// sort key.
    pub fn index(&self, index: &SnapshotIndex) -> SecondaryIndex {
        SecondaryIndex {
            name: index.name.to_owned(),
            partition_key: index.partition_key.to_owned(),
            sort_key: self.id_attribute.to_owned(),
        }
    }

    /// Commits `item` with [`ServiceTable::write`]: its `Put` (conditional on `expected`,
    /// see [`ServiceTable::versioned_put`]), `request`'s record and what `events` adds
    /// (the change's events), in one transaction. A failure is explained by
    /// [`ServiceTable::explain_versioned`].
    ///
    /// # Errors
    /// Those of [`ServiceTable::write`]; [`StoreError::Backend`] when the snapshot does
    /// not serialize.
    pub async fn write(
        &self,
        table: &ServiceTable,
        item: SnapshotItem<'_, S>,
        expected: ExpectedVersion,
        request: Option<&RequestRecord>,
        events: impl FnOnce(&mut DynamoDbUnitOfWork) -> Result<(), StoreError>,
    ) -> Result<WriteOutcome, StoreError> {
        let put = self.put(table, &item, expected)?;
        let written = table
            .write(request, |unit| {
                unit.write(put);
                events(unit)
            })
            .await;
        match written {
            Ok(outcome) => Ok(outcome),
            Err(error) => Err(table
                .explain_versioned(
                    error,
                    self.key(table, item.id),
                    item.id,
                    expected,
                    item.version,
                )
                .await),
        }
    }

    /// What an owner's write of aggregate `id` at `version` adds to its transaction for
    /// the consistency set `digests`: the version to expect (for
    /// [`ExpectedVersion::Any`], the version read now, so that the digest takes out the
    /// one the write replaces; the item's condition on it keeps another write from
    /// coming between, which fails as a [`StoreError::VersionConflict`]), and the two
    /// actions of [`DynamoDbDigests::record`] moving the aggregate's bucket digest from its
    /// old entry (read strongly consistently: an item older than the digests has none, and
    /// is added) to its new one, stamped with the time of the write.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when a read fails.
    pub async fn digest_write(
        &self,
        table: &ServiceTable,
        digests: &DynamoDbDigests,
        id: &str,
        version: u64,
        expected: ExpectedVersion,
    ) -> Result<(ExpectedVersion, [TransactWriteItem; 2]), StoreError> {
        let expected = match expected {
            // No such item: the put's condition (present) refuses the write.
            ExpectedVersion::Any => table
                .version_of(self.key(table, id))
                .await?
                .map_or(ExpectedVersion::Any, ExpectedVersion::Exactly),
            other => other,
        };
        let old = digests.entry(table.client(), id).await.map_err(|error| {
            backend(
                &format!("reading the consistency entry of {} {id}", self.kind),
                error,
            )
        })?;
        let changed_at = epoch_ms(SystemTime::now());
        let actions = digests
            .record(
                old.as_ref(),
                &Entry::live(id, version).changed_at(changed_at),
            )
            .map_err(|error| backend("building a consistency digest", error))?;
        Ok((expected, actions))
    }

    /// The snapshot of aggregate `id`, read strongly consistently; `None` when there is
    /// no such item.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the read fails or the item is unreadable.
    pub async fn get(&self, table: &ServiceTable, id: &str) -> Result<Option<S>, StoreError> {
        Ok(self
            .get_versioned(table, id)
            .await?
            .map(|(_, snapshot)| snapshot))
    }

    /// The `version` attribute and the snapshot of aggregate `id`, read strongly
    /// consistently (as [`get`](Self::get)); `None` when there is no such item.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the read fails or the item is unreadable.
    pub async fn get_versioned(
        &self,
        table: &ServiceTable,
        id: &str,
    ) -> Result<Option<(u64, S)>, StoreError> {
        let read = table
            .client()
            .get_item()
            .table_name(table.name())
            .set_key(Some(self.key(table, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| backend(&format!("reading {} {id}", self.kind), error))?;
        let Some(item) = read.item() else {
            return Ok(None);
        };
        let version = number_of(item, VERSION).ok_or_else(|| {
            StoreError::backend(
                format!("reading {} {id}", self.kind),
                "its item has no whole `version` number",
            )
        })?;
        Ok(Some((version, self.parse(item)?)))
    }

    /// Up to `limit` snapshots whose attribute `index.partition_key` is `value`, in id
    /// order, after the id `after`: see [`ServiceTable::query_index`].
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the query fails or an item is unreadable.
    pub async fn list(
        &self,
        table: &ServiceTable,
        index: &SnapshotIndex,
        value: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<S>, StoreError> {
        let query = IndexQuery {
            index: index.name,
            partition_key: index.partition_key,
            value,
            sort_key: self.id_attribute,
        };
        let items = table.query_index(&query, after, limit).await?;
        items.iter().map(|item| self.parse(item)).collect()
    }

    fn key(&self, table: &ServiceTable, id: &str) -> HashMap<String, AttributeValue> {
        table.key(format!("{}#{id}", self.kind), self.kind)
    }

    /// The item's `Put`, conditional on the version the write expects.
    fn put(
        &self,
        table: &ServiceTable,
        item: &SnapshotItem<'_, S>,
        expected: ExpectedVersion,
    ) -> Result<TransactWriteItem, StoreError> {
        let json = serde_json::to_string(item.snapshot).map_err(|error| {
            StoreError::backend(format!("serializing {} {}", self.kind, item.id), error)
        })?;
        let mut attributes = self.key(table, item.id);
        attributes.extend(
            std::iter::once((self.id_attribute, item.id))
                .chain(item.attributes.iter().copied())
                .map(|(name, value)| (name.to_owned(), AttributeValue::S(value.to_owned()))),
        );
        attributes.extend([
            (
                VERSION.to_owned(),
                AttributeValue::N(item.version.to_string()),
            ),
            (SNAPSHOT.to_owned(), AttributeValue::S(json)),
        ]);
        table.versioned_put(attributes, expected)
    }

    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<S, StoreError> {
        let json = string_of(item, SNAPSHOT).ok_or_else(|| {
            StoreError::backend(
                format!(
                    "reading the {} item {:?}",
                    self.kind,
                    string_of(item, self.id_attribute).unwrap_or("?")
                ),
                "it has no `snapshot` string",
            )
        })?;
        serde_json::from_str(json)
            .map_err(|error| StoreError::backend(format!("reading a stored {}", self.kind), error))
    }
}

/// A query of a secondary index: see [`ServiceTable::query_index`].
#[derive(Debug, Clone, Copy)]
pub struct IndexQuery<'a> {
    /// The index's name.
    pub index: &'a str,
    /// Its partition key attribute.
    pub partition_key: &'a str,
    /// The partition key's value.
    pub value: &'a str,
    /// Its sort key attribute.
    pub sort_key: &'a str,
}

/// What a key's record says to a new attempt: see [`ServiceTable::key_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRecord {
    /// No live record: the key is free.
    Free,
    /// The key was processed with the same payload; this is the stored outcome.
    Processed(StoredOutcome),
    /// A live lease of the idempotent consumer holds the key.
    InProgress,
    /// The key's record has another payload's fingerprint.
    OtherPayload,
}

/// The attributes of a key's record that decide a new attempt.
struct RecordItem {
    fingerprint: Fingerprint,
    processed: bool,
    held_until_ms: u64,
    expires_at_ms: u64,
    outcome: Option<Vec<u8>>,
}

impl RecordItem {
    fn parse(item: &HashMap<String, AttributeValue>) -> Result<Self, String> {
        let number = |name: &str| match item.get(name) {
            Some(AttributeValue::N(text)) => text
                .parse::<u64>()
                .map_err(|_| format!("`{name}` is not a whole number: {text}")),
            _ => Err(format!("`{name}` is missing or not a number")),
        };
        let fingerprint = match item.get("fingerprint") {
            Some(AttributeValue::B(bytes)) => Fingerprint::from_slice(bytes.as_ref())
                .map_err(|_| "`fingerprint` is not 32 bytes".to_owned())?,
            _ => return Err("`fingerprint` is missing or not binary".to_owned()),
        };
        Ok(Self {
            fingerprint,
            processed: matches!(item.get("state"), Some(AttributeValue::S(state)) if state == "processed"),
            held_until_ms: number("held_until_ms").unwrap_or(0),
            expires_at_ms: number("expires_at_ms")?,
            outcome: match item.get("outcome") {
                Some(AttributeValue::B(bytes)) => Some(bytes.as_ref().to_vec()),
                _ => None,
            },
        })
    }
}

fn request_key(request: &RequestRecord) -> Result<IdempotencyKey, StoreError> {
    IdempotencyKey::new(&request.key)
        .map_err(|error| StoreError::backend("storing the request's Idempotency-Key", error))
}

/// A DynamoDB failure as [`StoreError::Backend`], naming what was being done.
pub fn backend<E>(operation: &str, error: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::backend(operation, error)
}

/// The string attribute `name` of `item`.
pub fn string_of<'i>(item: &'i HashMap<String, AttributeValue>, name: &str) -> Option<&'i str> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Some(text),
        _ => None,
    }
}

/// The whole-number attribute `name` of `item`.
pub fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().ok(),
        _ => None,
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    u64::try_from(
        time.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}
