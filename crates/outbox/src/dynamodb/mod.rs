//! The outbox on DynamoDB (feature `dynamodb`): the [`DynamoDbUnitOfWork`] that commits a
//! service's writes and its events in one `TransactWriteItems`, and the
//! [`DynamoDbOutboxStore`] a relay reads them from.
//!
//! One table per service holds its business items, its aggregates' version items and its
//! outbox items (string keys, `pk` and `sk` by default):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | aggregate version | `aggregate#<type>#<id>` | `version` | `version` (its last sequence) |
//! | outbox record | `outbox#<shard>` | `<type>#<id>#<sequence, 20 digits>`, and for a republished snapshot `#r<event id, 32 hex digits>` after it | `envelope` (JSON), `event_id`, `committed_at` (ms), `state` (`pending`/`published`), `attempts`, `retry_at` (ms or NULL), `parked`, `last_error`, TTL `expires_at` (s, once published) |
//! | relay lease | `outbox-lease` | lease name | `owner`, `fencing_token`, `held_until` (ms) |
//!
//! An aggregate's records share a shard (a stable hash of the aggregate), so one strongly
//! consistent `Query` per shard sees them all. Published records are marked and given a
//! TTL; DynamoDB deletes them later, and the store ignores them meanwhile. Never delete
//! version items: an aggregate that started again at 1 would look to its consumers like a
//! replay of events they already handled.
//!
//! # Example
//! ```no_run
//! use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
//! use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
//! use dovetail_outbox::ExpectedVersion;
//! use dovetail_outbox::dynamodb::{DynamoDbOutbox, DynamoDbOutboxConfig};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct PolicyIssued { policy_id: String }
//! impl Event for PolicyIssued {
//!     const TYPE: &'static str = "policy.issued";
//!     const VERSION: u32 = 1;
//! }
//!
//! # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let config = DynamoDbOutboxConfig::new("policy-service", Source::parse("policy-service")?);
//! let outbox = DynamoDbOutbox::new(client, config);
//! outbox.create_table_if_missing().await?;
//!
//! let policy = Put::builder()
//!     .table_name("policy-service")
//!     .item("pk", AttributeValue::S("policy#pol-1".into()))
//!     .item("sk", AttributeValue::S("policy".into()))
//!     .condition_expression("attribute_not_exists(pk)")
//!     .build()?;
//! let committed = outbox
//!     .unit_of_work()
//!     .write(TransactWriteItem::builder().put(policy).build())
//!     .append(
//!         AggregateRef::parse("policy", "pol-1")?,
//!         ExpectedVersion::New,
//!         &PolicyIssued { policy_id: "pol-1".into() },
//!         EventMetadata::default(),
//!     )?
//!     .commit()
//!     .await?;
//! assert_eq!(committed.version(&AggregateRef::parse("policy", "pol-1")?), Some(1));
//! # Ok(())
//! # }
//! ```

mod budget;
mod store;
pub mod streams;
mod table;
mod unit_of_work;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_events::envelope::{AggregateRef, Source};
use tokio::sync::Notify;

pub use store::DynamoDbOutboxStore;
pub use streams::{StreamsRelay, StreamsRelayConfig, StreamsRelayReport};
pub use table::SecondaryIndex;
pub use unit_of_work::DynamoDbUnitOfWork;

use crate::OutboxError;

// Attribute names of the outbox's items, besides the configurable keys and TTL attribute.
const VERSION: &str = "version";
const ENVELOPE: &str = "envelope";
const EVENT_ID: &str = "event_id";
const COMMITTED_AT: &str = "committed_at";
const STATE: &str = "state";
const ATTEMPTS: &str = "attempts";
const RETRY_AT: &str = "retry_at";
const PARKED: &str = "parked";
const LAST_ERROR: &str = "last_error";
const OWNER: &str = "owner";
const FENCING_TOKEN: &str = "fencing_token";
const HELD_UNTIL: &str = "held_until";

const PENDING: &str = "pending";
const PUBLISHED: &str = "published";

/// The partition key of the relay leases.
const LEASE_PARTITION: &str = "outbox-lease";
/// The sort key of an aggregate's version item.
const VERSION_SORT_KEY: &str = "version";

/// Where a service's outbox lives and how it is laid out.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use dovetail_events::envelope::Source;
/// use dovetail_outbox::dynamodb::DynamoDbOutboxConfig;
///
/// let mut config = DynamoDbOutboxConfig::new("claims", Source::parse("claim-service")?);
/// config.shards = 8;
/// config.retain_published = Duration::from_secs(3600);
/// assert_eq!(config.partition_key, "pk");
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DynamoDbOutboxConfig {
    /// The service's table.
    pub table: String,
    /// The service whose events these are: the `source` of every envelope.
    pub source: Source,
    /// How many partitions the outbox records are spread over (default 4; 0 counts as
    /// 1). More shards spread a busy outbox's writes; the relay queries each one. Raise
    /// it freely, never lower it while records are pending: records in a shard beyond
    /// the new count would no longer be seen.
    pub shards: u16,
    /// How long published records stay before DynamoDB's TTL deletes them (default one
    /// day). The store ignores them meanwhile.
    pub retain_published: Duration,
    /// The table's partition key, a string attribute (default `pk`).
    pub partition_key: String,
    /// The table's sort key, a string attribute (default `sk`).
    pub sort_key: String,
    /// The table's TTL attribute, epoch seconds (default `expires_at`).
    pub ttl_attribute: String,
    /// The service's own global secondary indexes on the table (default none):
    /// [`DynamoDbOutbox::create_table_if_missing`] creates them with the table and adds
    /// those an existing table lacks.
    pub secondary_indexes: Vec<SecondaryIndex>,
}

impl DynamoDbOutboxConfig {
    /// The outbox of `source` in `table`, with the defaults.
    pub fn new(table: impl Into<String>, source: Source) -> Self {
        Self {
            table: table.into(),
            source,
            shards: 4,
            retain_published: Duration::from_secs(24 * 3600),
            partition_key: "pk".to_owned(),
            sort_key: "sk".to_owned(),
            ttl_attribute: "expires_at".to_owned(),
            secondary_indexes: Vec::new(),
        }
    }

    /// This config with the service's global secondary index `index` on the table.
    #[must_use]
    pub fn with_secondary_index(mut self, index: SecondaryIndex) -> Self {
        self.secondary_indexes.push(index);
        self
    }

    /// How many shards there are (at least one).
    fn shard_count(&self) -> u16 {
        self.shards.max(1)
    }

    /// The shard of `aggregate`: a stable hash (FNV-1a) of its type and id, so every
    /// process puts an aggregate's records in the same partition.
    fn shard_of(&self, aggregate_type: &str, aggregate_id: &str) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in aggregate_type
            .bytes()
            .chain(std::iter::once(0))
            .chain(aggregate_id.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        u16::try_from(hash % u64::from(self.shard_count())).unwrap_or(0)
    }

    /// The key of an item.
    fn key(&self, pk: String, sk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (self.partition_key.clone(), AttributeValue::S(pk)),
            (self.sort_key.clone(), AttributeValue::S(sk)),
        ])
    }

    /// The key of `aggregate`'s version item.
    fn version_key(&self, aggregate: &AggregateRef) -> HashMap<String, AttributeValue> {
        self.key(
            format!(
                "aggregate#{}#{}",
                aggregate.aggregate_type.as_str(),
                aggregate.id.as_str()
            ),
            VERSION_SORT_KEY.to_owned(),
        )
    }
}

/// The partition key of shard `shard`'s outbox records.
fn shard_partition(shard: u16) -> String {
    format!("outbox#{shard}")
}

/// The sort key of an outbox record.
fn record_sort_key(aggregate_type: &str, aggregate_id: &str, sequence: u64) -> String {
    format!("{aggregate_type}#{aggregate_id}#{sequence:020}")
}

/// The sort key of a republished record (see
/// [`DynamoDbUnitOfWork::republish`]): the first record's at the same sequence, then
/// `#r` and the event id's 32 hex digits. It sorts after that first record and before the
/// aggregate's next sequence (`#` and digits sort before nothing longer), and
/// republishes at one sequence in the order of their (UUIDv7, time-ordered) ids.
fn republished_sort_key(
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event_id: dovetail_events::envelope::EventId,
) -> String {
    format!(
        "{}#r{}",
        record_sort_key(aggregate_type, aggregate_id, sequence),
        event_id.as_uuid().simple()
    )
}

/// The sort key of `envelope`'s record, `republished` or not.
fn envelope_sort_key(envelope: &dovetail_events::envelope::Envelope, republished: bool) -> String {
    let (aggregate_type, aggregate_id) = (
        envelope.aggregate_type().as_str(),
        envelope.aggregate_id().as_str(),
    );
    let sequence = envelope.sequence().get();
    if republished {
        republished_sort_key(aggregate_type, aggregate_id, sequence, envelope.id())
    } else {
        record_sort_key(aggregate_type, aggregate_id, sequence)
    }
}

/// A service's outbox on DynamoDB: begins [units of work](DynamoDbUnitOfWork), creates
/// the table, and tells a relay in the same process when one commits.
///
/// Make one per service and share it (cheap to clone; clones share the commit signal).
/// See the [module documentation](self) for the items and an example.
#[derive(Debug, Clone)]
pub struct DynamoDbOutbox {
    client: Client,
    config: Arc<DynamoDbOutboxConfig>,
    commits: Arc<Notify>,
}

impl DynamoDbOutbox {
    /// The outbox `config` describes, on `client`'s account.
    pub fn new(client: Client, config: DynamoDbOutboxConfig) -> Self {
        Self {
            client,
            config: Arc::new(config),
            commits: Arc::new(Notify::new()),
        }
    }

    /// Where the outbox is.
    pub fn config(&self) -> &DynamoDbOutboxConfig {
        &self.config
    }

    /// The signal every commit with events gives: a relay in the same process waits on it
    /// to publish at once instead of at its next poll (`RelayConfig::wake`). A commit
    /// wakes every task waiting then and leaves one permit for a task not waiting yet;
    /// commits by other processes do not signal: polling covers them.
    pub fn commits(&self) -> Arc<Notify> {
        Arc::clone(&self.commits)
    }

    /// Begins a unit of work: collect business writes and events, then commit them in
    /// one `TransactWriteItems`.
    pub fn unit_of_work(&self) -> DynamoDbUnitOfWork {
        DynamoDbUnitOfWork::new(
            self.client.clone(),
            Arc::clone(&self.config),
            Arc::clone(&self.commits),
        )
    }

    /// The relay's store on this outbox, with the lease named `lease` (one lease per
    /// relay group; relays sharing a name take turns).
    pub fn store(&self, lease: impl Into<String>) -> DynamoDbOutboxStore {
        DynamoDbOutboxStore::from_parts(self.client.clone(), Arc::clone(&self.config), lease.into())
    }

    /// Creates the table unless it exists (partition and sort keys as configured,
    /// on-demand billing, a stream of new images for the [`StreamsRelay`], the
    /// configured secondary indexes), waits until it is active, adds the secondary
    /// indexes an existing table lacks and waits until DynamoDB has built them (up to
    /// 15 minutes), and enables TTL on the TTL attribute. Safe to call on every start,
    /// from several processes at once.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] when DynamoDB refuses, the table exists with other keys,
    /// it does not become active within a minute, an index is not built in time, or its
    /// TTL is enabled on another attribute.
    pub async fn create_table_if_missing(&self) -> Result<(), OutboxError> {
        table::create_if_missing(&self.client, &self.config).await
    }
}

/// An SDK failure as a storage error naming what was being done, with the whole chain of
/// causes (the SDK's own error types stay out of the public API).
fn storage<E>(operation: &str, error: E) -> OutboxError
where
    E: std::error::Error + Send + Sync + 'static,
{
    OutboxError::storage(operation, error)
}

/// `time` as Unix milliseconds; before 1970 as 0.
fn epoch_ms(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Unix milliseconds as a time.
fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A whole number attribute; `None` when absent, NULL or not a whole number.
fn number_of(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().ok(),
        _ => None,
    }
}

fn string_of<'i>(item: &'i HashMap<String, AttributeValue>, name: &str) -> Option<&'i str> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(shards: u16) -> DynamoDbOutboxConfig {
        let mut config = DynamoDbOutboxConfig::new("t", Source::parse("svc").unwrap());
        config.shards = shards;
        config
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        let four = config(4);
        let shard = four.shard_of("policy", "pol-1");
        assert_eq!(shard, four.shard_of("policy", "pol-1"));
        assert!(shard < 4);
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| four.shard_of("policy", &format!("pol-{i}")))
            .collect();
        assert_eq!(spread.len(), 4);
        assert_eq!(config(0).shard_of("policy", "pol-1"), 0);
        // The type and id are separated, so `ab`/`c` and `a`/`bc` differ in general.
        assert_eq!(config(1).shard_of("a", "bc"), 0);
    }

    #[test]
    fn republished_records_sort_between_their_sequence_and_the_next() {
        let first = dovetail_events::envelope::EventId::generate();
        let later = dovetail_events::envelope::EventId::generate();
        let mut keys = vec![
            record_sort_key("policy", "p", 10),
            republished_sort_key("policy", "p", 9, later),
            record_sort_key("policy", "p", 9),
            republished_sort_key("policy", "p", 9, first),
        ];
        keys.sort();
        assert_eq!(
            keys,
            [
                record_sort_key("policy", "p", 9),
                republished_sort_key("policy", "p", 9, first),
                republished_sort_key("policy", "p", 9, later),
                record_sort_key("policy", "p", 10),
            ]
        );
    }

    #[test]
    fn sort_keys_order_sequences_numerically() {
        let nine = record_sort_key("policy", "p", 9);
        let ten = record_sort_key("policy", "p", 10);
        assert!(nine < ten);
        assert_eq!(ten, "policy#p#00000000000000000010");
    }

    #[test]
    fn storage_errors_carry_the_whole_chain() {
        let inner = std::io::Error::other("connection reset");
        let outer = std::io::Error::other(inner);
        let error = storage("fetch_ready", outer);
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        assert!(
            chain.starts_with("the outbox storage failed: fetch_ready: connection reset"),
            "{chain}"
        );
    }
}
