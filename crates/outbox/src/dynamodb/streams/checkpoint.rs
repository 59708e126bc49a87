//! Checkpoints: for each stream shard, the sequence number of the last record the relay
//! settled, in the item `pk = "outbox-checkpoint"`, `sk = <shard id>`, written only by the
//! lease's holder.
//!
//! Sequence numbers are opaque strings (the emulator's have 30 digits): they are stored and
//! handed back to `GetShardIterator`, never compared or parsed.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::Checkpoint;
use crate::dynamodb::{DynamoDbOutboxStore, epoch_ms, number, storage, string_of};
use crate::{OutboxError, RelayLease};

/// The partition key of the checkpoints.
pub(super) const CHECKPOINT_PARTITION: &str = "outbox-checkpoint";

const STREAM_ARN: &str = "stream_arn";
const SEQUENCE_NUMBER: &str = "sequence_number";
const FINISHED: &str = "finished";
const FENCING_TOKEN: &str = "fencing_token";
const UPDATED_AT: &str = "updated_at";

const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";

/// The checkpoints of `stream_arn`'s shards, by shard id (strongly consistent). Those of
/// another stream (the table's stream was disabled and enabled again) are ignored.
pub(super) async fn load(
    store: &DynamoDbOutboxStore,
    stream_arn: &str,
) -> Result<HashMap<String, Checkpoint>, OutboxError> {
    const OPERATION: &str = "reading the stream checkpoints";
    let config = store.config();
    let mut checkpoints = HashMap::new();
    let mut start = None;
    loop {
        let output = store
            .client()
            .query()
            .table_name(&config.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", &config.partition_key)
            .expression_attribute_values(":pk", AttributeValue::S(CHECKPOINT_PARTITION.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| storage(OPERATION, &error))?;
        for item in output.items() {
            if string_of(item, STREAM_ARN) != Some(stream_arn) {
                continue;
            }
            let Some(shard_id) = string_of(item, &config.sort_key) else {
                continue;
            };
            checkpoints.insert(
                shard_id.to_owned(),
                Checkpoint {
                    sequence_number: string_of(item, SEQUENCE_NUMBER).map(str::to_owned),
                    finished: matches!(item.get(FINISHED), Some(AttributeValue::Bool(true))),
                },
            );
        }
        start = output.last_evaluated_key().cloned();
        if start.as_ref().is_none_or(HashMap::is_empty) {
            return Ok(checkpoints);
        }
    }
}

/// Writes `checkpoint` for `shard_id`, in one transaction with a check of `lease`: a relay
/// that lost its lease moves no checkpoint.
///
/// # Errors
/// [`OutboxError::LeaseLost`] when `lease` is stale; [`OutboxError::Storage`].
pub(super) async fn save(
    store: &DynamoDbOutboxStore,
    lease: &RelayLease,
    stream_arn: &str,
    shard_id: &str,
    checkpoint: &Checkpoint,
) -> Result<(), OutboxError> {
    const OPERATION: &str = "writing a stream checkpoint";
    let config = store.config();
    let mut item = config.key(CHECKPOINT_PARTITION.to_owned(), shard_id.to_owned());
    item.extend([
        (
            STREAM_ARN.to_owned(),
            AttributeValue::S(stream_arn.to_owned()),
        ),
        (
            FINISHED.to_owned(),
            AttributeValue::Bool(checkpoint.finished),
        ),
        (FENCING_TOKEN.to_owned(), number(lease.fencing_token)),
        (UPDATED_AT.to_owned(), number(epoch_ms(SystemTime::now()))),
    ]);
    if let Some(sequence_number) = &checkpoint.sequence_number {
        item.insert(
            SEQUENCE_NUMBER.to_owned(),
            AttributeValue::S(sequence_number.clone()),
        );
    }
    let put = Put::builder()
        .table_name(&config.table)
        .set_item(Some(item))
        .build()
        .map_err(|error| storage(OPERATION, &error))?;
    let sent = store
        .client()
        .transact_write_items()
        .transact_items(store.lease_check(lease)?)
        .transact_items(TransactWriteItem::builder().put(put).build())
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(error) => match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                if cancelled
                    .cancellation_reasons()
                    .first()
                    .is_some_and(|reason| reason.code() == Some(CONDITIONAL_CHECK_FAILED)) =>
            {
                Err(store.lease_lost())
            }
            _ => Err(storage(OPERATION, &error)),
        },
    }
}
