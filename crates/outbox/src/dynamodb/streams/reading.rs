//! Reading the stream: its shards in order, an iterator per shard from its checkpoint,
//! page after page, each settled and then checkpointed.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodbstreams::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{ShardIteratorType, StreamViewType};
use dovetail_events::publish::Publisher;
use tokio::time::Instant;

use super::{Checkpoint, Interrupted, Reading, StreamsRelay, Tally, checkpoint, shards};
use crate::OutboxError;
use crate::dynamodb::storage;
use crate::relay::Shutdown;
use crate::relay::lease::HeldLease;

/// How many pages of one shard a round reads before it turns to the next shard.
const PAGES_PER_SHARD: usize = 10;

/// How often a shard whose pages hold no outbox record gets its checkpoint moved.
const IDLE_CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

impl<P: Publisher> StreamsRelay<P> {
    /// Reads every readable shard once (up to a few pages each); whether anything was
    /// settled or checkpointed.
    pub(super) async fn read_round<F: Future>(
        &self,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
        reading: &mut Reading,
    ) -> Result<bool, Interrupted> {
        let stream_arn = match &reading.stream_arn {
            Some(arn) => arn.clone(),
            None => {
                let arn = self
                    .stream_arn()
                    .await
                    .map_err(|error| self.failed(tally, &error))?;
                reading.stream_arn = Some(arn.clone());
                arn
            }
        };
        let shards = shards::list(&self.streams, &stream_arn)
            .await
            .map_err(|error| self.failed(tally, &error))?;
        let loaded = checkpoint::load(&self.store, &stream_arn)
            .await
            .map_err(|error| self.failed(tally, &error))?;
        self.prune_checkpoints(&loaded, &shards, held, tally)
            .await?;
        let checkpoints = loaded.current;
        let mut progress = false;
        for shard in shards::readable(&shards, &checkpoints) {
            let checkpoint = checkpoints.get(&shard.id).cloned().unwrap_or_default();
            progress |= self
                .read_shard(
                    &stream_arn,
                    &shard.id,
                    checkpoint,
                    held,
                    shutdown,
                    tally,
                    reading,
                )
                .await?;
        }
        Ok(progress)
    }

    /// Deletes the checkpoints nothing needs any more (another stream's, and those of
    /// shards the stream no longer lists), so that they do not pile up. A failure is
    /// logged and counted; the next round tries again.
    pub(super) async fn prune_checkpoints(
        &self,
        loaded: &checkpoint::Loaded,
        shards: &[shards::ShardInfo],
        held: &HeldLease,
        tally: &mut Tally,
    ) -> Result<(), Interrupted> {
        let listed: HashSet<&str> = shards.iter().map(|shard| shard.id.as_str()).collect();
        let stale = loaded.stale(&listed);
        if stale.is_empty() {
            return Ok(());
        }
        match checkpoint::prune(&self.store, &held.lease, &stale).await {
            Ok(deleted) => {
                tally.counts.checkpoints_deleted += deleted;
                tracing::info!(outbox = %self.config.relay.name, deleted, "deleted the checkpoints of shards the stream no longer holds");
                Ok(())
            }
            Err(OutboxError::LeaseLost { .. }) => Err(Interrupted::Lost),
            Err(error) => {
                tally.meter.store_error();
                tracing::warn!(outbox = %self.config.relay.name, %error, "could not delete stale stream checkpoints");
                Ok(())
            }
        }
    }

    /// Reads up to `PAGES_PER_SHARD` pages of one shard, settles and checkpoints each.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn read_shard<F: Future>(
        &self,
        stream_arn: &str,
        shard_id: &str,
        mut checkpoint: Checkpoint,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
        reading: &mut Reading,
    ) -> Result<bool, Interrupted> {
        let mut progress = false;
        for _ in 0..PAGES_PER_SHARD {
            if shutdown.requested() {
                return Err(Interrupted::Stopped);
            }
            if !self.keeper().renew_if_due(held, &mut tally.meter).await {
                return Err(Interrupted::Lost);
            }
            let iterator = match reading.iterators.remove(shard_id) {
                Some(iterator) => iterator,
                None => self
                    .iterator(stream_arn, shard_id, &checkpoint)
                    .await
                    .map_err(|error| self.failed(tally, &error))?,
            };
            let page = match self.page(iterator).await {
                Ok(Some(page)) => page,
                // The iterator expired or points at trimmed records: take a new one.
                Ok(None) => continue,
                Err(error) => return Err(self.failed(tally, &error)),
            };
            let records = page.records();
            let mut outbox_records = false;
            if !records.is_empty() {
                tally.counts.pages += 1;
                outbox_records = self.settle_page(records, held, shutdown, tally).await?;
                if let Some(last) = records
                    .iter()
                    .rev()
                    .find_map(|record| record.dynamodb()?.sequence_number())
                {
                    checkpoint.sequence_number = Some(last.to_owned());
                }
            }
            let finished = page.next_shard_iterator().is_none();
            // Pages of other items only (the relay's own lease and checkpoint writes among
            // them) are checkpointed now and then, not each time: a checkpoint is a stream
            // record itself, and writing one per page would never let the stream go quiet.
            let due = reading
                .checkpointed_at
                .get(shard_id)
                .is_none_or(|at| at.elapsed() >= IDLE_CHECKPOINT_EVERY);
            if outbox_records || finished || (!records.is_empty() && due) {
                checkpoint.finished = finished;
                match checkpoint::save(&self.store, &held.lease, stream_arn, shard_id, &checkpoint)
                    .await
                {
                    Ok(()) => {
                        tally.counts.checkpoints += 1;
                        reading
                            .checkpointed_at
                            .insert(shard_id.to_owned(), Instant::now());
                    }
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
                progress |= outbox_records || finished;
            }
            let Some(next) = page.next_shard_iterator() else {
                tracing::debug!(shard = shard_id, "stream shard read to its end");
                break;
            };
            reading
                .iterators
                .insert(shard_id.to_owned(), next.to_owned());
            if records.is_empty() {
                break;
            }
        }
        Ok(progress)
    }

    /// The table's latest stream, which must carry new images.
    pub(super) async fn stream_arn(&self) -> Result<String, OutboxError> {
        const OPERATION: &str = "finding the outbox table's stream";
        let table = &self.store.config().table;
        let described = self
            .store
            .client()
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| storage(OPERATION, error))?;
        let description = described.table();
        let view = description
            .and_then(|table| table.stream_specification())
            .filter(|stream| stream.stream_enabled())
            .and_then(|stream| stream.stream_view_type())
            .map(|view| view.as_str().to_owned());
        let arn = description.and_then(|table| table.latest_stream_arn());
        match (arn, view.as_deref()) {
            (Some(arn), Some(view))
                if view == StreamViewType::NewImage.as_str()
                    || view == StreamViewType::NewAndOldImages.as_str() =>
            {
                Ok(arn.to_owned())
            }
            _ => Err(OutboxError::storage(
                OPERATION,
                format!(
                    "the table {table} has no stream with new images; enable a \
                 NEW_IMAGE (or NEW_AND_OLD_IMAGES) stream, as create_table_if_missing does"
                ),
            )),
        }
    }

    /// A shard iterator just after the checkpoint, or at the oldest record without one (or
    /// when the checkpoint's record was trimmed: the sweeper covers what was lost).
    pub(super) async fn iterator(
        &self,
        stream_arn: &str,
        shard_id: &str,
        checkpoint: &Checkpoint,
    ) -> Result<String, OutboxError> {
        const OPERATION: &str = "getting a stream shard iterator";
        let mut after = checkpoint.sequence_number.as_deref();
        loop {
            let kind = if after.is_some() {
                ShardIteratorType::AfterSequenceNumber
            } else {
                ShardIteratorType::TrimHorizon
            };
            let sent = self
                .streams
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(shard_id)
                .shard_iterator_type(kind)
                .set_sequence_number(after.map(str::to_owned))
                .send()
                .await;
            match sent {
                Ok(output) => {
                    return output.shard_iterator().map(str::to_owned).ok_or_else(|| {
                        OutboxError::storage(OPERATION, "the answer has no iterator")
                    });
                }
                Err(error)
                    if after.is_some()
                        && matches!(
                            error.as_service_error(),
                            Some(GetShardIteratorError::TrimmedDataAccessException(_))
                        ) =>
                {
                    tracing::warn!(
                        shard = shard_id,
                        "the checkpoint's stream record was trimmed; reading the shard from its oldest record (the sweeper publishes what the stream lost)"
                    );
                    after = None;
                }
                Err(error) => return Err(storage(OPERATION, error)),
            }
        }
    }

    /// One page of records; `None` when the iterator expired or points at trimmed
    /// records.
    pub(super) async fn page(
        &self,
        iterator: String,
    ) -> Result<Option<GetRecordsOutput>, OutboxError> {
        let sent = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(self.config.records_limit())
            .send()
            .await;
        match sent {
            Ok(page) => Ok(Some(page)),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(
                        GetRecordsError::ExpiredIteratorException(_)
                            | GetRecordsError::TrimmedDataAccessException(_)
                    )
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(storage("reading stream records", error)),
        }
    }
}
