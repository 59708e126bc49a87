//! [`backfill_digests`]: the consistency entries and digests of the items a table held
//! before its store kept them, added once, while the store is being written.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use dovetail_consistency::Entry;
use dovetail_consistency::dynamodb::DynamoDbDigests;

use super::StoreError;
use super::dynamodb::{ServiceTable, VERSION, backend, number_of, string_of};

/// Which items of a table are a set's: those whose partition key starts with `prefix`
/// (such as `policy#`, the rest being the key) and whose sort key is `sort_key` (such as
/// `policy`), with a whole `version` attribute.
#[derive(Debug, Clone, Copy)]
pub struct SetItems<'a> {
    /// The partition key's prefix; the rest of it is the entry's key.
    pub prefix: &'a str,
    /// The sort key of every item of the set.
    pub sort_key: &'a str,
}

/// Adds the entry and digest of each item of `items` that has no entry (written by a
/// build that predates the digests), once per table: a marker item
/// (`consistency#<set>#backfill`/`done`) says it was done, and the next call reads only
/// that. Safe while the store is written and from several processes at once: each item is
/// added in a transaction of its own, conditional on the item being at the version
/// scanned and on it having no entry yet
/// ([`DynamoDbDigests::backfill`](dovetail_consistency::dynamodb::DynamoDbDigests::backfill));
/// an item a write reached first is left to that write. Entries added here have no change
/// time: a difference on one is never taken for a write in flight.
///
/// Answers how many entries it added.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB fails; run it again (it starts over, and what
/// it added stays).
pub async fn backfill_digests(
    table: &ServiceTable,
    digests: &DynamoDbDigests,
    items: SetItems<'_>,
) -> Result<u64, StoreError> {
    let config = table.outbox().config();
    let (pk, sk) = (config.partition_key.clone(), config.sort_key.clone());
    let marker = table.key(format!("consistency#{}#backfill", digests.set()), "done");
    let operation = format!("backfilling the consistency digests of {}", digests.set());
    let done = table
        .client()
        .get_item()
        .table_name(table.name())
        .set_key(Some(marker.clone()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|error| backend(&operation, error))?;
    if done.item().is_some() {
        return Ok(0);
    }
    let mut added = 0;
    let mut start = None;
    loop {
        let page = table
            .client()
            .scan()
            .table_name(table.name())
            .consistent_read(true)
            .filter_expression("#sk = :sk AND begins_with(#pk, :prefix)")
            .projection_expression("#pk, #sk, #version")
            .expression_attribute_names("#pk", &pk)
            .expression_attribute_names("#sk", &sk)
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":sk", AttributeValue::S(items.sort_key.to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S(items.prefix.to_owned()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|error| backend(&operation, error))?;
        for item in page.items() {
            let (Some(partition), Some(version)) = (string_of(item, &pk), number_of(item, VERSION))
            else {
                continue;
            };
            let Some(key) = partition.strip_prefix(items.prefix) else {
                continue;
            };
            let unchanged = ConditionCheck::builder()
                .table_name(table.name())
                .set_key(Some(table.key(partition, items.sort_key)))
                .condition_expression("#version = :version")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":version", AttributeValue::N(version.to_string()))
                .build()
                .map_err(|error| backend(&operation, error))?;
            let actions = digests
                .backfill(
                    &Entry::live(key, version),
                    TransactWriteItem::builder()
                        .condition_check(unchanged)
                        .build(),
                )
                .map_err(|error| backend(&operation, error))?;
            let sent = table
                .client()
                .transact_write_items()
                .set_transact_items(Some(actions.to_vec()))
                .send()
                .await;
            match sent {
                Ok(_) => added += 1,
                // The item has an entry already, or a write changed it: that write's.
                Err(error)
                    if matches!(
                        error.as_service_error(),
                        Some(TransactWriteItemsError::TransactionCanceledException(_))
                    ) => {}
                Err(error) => return Err(backend(&operation, error)),
            }
        }
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    table
        .client()
        .put_item()
        .table_name(table.name())
        .set_item(Some(marker))
        .send()
        .await
        .map_err(|error| backend(&operation, error))?;
    Ok(added)
}
