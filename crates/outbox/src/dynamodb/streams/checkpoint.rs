//! Checkpoints: for each stream shard, the sequence number of the last record the relay
//! settled, in the item `pk = "outbox-checkpoint"`, `sk = <shard id>`, written only by the
//! lease's holder.
//!
//! Sequence numbers are opaque strings (the emulator's have 30 digits): they are stored and
//! handed back to `GetShardIterator`, never compared or parsed.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};

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

/// The checkpoint items as read: those of the current stream by shard id, and the sort
/// keys of those left by another stream (the table's stream was disabled and enabled
/// again), which nothing reads any more.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub(super) current: HashMap<String, Checkpoint>,
    pub(super) other_streams: Vec<String>,
}

impl Loaded {
    /// The checkpoint items nothing needs: another stream's, and those of shards the
    /// stream no longer lists (DynamoDB trims a closed shard 24 hours after it closed:
    /// its child no longer waits for it, and it will never be read again).
    pub(super) fn stale(&self, listed: &HashSet<&str>) -> Vec<String> {
        let mut stale = self.other_streams.clone();
        stale.extend(
            self.current
                .keys()
                .filter(|shard| !listed.contains(shard.as_str()))
                .cloned(),
        );
        stale
    }
}

/// The checkpoints, strongly consistent (see [`Loaded`]).
pub(super) async fn load(
    store: &DynamoDbOutboxStore,
    stream_arn: &str,
) -> Result<Loaded, OutboxError> {
    const OPERATION: &str = "reading the stream checkpoints";
    let config = store.config();
    let mut checkpoints = HashMap::new();
    let mut other_streams = Vec::new();
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
            .map_err(|error| storage(OPERATION, error))?;
        for item in output.items() {
            let Some(shard_id) = string_of(item, &config.sort_key) else {
                continue;
            };
            if string_of(item, STREAM_ARN) != Some(stream_arn) {
                other_streams.push(shard_id.to_owned());
                continue;
            }
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
            return Ok(Loaded {
                current: checkpoints,
                other_streams,
            });
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
        .map_err(|error| storage(OPERATION, error))?;
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
            _ => Err(storage(OPERATION, error)),
        },
    }
}

/// Deletes the checkpoint items of `shard_ids` (see [`Loaded::stale`]), up to 99 per
/// transaction, each with a check of `lease`; answers how many were deleted.
///
/// # Errors
/// [`OutboxError::LeaseLost`] when `lease` is stale; [`OutboxError::Storage`].
pub(super) async fn prune(
    store: &DynamoDbOutboxStore,
    lease: &RelayLease,
    shard_ids: &[String],
) -> Result<u64, OutboxError> {
    const OPERATION: &str = "deleting stale stream checkpoints";
    let config = store.config();
    let mut deleted = 0;
    for chunk in shard_ids.chunks(99) {
        let mut actions = vec![store.lease_check(lease)?];
        for shard_id in chunk {
            let delete = Delete::builder()
                .table_name(&config.table)
                .set_key(Some(
                    config.key(CHECKPOINT_PARTITION.to_owned(), shard_id.clone()),
                ))
                .build()
                .map_err(|error| storage(OPERATION, error))?;
            actions.push(TransactWriteItem::builder().delete(delete).build());
        }
        let sent = store
            .client()
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await;
        if let Err(error) = sent {
            return Err(match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .first()
                        .is_some_and(|reason| reason.code() == Some(CONDITIONAL_CHECK_FAILED)) =>
                {
                    store.lease_lost()
                }
                _ => storage(OPERATION, error),
            });
        }
        deleted += u64::try_from(chunk.len()).unwrap_or(u64::MAX);
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_checkpoints_are_another_streams_and_those_of_unlisted_shards() {
        let mut loaded = Loaded::default();
        loaded
            .current
            .insert("shard-open".into(), Checkpoint::default());
        loaded
            .current
            .insert("shard-trimmed".into(), Checkpoint::default());
        loaded.other_streams.push("shard-of-old-stream".into());
        let listed: HashSet<&str> = ["shard-open", "shard-new"].into_iter().collect();
        let mut stale = loaded.stale(&listed);
        stale.sort();
        assert_eq!(stale, ["shard-of-old-stream", "shard-trimmed"]);
    }
}
