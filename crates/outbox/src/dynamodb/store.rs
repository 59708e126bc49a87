//! [`DynamoDbOutboxStore`]: the relay's side of a DynamoDB outbox: ready records from each
//! shard's partition, marks fenced by the lease in the same transaction, TTL cleanup.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};
use dovetail_events::envelope::{Envelope, EventId};

use super::{
    ATTEMPTS, COMMITTED_AT, DynamoDbOutboxConfig, ENVELOPE, FENCING_TOKEN, HELD_UNTIL,
    LEASE_PARTITION, OWNER, PARKED, PENDING, PUBLISHED, RETRY_AT, envelope_sort_key, epoch_ms,
    number, number_of, shard_partition, storage, string_of, time_of,
};
use crate::{
    Committed, Failure, OutboxBacklog, OutboxError, OutboxRecord, OutboxStore, Position, RelayLease,
};

/// How many record updates go in one transaction with the lease check (DynamoDB allows
/// 100 actions).
const UPDATES_PER_TRANSACTION: usize = 99;

/// How often a lease operation or a mark retries when items change under it.
const ATTEMPTS_PER_CALL: usize = 8;

const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";

/// The relay's [`OutboxStore`] on a DynamoDB outbox: the items a
/// [`DynamoDbUnitOfWork`](super::DynamoDbUnitOfWork) writes, read with one strongly
/// consistent `Query` per shard and settled with conditional writes.
///
/// - **Positions** are handles this store hands out, in the order it first sees records
///   (commit order, as far as one process can tell): DynamoDB has no commit counter, and
///   a record's key does not fit a `u64`. They are meaningful only to the store that
///   gave them out, which is what a relay needs: it marks what it fetched through the
///   same store. [`positions_of`](Self::positions_of) hands them out for records a
///   caller committed itself.
/// - **Order**: each aggregate's records come in sequence order (its records share a
///   shard), a republished record right after the first record at its sequence; across aggregates, by commit time, then event id. Clocks of different
///   writers may disagree: an aggregate's record is never placed before its predecessor
///   whatever the clocks say.
/// - **Marks** are `TransactWriteItems` of up to 99 updates plus a `ConditionCheck` of
///   the lease item (owner and fencing token): a stale lease changes nothing.
/// - **Published** records are marked `published` with a TTL of
///   [`retain_published`](super::DynamoDbOutboxConfig::retain_published); DynamoDB deletes
///   them later, and this store ignores them meanwhile.
/// - **Leases** live in the item `pk = "outbox-lease"`, `sk = <lease name>`, changed with
///   conditional writes; the fencing token only grows. Leases are compared with this
///   process's clock: keep the relays' clocks in sync (NTP).
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use dovetail_events::envelope::Source;
/// use dovetail_events::publish::MemoryPublisher;
/// use dovetail_outbox::dynamodb::{DynamoDbOutbox, DynamoDbOutboxConfig};
/// use dovetail_outbox::relay::{Relay, RelayConfig};
///
/// # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = DynamoDbOutbox::new(
///     client,
///     DynamoDbOutboxConfig::new("policy-service", Source::parse("policy-service")?),
/// );
/// let store = outbox.store("policy-service.relay");
/// let relay = Relay::new(store, MemoryPublisher::new(), RelayConfig::default());
/// relay.run(tokio::time::sleep(Duration::from_secs(1))).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbOutboxStore {
    client: Client,
    config: Arc<DynamoDbOutboxConfig>,
    lease: String,
    handles: Arc<Mutex<Handles>>,
}

/// Where a record is: its shard and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RecordKey {
    shard: u16,
    sort_key: String,
}

/// The positions handed out, both ways.
#[derive(Debug, Default)]
struct Handles {
    last: Position,
    by_key: HashMap<RecordKey, Position>,
    by_position: HashMap<Position, RecordKey>,
}

impl Handles {
    fn intern(&mut self, key: &RecordKey) -> Position {
        if let Some(&position) = self.by_key.get(key) {
            return position;
        }
        self.last += 1;
        self.by_key.insert(key.clone(), self.last);
        self.by_position.insert(self.last, key.clone());
        self.last
    }

    fn forget(&mut self, position: Position) {
        if let Some(key) = self.by_position.remove(&position) {
            self.by_key.remove(&key);
        }
    }
}

/// A pending record as read.
#[derive(Debug)]
struct Stored {
    key: RecordKey,
    envelope: Envelope,
    committed_at: u64,
    attempts: u32,
    retry_at: Option<u64>,
    parked: bool,
}

/// The lease item as read.
#[derive(Debug)]
struct LeaseItem {
    owner: Option<String>,
    fencing_token: u64,
    held_until: u64,
}

impl DynamoDbOutboxStore {
    /// The store of the outbox `config` describes, with the lease named `lease`.
    pub fn new(client: Client, config: DynamoDbOutboxConfig, lease: impl Into<String>) -> Self {
        Self::from_parts(client, Arc::new(config), lease.into())
    }

    pub(super) fn from_parts(
        client: Client,
        config: Arc<DynamoDbOutboxConfig>,
        lease: String,
    ) -> Self {
        Self {
            client,
            config,
            lease,
            handles: Arc::new(Mutex::new(Handles::default())),
        }
    }

    /// The positions of the records `committed` wrote, in the order of its envelopes:
    /// handles for [`mark_published`](OutboxStore::mark_published) and
    /// [`mark_failed`](OutboxStore::mark_failed) on this store, the same ones
    /// [`fetch_ready`](OutboxStore::fetch_ready) answers with. Reads nothing.
    pub fn positions_of(&self, committed: &Committed) -> Vec<Position> {
        let mut handles = self.handles();
        committed
            .envelopes()
            .iter()
            .map(|envelope| {
                handles.intern(&self.key_of(envelope, committed.is_republished(envelope.id())))
            })
            .collect()
    }

    /// The client, for the Streams relay's own items (checkpoints).
    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    /// The outbox's layout.
    pub(super) fn config(&self) -> &DynamoDbOutboxConfig {
        &self.config
    }

    /// The lease's name.
    pub(super) fn lease_name(&self) -> &str {
        &self.lease
    }

    /// The position of the record at `sort_key` in shard `shard`, for marks on this store.
    pub(super) fn position_at(&self, shard: u16, sort_key: &str) -> Position {
        self.handles().intern(&RecordKey {
            shard,
            sort_key: sort_key.to_owned(),
        })
    }

    /// Forgets positions handed out by [`position_at`](Self::position_at) that no mark
    /// forgot (records left pending).
    pub(super) fn forget(&self, positions: impl IntoIterator<Item = Position>) {
        let mut handles = self.handles();
        for position in positions {
            handles.forget(position);
        }
    }

    fn key_of(&self, envelope: &Envelope, republished: bool) -> RecordKey {
        RecordKey {
            shard: self.config.shard_of(
                envelope.aggregate_type().as_str(),
                envelope.aggregate_id().as_str(),
            ),
            sort_key: envelope_sort_key(envelope, republished),
        }
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn names(&self, used: &[&str]) -> HashMap<String, String> {
        used.iter()
            .map(|name| {
                let attribute = match *name {
                    "pk" => self.config.partition_key.clone(),
                    "sk" => self.config.sort_key.clone(),
                    "ttl" => self.config.ttl_attribute.clone(),
                    other => (*other).to_owned(),
                };
                (format!("#{name}"), attribute)
            })
            .collect()
    }

    fn record_key(&self, key: &RecordKey) -> HashMap<String, AttributeValue> {
        self.config
            .key(shard_partition(key.shard), key.sort_key.clone())
    }

    fn lease_key(&self) -> HashMap<String, AttributeValue> {
        self.config
            .key(LEASE_PARTITION.to_owned(), self.lease.clone())
    }

    pub(super) fn lease_lost(&self) -> OutboxError {
        OutboxError::LeaseLost {
            lease: self.lease.clone(),
        }
    }

    /// Every pending item of every shard (strongly consistent), `extra_filter` added to
    /// the `state = pending` filter.
    async fn pending_items(
        &self,
        extra_filter: Option<(&str, &str, AttributeValue)>,
        operation: &str,
    ) -> Result<Vec<(u16, HashMap<String, AttributeValue>)>, OutboxError> {
        let mut items = Vec::new();
        for shard in 0..self.config.shard_count() {
            let mut start = None;
            loop {
                let mut names = self.names(&["pk", "state"]);
                let mut filter = "#state = :pending".to_owned();
                let mut values = HashMap::from([
                    (":pk".to_owned(), AttributeValue::S(shard_partition(shard))),
                    (":pending".to_owned(), AttributeValue::S(PENDING.to_owned())),
                ]);
                if let Some((name, placeholder, value)) = &extra_filter {
                    filter.push_str(&format!(" AND #{name} = {placeholder}"));
                    names.insert(format!("#{name}"), (*name).to_owned());
                    values.insert((*placeholder).to_owned(), value.clone());
                }
                let output = self
                    .client
                    .query()
                    .table_name(&self.config.table)
                    .consistent_read(true)
                    .key_condition_expression("#pk = :pk")
                    .filter_expression(filter)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|error| storage(operation, error))?;
                items.extend(output.items().iter().cloned().map(|item| (shard, item)));
                start = output.last_evaluated_key().cloned();
                if start.as_ref().is_none_or(HashMap::is_empty) {
                    break;
                }
            }
        }
        Ok(items)
    }

    fn parse(
        &self,
        shard: u16,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<Stored, OutboxError> {
        let corrupt = |what: &str| {
            OutboxError::storage(
                "reading the outbox",
                format!(
                    "an item in shard {shard} has {what}; it was not written by \
                 this outbox (fix or delete it)"
                ),
            )
        };
        let sort_key = string_of(item, &self.config.sort_key)
            .ok_or_else(|| corrupt("no sort key"))?
            .to_owned();
        let json = string_of(item, ENVELOPE).ok_or_else(|| corrupt("no envelope"))?;
        let envelope: Envelope =
            serde_json::from_str(json).map_err(|_| corrupt("an envelope that does not parse"))?;
        Ok(Stored {
            key: RecordKey { shard, sort_key },
            envelope,
            committed_at: number_of(item, COMMITTED_AT)
                .ok_or_else(|| corrupt("no committed_at"))?,
            attempts: number_of(item, ATTEMPTS)
                .and_then(|attempts| u32::try_from(attempts).ok())
                .unwrap_or(0),
            retry_at: number_of(item, RETRY_AT),
            parked: matches!(item.get(PARKED), Some(AttributeValue::Bool(true))),
        })
    }

    async fn read_lease(&self) -> Result<Option<LeaseItem>, OutboxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(self.lease_key()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| storage("reading the relay lease", error))?;
        Ok(output.item().map(|item| LeaseItem {
            owner: string_of(item, OWNER).map(str::to_owned),
            fencing_token: number_of(item, FENCING_TOKEN).unwrap_or(0),
            held_until: number_of(item, HELD_UNTIL).unwrap_or(0),
        }))
    }

    /// The lease check that goes first in every mark's transaction.
    pub(super) fn lease_check(&self, lease: &RelayLease) -> Result<TransactWriteItem, OutboxError> {
        let check = ConditionCheck::builder()
            .table_name(&self.config.table)
            .set_key(Some(self.lease_key()))
            .condition_expression("#owner = :owner AND #fencing_token = :fencing_token")
            .set_expression_attribute_names(Some(self.names(&["owner", "fencing_token"])))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":fencing_token", number(lease.fencing_token))
            .build()
            .map_err(|error| storage("building the lease check", error))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Applies `update` (built for each record) to the records at `positions`, in
    /// transactions fenced by `lease`; records that are gone (or no longer match the
    /// update's condition) are skipped. Returns the positions updated.
    async fn fenced_updates(
        &self,
        lease: &RelayLease,
        targets: Vec<(Position, Update)>,
        operation: &str,
    ) -> Result<Vec<Position>, OutboxError> {
        if targets.is_empty() {
            // Nothing to change, but a stale lease is still refused.
            return match self.read_lease().await? {
                Some(current)
                    if current.owner.as_deref() == Some(lease.owner.as_str())
                        && current.fencing_token == lease.fencing_token =>
                {
                    Ok(Vec::new())
                }
                _ => Err(self.lease_lost()),
            };
        }
        let mut done = Vec::new();
        for chunk in targets.chunks(UPDATES_PER_TRANSACTION) {
            let mut chunk: Vec<(Position, Update)> = chunk.to_vec();
            for attempt in 0..=ATTEMPTS_PER_CALL {
                if chunk.is_empty() {
                    break;
                }
                if attempt == ATTEMPTS_PER_CALL {
                    return Err(OutboxError::storage(
                        operation,
                        format!(
                            "the records kept changing; gave up after \
                         {ATTEMPTS_PER_CALL} attempts (the relay retries)"
                        ),
                    ));
                }
                let mut actions = vec![self.lease_check(lease)?];
                actions.extend(chunk.iter().map(|(_, update)| {
                    TransactWriteItem::builder().update(update.clone()).build()
                }));
                let sent = self
                    .client
                    .transact_write_items()
                    .set_transact_items(Some(actions))
                    .send()
                    .await;
                let Err(error) = sent else {
                    done.extend(chunk.iter().map(|(position, _)| *position));
                    break;
                };
                let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    error.as_service_error()
                else {
                    return Err(storage(operation, error));
                };
                let failed = |index: usize| {
                    cancelled
                        .cancellation_reasons()
                        .get(index)
                        .is_some_and(|reason| reason.code() == Some(CONDITIONAL_CHECK_FAILED))
                };
                if failed(0) {
                    return Err(self.lease_lost());
                }
                let before = chunk.len();
                let mut index = 0;
                chunk.retain(|_| {
                    index += 1;
                    !failed(index)
                });
                if chunk.len() == before {
                    // Cancelled for another reason (a conflict with another transaction):
                    // try again as it is.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Ok(done)
    }

    /// [`fetch_ready`](OutboxStore::fetch_ready), each record with its place in commit
    /// order as Unix milliseconds: its `committed_at`, raised to its predecessor's place
    /// when the writers' clocks disagree. Places never decrease along the answer, so the
    /// records placed before a time are a prefix of it.
    pub(super) async fn fetch_ready_placed(
        &self,
        limit: usize,
    ) -> Result<Vec<(OutboxRecord, u64)>, OutboxError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let issued_before = self.handles().last;
        let items = self.pending_items(None, "fetching ready records").await?;
        let now = epoch_ms(SystemTime::now());
        let mut seen = HashSet::with_capacity(items.len());
        let mut aggregates: HashMap<(String, String), Vec<Stored>> = HashMap::new();
        for (shard, item) in &items {
            let stored = self.parse(*shard, item)?;
            seen.insert(stored.key.clone());
            let aggregate = (
                stored.envelope.aggregate_type().as_str().to_owned(),
                stored.envelope.aggregate_id().as_str().to_owned(),
            );
            aggregates.entry(aggregate).or_default().push(stored);
        }

        // Each aggregate's run of ready records, each placed no earlier than its
        // predecessor whatever the writers' clocks said.
        let mut ready: Vec<((u64, EventId), u64, Stored)> = Vec::new();
        for (_, mut records) in aggregates {
            // In sort key order: by sequence, and a republished record right after the
            // first record at its sequence (see `republished_sort_key`).
            records.sort_by(|a, b| a.key.sort_key.cmp(&b.key.sort_key));
            let mut place: Option<(u64, EventId)> = None;
            for stored in records {
                let waiting = stored.retry_at.is_some_and(|at| at > now);
                if stored.parked || waiting {
                    break;
                }
                let own = (stored.committed_at, stored.envelope.id());
                let placed = place.map_or(own, |earlier| earlier.max(own));
                place = Some(placed);
                ready.push((placed, stored.envelope.sequence().get(), stored));
            }
        }
        ready.sort_by(|(a_place, a_sequence, a), (b_place, b_sequence, b)| {
            a_place
                .cmp(b_place)
                .then_with(|| {
                    a.envelope
                        .aggregate_type()
                        .as_str()
                        .cmp(b.envelope.aggregate_type().as_str())
                })
                .then_with(|| {
                    a.envelope
                        .aggregate_id()
                        .as_str()
                        .cmp(b.envelope.aggregate_id().as_str())
                })
                .then_with(|| a_sequence.cmp(b_sequence))
                .then_with(|| a.key.sort_key.cmp(&b.key.sort_key))
        });
        ready.truncate(limit);

        let mut handles = self.handles();
        // Forget records no longer pending (published by another relay, or deleted),
        // except those handed out while the query ran.
        let gone: Vec<Position> = handles
            .by_position
            .iter()
            .filter(|(position, key)| **position <= issued_before && !seen.contains(*key))
            .map(|(position, _)| *position)
            .collect();
        for position in gone {
            handles.forget(position);
        }
        Ok(ready
            .into_iter()
            .map(|((placed, _), _, stored)| {
                let mut record = OutboxRecord::new(handles.intern(&stored.key), stored.envelope);
                record.attempts = stored.attempts;
                (record, placed)
            })
            .collect())
    }

    fn resolve(&self, positions: impl IntoIterator<Item = Position>) -> Vec<(Position, RecordKey)> {
        let handles = self.handles();
        positions
            .into_iter()
            .filter_map(|position| {
                handles
                    .by_position
                    .get(&position)
                    .map(|key| (position, key.clone()))
            })
            .collect()
    }
}

impl OutboxStore for DynamoDbOutboxStore {
    async fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<RelayLease>, OutboxError> {
        const OPERATION: &str = "acquiring the relay lease";
        for _ in 0..ATTEMPTS_PER_CALL {
            let now = epoch_ms(SystemTime::now());
            let held_until = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let current = self.read_lease().await?;
            let lease = |fencing_token| RelayLease {
                owner: owner.to_owned(),
                fencing_token,
                held_until: time_of(held_until),
            };
            let (fencing_token, written) = match &current {
                Some(current) if current.owner.as_deref() == Some(owner) => {
                    // Renewal: same token, while it is still ours.
                    let sent = self
                        .client
                        .update_item()
                        .table_name(&self.config.table)
                        .set_key(Some(self.lease_key()))
                        .update_expression("SET #held_until = :held_until")
                        .condition_expression("#owner = :owner AND #fencing_token = :fencing_token")
                        .set_expression_attribute_names(Some(self.names(&[
                            "owner",
                            "fencing_token",
                            "held_until",
                        ])))
                        .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
                        .expression_attribute_values(
                            ":fencing_token",
                            number(current.fencing_token),
                        )
                        .expression_attribute_values(":held_until", number(held_until))
                        .send()
                        .await;
                    let written = match sent {
                        Ok(_) => true,
                        Err(error)
                            if matches!(
                                error.as_service_error(),
                                Some(UpdateItemError::ConditionalCheckFailedException(_))
                            ) =>
                        {
                            false
                        }
                        Err(error) => return Err(storage(OPERATION, error)),
                    };
                    (current.fencing_token, written)
                }
                Some(current) if current.owner.is_some() && current.held_until > now => {
                    return Ok(None);
                }
                _ => {
                    // Free, lapsed or released: take it with the next token, unless it
                    // changed since it was read.
                    let (condition, previous) = match &current {
                        Some(current) => (
                            "#fencing_token = :previous_token AND #held_until = :previous_held_until",
                            Some(current),
                        ),
                        None => ("attribute_not_exists(#pk)", None),
                    };
                    let fencing_token = previous.map_or(1, |c| c.fencing_token + 1);
                    let mut item = self.lease_key();
                    item.extend([
                        (OWNER.to_owned(), AttributeValue::S(owner.to_owned())),
                        (FENCING_TOKEN.to_owned(), number(fencing_token)),
                        (HELD_UNTIL.to_owned(), number(held_until)),
                    ]);
                    let mut put = self
                        .client
                        .put_item()
                        .table_name(&self.config.table)
                        .set_item(Some(item))
                        .condition_expression(condition);
                    put = match previous {
                        Some(previous) => put
                            .set_expression_attribute_names(Some(
                                self.names(&["fencing_token", "held_until"]),
                            ))
                            .expression_attribute_values(
                                ":previous_token",
                                number(previous.fencing_token),
                            )
                            .expression_attribute_values(
                                ":previous_held_until",
                                number(previous.held_until),
                            ),
                        None => put.set_expression_attribute_names(Some(self.names(&["pk"]))),
                    };
                    let written = match put.send().await {
                        Ok(_) => true,
                        Err(error)
                            if matches!(
                                error.as_service_error(),
                                Some(PutItemError::ConditionalCheckFailedException(_))
                            ) =>
                        {
                            false
                        }
                        Err(error) => return Err(storage(OPERATION, error)),
                    };
                    (fencing_token, written)
                }
            };
            if written {
                return Ok(Some(lease(fencing_token)));
            }
        }
        Err(OutboxError::storage(
            OPERATION,
            format!(
                "the lease item kept changing; gave up after {ATTEMPTS_PER_CALL} \
             attempts (the relay retries)"
            ),
        ))
    }

    async fn release_lease(&self, lease: &RelayLease) -> Result<(), OutboxError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.lease_key()))
            .update_expression("SET #held_until = :zero REMOVE #owner")
            .condition_expression("#owner = :owner AND #fencing_token = :fencing_token")
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "held_until",
            ])))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":fencing_token", number(lease.fencing_token))
            .expression_attribute_values(":zero", number(0))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Already lost: not an error, and nothing to give up.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(storage("releasing the relay lease", error)),
        }
    }

    async fn fetch_ready(&self, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        Ok(self
            .fetch_ready_placed(limit)
            .await?
            .into_iter()
            .map(|(record, _)| record)
            .collect())
    }

    async fn mark_published(
        &self,
        lease: &RelayLease,
        positions: &[Position],
    ) -> Result<(), OutboxError> {
        let expires_at = epoch_ms(SystemTime::now())
            .saturating_add(
                u64::try_from(self.config.retain_published.as_millis()).unwrap_or(u64::MAX),
            )
            .div_ceil(1_000);
        let mut targets = Vec::new();
        for (position, key) in self.resolve(positions.iter().copied()) {
            let update = Update::builder()
                .table_name(&self.config.table)
                .set_key(Some(self.record_key(&key)))
                .update_expression("SET #state = :published, #ttl = :expires_at")
                .condition_expression("attribute_exists(#pk)")
                .set_expression_attribute_names(Some(self.names(&["pk", "state", "ttl"])))
                .expression_attribute_values(":published", AttributeValue::S(PUBLISHED.to_owned()))
                .expression_attribute_values(":expires_at", number(expires_at))
                .build()
                .map_err(|error| storage("building a published mark", error))?;
            targets.push((position, update));
        }
        let done = self
            .fenced_updates(lease, targets, "marking records published")
            .await?;
        let mut handles = self.handles();
        for position in done {
            handles.forget(position);
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        lease: &RelayLease,
        failures: &[Failure],
    ) -> Result<(), OutboxError> {
        let reasons: HashMap<Position, &Failure> = failures
            .iter()
            .map(|failure| (failure.position, failure))
            .collect();
        let mut targets = Vec::new();
        for (position, key) in self.resolve(failures.iter().map(|failure| failure.position)) {
            let failure = reasons[&position];
            let retry_at = failure
                .retry_at
                .map_or(AttributeValue::Null(true), |at| number(epoch_ms(at)));
            let update = Update::builder()
                .table_name(&self.config.table)
                .set_key(Some(self.record_key(&key)))
                .update_expression(
                    "SET #attempts = #attempts + :one, #retry_at = :retry_at, #parked = :parked, \
                     #last_error = :last_error",
                )
                .condition_expression("#state = :pending")
                .set_expression_attribute_names(Some(self.names(&[
                    "attempts",
                    "retry_at",
                    "parked",
                    "last_error",
                    "state",
                ])))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":retry_at", retry_at)
                .expression_attribute_values(
                    ":parked",
                    AttributeValue::Bool(failure.retry_at.is_none()),
                )
                .expression_attribute_values(
                    ":last_error",
                    AttributeValue::S(failure.reason.clone()),
                )
                .expression_attribute_values(":pending", AttributeValue::S(PENDING.to_owned()))
                .build()
                .map_err(|error| storage("building a failure mark", error))?;
            targets.push((position, update));
        }
        self.fenced_updates(lease, targets, "recording failed publishes")
            .await?;
        Ok(())
    }

    async fn unpark_all(&self) -> Result<u64, OutboxError> {
        const OPERATION: &str = "unparking records";
        let items = self
            .pending_items(
                Some((PARKED, ":parked", AttributeValue::Bool(true))),
                OPERATION,
            )
            .await?;
        let mut count = 0;
        for (shard, item) in items {
            let Some(sort_key) = string_of(&item, &self.config.sort_key) else {
                continue;
            };
            let key = RecordKey {
                shard,
                sort_key: sort_key.to_owned(),
            };
            let sent = self
                .client
                .update_item()
                .table_name(&self.config.table)
                .set_key(Some(self.record_key(&key)))
                .update_expression("SET #parked = :not_parked, #retry_at = :none")
                .condition_expression("#parked = :parked AND #state = :pending")
                .set_expression_attribute_names(Some(self.names(&["parked", "retry_at", "state"])))
                .expression_attribute_values(":not_parked", AttributeValue::Bool(false))
                .expression_attribute_values(":parked", AttributeValue::Bool(true))
                .expression_attribute_values(":none", AttributeValue::Null(true))
                .expression_attribute_values(":pending", AttributeValue::S(PENDING.to_owned()))
                .send()
                .await;
            match sent {
                Ok(_) => count += 1,
                // Unparked or published meanwhile.
                Err(error)
                    if matches!(
                        error.as_service_error(),
                        Some(UpdateItemError::ConditionalCheckFailedException(_))
                    ) => {}
                Err(error) => return Err(storage(OPERATION, error)),
            }
        }
        Ok(count)
    }

    async fn backlog(&self) -> Result<OutboxBacklog, OutboxError> {
        let items = self.pending_items(None, "measuring the backlog").await?;
        let now = epoch_ms(SystemTime::now());
        let mut backlog = OutboxBacklog::default();
        let mut oldest: Option<u64> = None;
        for (_, item) in &items {
            backlog.pending += 1;
            if matches!(item.get(PARKED), Some(AttributeValue::Bool(true))) {
                backlog.parked += 1;
            }
            if let Some(committed_at) = number_of(item, COMMITTED_AT) {
                oldest = Some(oldest.map_or(committed_at, |known| known.min(committed_at)));
            }
        }
        backlog.oldest_pending =
            oldest.map(|committed_at| Duration::from_millis(now.saturating_sub(committed_at)));
        Ok(backlog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_stable_and_forgotten() {
        let mut handles = Handles::default();
        let a = RecordKey {
            shard: 0,
            sort_key: "a".to_owned(),
        };
        let b = RecordKey {
            shard: 1,
            sort_key: "a".to_owned(),
        };
        assert_eq!(handles.intern(&a), 1);
        assert_eq!(handles.intern(&b), 2);
        assert_eq!(handles.intern(&a), 1);
        handles.forget(1);
        assert_eq!(
            handles.intern(&a),
            3,
            "a forgotten record gets a new handle"
        );
    }
}
