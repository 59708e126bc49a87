//! [`DynamoDbIdempotencyStore`]: one item per key, conditional writes, DynamoDB TTL; and
//! the "processed" marker as a `TransactWriteItem` for the caller's own transaction.
//!
//! `table` creates the table and enables TTL; `items` reads and writes one key's item;
//! `claims` is the [`IdempotencyStore`] over them; `marker` the in-transaction marker.

mod claims;
mod items;
mod marker;
mod table;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{Fingerprint, IdempotencyError, Lease};

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

/// An [`IdempotencyStore`](super::IdempotencyStore) in a DynamoDB table, one item per key.
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
}

pub(super) type BoxedSdkError = super::BoxError;

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
