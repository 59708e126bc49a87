//! [`DynamoDbDigests`] (feature `dynamodb`): the bucket digests and entries of one set of
//! items in a DynamoDB table, kept in each write's `TransactWriteItems`, and
//! [`DynamoDbView`], the [`View`] that reads them strongly consistently.
//!
//! # Items
//!
//! Beside a store's own items, in the same table (string keys, `pk` and `sk` by default),
//! for a set named `<set>` (such as `policies`):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | digest of a bucket | `consistency#<set>#digests#<group>` | the bucket, 4 digits | `count` (N), `sum` (N) |
//! | entry | `consistency#<set>#bucket#<bucket, 4 digits>` | the key | `version` (N), `deleted` (BOOL), `changed_at_ms` (N, on an owner's) |
//!
//! A write adds two actions to its transaction ([`DynamoDbDigests::record`]): an `Update`
//! of its bucket's digest item, `ADD count :dc, sum :ds` with the difference between the
//! entry's new and old state, and a `Put` of its entry item. Removing a key for good
//! ([`DynamoDbDigests::forget`]) is the digest's `Update` and a `Delete` of the entry.
//!
//! # Numbers
//!
//! A [`Digest`]'s sum is a wrapping `u64`. DynamoDB numbers hold 38 digits and `ADD` does
//! not wrap, so each difference is added as the signed `i64` with the same bits, and
//! the total read back is reduced modulo 2⁶⁴: the same value as
//! the wrapping sum, since `x mod 2⁶⁴` does not depend on how many times the sum went
//! round. A total of 10¹⁹ writes of one bucket would be needed to reach 38 digits.
//!
//! # Why entry items of their own, not a secondary index
//!
//! A sparse global secondary index keyed by bucket then key would save the second action
//! per write, but a GSI is eventually consistent, on both sides of a check. A replica
//! whose index lags looks behind, which the owner's change time sends to the next round.
//! An *owner* whose index lags, though, shows an older version with its older change time,
//! so a replica that is up to date looks ahead ([`Drift::ReplicaAhead`](crate::Drift)),
//! and that difference is not a write in flight as far as the check can tell: false
//! drift. Entry items are read with a strongly consistent `Query`, so an entry is exactly
//! what the last committed write left, and the digests and the entries always agree. They
//! cost one more write unit per write, and one more action of the 100 a transaction may
//! hold.
//!
//! # Hot items and conflicts
//!
//! Two transactions that update the same digest item at once conflict: DynamoDB cancels
//! one with `TransactionConflict`, and the store's unit of work tries it again (see
//! `dovetail_outbox::dynamodb::DynamoDbUnitOfWork::commit`). A bucket holds 1/4,096th of
//! the keys, so two writes meet on one only when they write keys of the same bucket at
//! the same moment. The digest items are spread over 16 partitions (`<group>` is the
//! bucket's top 4 bits), 256 buckets each, so a busy store's digest updates do not all
//! land on one partition; reading the full range's digest is 16 queries.
//!
//! # Tables made before the digests
//!
//! Items a store wrote before it kept digests have no entry and count in no digest. A
//! store backfills them once with [`DynamoDbDigests::backfill`] (the service kit's
//! `store::backfill_digests` scans a set's items and does so), each conditional on the
//! item being unchanged and on it having no entry yet; and each write reads the entry it
//! replaces with [`DynamoDbDigests::entry`], its entry `Put` conditional on that state, so
//! a write and a backfill of one item never both count it.

use std::collections::HashMap;
use std::future::Future;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use crate::{BUCKETS, BucketRange, Digest, Entry, View, ViewError, bucket};

const COUNT: &str = "count";
const SUM: &str = "sum";
const VERSION: &str = "version";
const DELETED: &str = "deleted";
const CHANGED_AT_MS: &str = "changed_at_ms";
const KEY: &str = "key";

/// How many bits of a bucket choose its digest item's partition: 16 partitions.
const GROUP_BITS: u32 = 4;
/// How many buckets share a digest partition.
const BUCKETS_PER_GROUP: u32 = BUCKETS >> GROUP_BITS;

/// The digests and entries of one set of items in a DynamoDB table: where they live and
/// the actions that keep them. See the [module documentation](self) for the items.
///
/// ```
/// use dovetail_consistency::Entry;
/// use dovetail_consistency::dynamodb::DynamoDbDigests;
///
/// let digests = DynamoDbDigests::new("policy-service", "policies");
/// // In the write's own transaction: policy pol-1 goes from version 1 to 2.
/// let new = Entry::live("pol-1", 2).changed_at(1_700_000_000_000);
/// let [digest, entry] = digests.record(Some(&Entry::live("pol-1", 1)), &new)?;
/// assert!(digest.update.is_some() && entry.put.is_some());
/// # Ok::<(), aws_sdk_dynamodb::error::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoDbDigests {
    table: String,
    set: String,
    partition_key: String,
    sort_key: String,
}

impl DynamoDbDigests {
    /// The digests of the set `set` (such as `policies`; a name of the store's own,
    /// unique in the table) in the table `table`, whose keys are the strings `pk` and
    /// `sk`.
    pub fn new(table: impl Into<String>, set: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            set: set.into(),
            partition_key: "pk".to_owned(),
            sort_key: "sk".to_owned(),
        }
    }

    /// The same, in a table whose key attributes are `partition_key` and `sort_key`.
    #[must_use]
    pub fn with_keys(self, partition_key: impl Into<String>, sort_key: impl Into<String>) -> Self {
        Self {
            partition_key: partition_key.into(),
            sort_key: sort_key.into(),
            ..self
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The set's name.
    pub fn set(&self) -> &str {
        &self.set
    }

    /// The two actions to add to the transaction of a write that took `new.key` from
    /// `old` (`None` for a new key) to `new`: the `Update` of its bucket's digest item
    /// (out with the old state, in with the new; tombstones count in neither) and the
    /// `Put` of its entry item, conditional on the entry being `old` still (absent for
    /// `None`). Read `old` with [`entry`](Self::entry) (not from the version the write
    /// expects: an item older than the digests has none). Add them only when the write
    /// changes the item.
    ///
    /// # Errors
    /// The SDK's, when a request cannot be built (a bug).
    pub fn record(
        &self,
        old: Option<&Entry>,
        new: &Entry,
    ) -> Result<[TransactWriteItem; 2], aws_sdk_dynamodb::error::BuildError> {
        let mut change = Digest::of_entry(new);
        if let Some(old) = old {
            change -= Digest::of_entry(old);
        }
        let index = bucket(&new.key);
        let update = self.digest_update(index, change)?;
        let mut item = self.entry_key(index, &new.key);
        item.extend([
            (KEY.to_owned(), AttributeValue::S(new.key.clone())),
            (
                VERSION.to_owned(),
                AttributeValue::N(new.version.to_string()),
            ),
            (DELETED.to_owned(), AttributeValue::Bool(new.deleted)),
        ]);
        if let Some(ms) = new.changed_at_ms {
            item.insert(CHANGED_AT_MS.to_owned(), AttributeValue::N(ms.to_string()));
        }
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        // The entry must still be the `old` the digest takes out: a backfill or another
        // writer in between cancels the transaction rather than skew the digest.
        let put = match old {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", &self.partition_key),
            Some(old) => put
                .condition_expression("#version = :old")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":old", AttributeValue::N(old.version.to_string())),
        };
        Ok([
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put.build()?).build(),
        ])
    }

    /// The actions that add `entry`, for an item written before its store kept digests,
    /// in one transaction with `unchanged` (the caller's `ConditionCheck` that the item
    /// is still at `entry.version`): the digest's `Update` and the entry's `Put`,
    /// conditional on the item having no entry yet. Run by a backfill while the store is
    /// written: a write that came first (and added the entry) or comes between (and
    /// changes the item) cancels it, and the write's own actions are right.
    ///
    /// # Errors
    /// The SDK's, when a request cannot be built (a bug).
    pub fn backfill(
        &self,
        entry: &Entry,
        unchanged: TransactWriteItem,
    ) -> Result<[TransactWriteItem; 3], aws_sdk_dynamodb::error::BuildError> {
        let [update, put] = self.record(None, entry)?;
        Ok([unchanged, update, put])
    }

    /// The two actions to add to the transaction of a write that removes `old.key` for
    /// good (no tombstone: a store purging one, or an item deleted): the `Update` of its
    /// bucket's digest item taking `old` out, and the `Delete` of its entry item.
    ///
    /// ```
    /// use dovetail_consistency::Entry;
    /// use dovetail_consistency::dynamodb::DynamoDbDigests;
    ///
    /// let digests = DynamoDbDigests::new("claim-service", "policy-replica");
    /// let [digest, entry] = digests.forget(&Entry::live("pol-1", 3))?;
    /// assert!(digest.update.is_some() && entry.delete.is_some());
    /// # Ok::<(), aws_sdk_dynamodb::error::BuildError>(())
    /// ```
    ///
    /// # Errors
    /// The SDK's, when a request cannot be built (a bug).
    pub fn forget(
        &self,
        old: &Entry,
    ) -> Result<[TransactWriteItem; 2], aws_sdk_dynamodb::error::BuildError> {
        let index = bucket(&old.key);
        let update = self.digest_update(index, Digest::EMPTY - Digest::of_entry(old))?;
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(self.entry_key(index, &old.key)))
            .build()?;
        Ok([
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().delete(delete).build(),
        ])
    }

    /// The `Update` adding `change` to bucket `index`'s digest item.
    fn digest_update(
        &self,
        index: u32,
        change: Digest,
    ) -> Result<Update, aws_sdk_dynamodb::error::BuildError> {
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(self.digest_key(index)))
            .update_expression("ADD #count :count, #sum :sum")
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#sum", SUM)
            .expression_attribute_values(":count", signed(change.count))
            .expression_attribute_values(":sum", signed(change.sum))
            .build()
    }

    /// The digest of `range`, read with strongly consistent queries of the digest items
    /// (one per partition of 256 buckets the range touches) and summed here.
    ///
    /// # Errors
    /// DynamoDB's, or a digest item that is not this module's (named in the message).
    pub async fn digest(&self, client: &Client, range: BucketRange) -> Result<Digest, ViewError> {
        let mut total = Digest::EMPTY;
        let (first, last) = (range.start(), range.end() - 1);
        for group in first / BUCKETS_PER_GROUP..=last / BUCKETS_PER_GROUP {
            let from = first.max(group * BUCKETS_PER_GROUP);
            let to = last.min((group + 1) * BUCKETS_PER_GROUP - 1);
            let items = self
                .query(
                    client,
                    digest_partition(&self.set, group),
                    Some((bucket_sort_key(from), bucket_sort_key(to))),
                )
                .await?;
            for item in items {
                total += digest_of_numbers(number_text(&item, COUNT), number_text(&item, SUM))
                    .map_err(|reason| {
                        ViewError::new(
                            "DynamoDB",
                            format!(
                                "the digest item of {} in {}: {reason}",
                                self.set, self.table
                            ),
                        )
                    })?;
            }
        }
        Ok(total)
    }

    /// The entries of `range` in (bucket, key) order, tombstones included, with their
    /// change times where the writes gave them: one strongly consistent query per bucket.
    ///
    /// # Errors
    /// DynamoDB's, or an entry item that is not this module's (named in the message).
    pub async fn entries(
        &self,
        client: &Client,
        range: BucketRange,
    ) -> Result<Vec<Entry>, ViewError> {
        let mut entries = Vec::new();
        for index in range.start()..range.end() {
            let items = self
                .query(client, entry_partition(&self.set, index), None)
                .await?;
            for item in items {
                entries.push(self.parse_entry(&item)?);
            }
        }
        Ok(entries)
    }

    /// The entry of `key`, read strongly consistently; `None` when it has none (a key
    /// never written, or written before the store kept its digests). A write that reads
    /// it to give [`record`](Self::record) the state it replaces stays right for items
    /// older than the digests: it adds them instead of taking out a version that was
    /// never in.
    ///
    /// # Errors
    /// DynamoDB's, or an entry item that is not this module's.
    pub async fn entry(&self, client: &Client, key: &str) -> Result<Option<Entry>, ViewError> {
        let read = client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.entry_key(bucket(key), key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| ViewError::new("DynamoDB", error))?;
        read.item().map(|item| self.parse_entry(item)).transpose()
    }

    fn parse_entry(&self, item: &HashMap<String, AttributeValue>) -> Result<Entry, ViewError> {
        let corrupt = |what: &str| {
            ViewError::new(
                "DynamoDB",
                format!(
                    "an entry item of {} in {} has {what}; it was not written by \
                     DynamoDbDigests::record (delete it, or fix it by hand)",
                    self.set, self.table
                ),
            )
        };
        let key = match item.get(KEY) {
            Some(AttributeValue::S(key)) => key.clone(),
            _ => return Err(corrupt("no `key` string")),
        };
        let version = number_text(item, VERSION)
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| corrupt("no whole `version`"))?;
        let deleted = matches!(item.get(DELETED), Some(AttributeValue::Bool(true)));
        let entry = Entry {
            deleted,
            ..Entry::live(key, version)
        };
        Ok(
            match number_text(item, CHANGED_AT_MS).and_then(|text| text.parse::<u64>().ok()) {
                Some(ms) => entry.changed_at(ms),
                None => entry,
            },
        )
    }

    /// Every item of partition `pk`, with a sort key between `between` (inclusive) when
    /// given, strongly consistent, in sort key order.
    async fn query(
        &self,
        client: &Client,
        pk: String,
        between: Option<(String, String)>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, ViewError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut query = client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#pk", &self.partition_key)
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start.take());
            query = match &between {
                Some((from, to)) => query
                    .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                    .expression_attribute_names("#sk", &self.sort_key)
                    .expression_attribute_values(":from", AttributeValue::S(from.clone()))
                    .expression_attribute_values(":to", AttributeValue::S(to.clone())),
                None => query.key_condition_expression("#pk = :pk"),
            };
            let page = query
                .send()
                .await
                .map_err(|error| ViewError::new("DynamoDB", error))?;
            items.extend(page.items().iter().cloned());
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    fn digest_key(&self, index: u32) -> HashMap<String, AttributeValue> {
        self.key(
            digest_partition(&self.set, index / BUCKETS_PER_GROUP),
            bucket_sort_key(index),
        )
    }

    fn entry_key(&self, index: u32, key: &str) -> HashMap<String, AttributeValue> {
        self.key(entry_partition(&self.set, index), key.to_owned())
    }

    fn key(&self, pk: String, sk: String) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (self.partition_key.clone(), AttributeValue::S(pk)),
            (self.sort_key.clone(), AttributeValue::S(sk)),
        ])
    }
}

/// A [`View`] of one set of items kept by [`DynamoDbDigests`], read on `client`.
///
/// ```no_run
/// use dovetail_consistency::dynamodb::{DynamoDbDigests, DynamoDbView};
/// use dovetail_consistency::{BucketRange, View};
///
/// # async fn example(client: aws_sdk_dynamodb::Client) -> Result<(), dovetail_consistency::ViewError> {
/// let view = DynamoDbView::new(client, DynamoDbDigests::new("policy-service", "policies"));
/// let digest = view.digest(BucketRange::FULL).await?;
/// println!("{} policies", digest.count);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoDbView {
    client: Client,
    digests: DynamoDbDigests,
}

impl DynamoDbView {
    /// The view of `digests`' set, read on `client`.
    pub fn new(client: Client, digests: DynamoDbDigests) -> Self {
        Self { client, digests }
    }

    /// Where the view reads.
    pub fn digests(&self) -> &DynamoDbDigests {
        &self.digests
    }
}

impl View for DynamoDbView {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        self.digests.digest(&self.client, range)
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        self.digests.entries(&self.client, range)
    }
}

/// The digest a digest item's `count` and `sum` numbers (as DynamoDB gives them, decimal
/// text, `None` when absent) stand for: each reduced modulo 2⁶⁴, so a sum of signed
/// differences gives the wrapping sum a [`Digest`] keeps. The error names the number
/// that is not a whole number of at most 38 digits.
fn digest_of_numbers(count: Option<&str>, sum: Option<&str>) -> Result<Digest, String> {
    let wrap = |name: &str, text: Option<&str>| -> Result<u64, String> {
        let Some(text) = text else { return Ok(0) };
        let value: i128 = text
            .parse()
            .map_err(|_| format!("`{name}` is not a whole number: {text}"))?;
        // Reduced modulo 2^64: the low 64 bits of the two's complement, which
        // `rem_euclid` gives as a value in 0..2^64.
        let wrapped = value.rem_euclid(1_i128 << 64);
        Ok(u64::try_from(wrapped).unwrap_or_default())
    };
    Ok(Digest {
        count: wrap(COUNT, count)?,
        sum: wrap(SUM, sum)?,
    })
}

/// A `u64` as the DynamoDB number of the `i64` with the same bits.
fn signed(value: u64) -> AttributeValue {
    AttributeValue::N(value.cast_signed().to_string())
}

fn number_text<'i>(item: &'i HashMap<String, AttributeValue>, name: &str) -> Option<&'i str> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => Some(text),
        _ => None,
    }
}

fn digest_partition(set: &str, group: u32) -> String {
    format!("consistency#{set}#digests#{group}")
}

fn entry_partition(set: &str, index: u32) -> String {
    format!("consistency#{set}#bucket#{}", bucket_sort_key(index))
}

fn bucket_sort_key(index: u32) -> String {
    format!("{index:04}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn number(value: &AttributeValue) -> i128 {
        match value {
            AttributeValue::N(text) => text.parse().unwrap_or_default(),
            _ => 0,
        }
    }

    proptest! {
        /// What DynamoDB's `ADD` does with the signed differences, reduced when read,
        /// is the wrapping sum of the digests.
        #[test]
        fn signed_differences_reduced_mod_2_64_give_the_wrapping_sum(
            writes in prop::collection::vec(("[a-z]{1,4}", 1..20_u64, prop::option::of(1..20_u64)), 1..60)
        ) {
            let digests = DynamoDbDigests::new("t", "s");
            let (mut count, mut sum) = (0_i128, 0_i128);
            let mut expected = Digest::EMPTY;
            for (key, new, old) in writes {
                let old = old.map(|version| Entry::live(key.clone(), version));
                let new = Entry::live(key, new);
                let [digest, _] = digests.record(old.as_ref(), &new).unwrap_or_else(|_| unreachable!());
                let update = digest.update.unwrap_or_else(|| unreachable!());
                let values = update.expression_attribute_values.unwrap_or_default();
                count += number(&values[":count"]);
                sum += number(&values[":sum"]);
                expected.add_entry(&new);
                if let Some(old) = &old {
                    expected.remove_entry(old);
                }
            }
            let read = digest_of_numbers(Some(&count.to_string()), Some(&sum.to_string()));
            prop_assert_eq!(read, Ok(expected));
        }
    }

    #[test]
    fn digest_items_spread_over_sixteen_partitions_in_bucket_order() {
        let digests = DynamoDbDigests::new("t", "policies");
        let key = |index| digests.digest_key(index);
        assert_eq!(
            key(0)["pk"],
            AttributeValue::S("consistency#policies#digests#0".into())
        );
        assert_eq!(
            key(BUCKETS - 1)["pk"],
            AttributeValue::S("consistency#policies#digests#15".into())
        );
        assert_eq!(key(255)["pk"], key(0)["pk"]);
        assert_ne!(key(256)["pk"], key(255)["pk"]);
        assert_eq!(key(9)["sk"], AttributeValue::S("0009".into()));
    }

    #[test]
    fn unreadable_numbers_are_named() {
        assert_eq!(
            digest_of_numbers(Some("1.5"), None),
            Err("`count` is not a whole number: 1.5".to_owned())
        );
        assert_eq!(digest_of_numbers(None, None), Ok(Digest::EMPTY));
    }
}
