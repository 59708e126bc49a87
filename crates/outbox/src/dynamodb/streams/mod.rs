//! The DynamoDB Streams relay (feature `dynamodb`): publishes a DynamoDB outbox's records
//! as the table's stream delivers them, with the polling relay's guarantees.
//!
//! A [`StreamsRelay`] loops until its shutdown future completes:
//!
//! 1. **Lease.** It takes the store's lease (the same fenced lease a
//!    [`Relay`](crate::relay::Relay) takes; give the store a lease name of its own, e.g.
//!    `outbox.store("policy-service.streams")`), or stands by while another relay holds
//!    it. Only the holder reads the stream; every write it makes is fenced by the lease.
//! 2. **Shards.** It reads the table's latest stream and its shards, a child shard only
//!    once its parent is read to its end, each from its checkpoint
//!    (`AFTER_SEQUENCE_NUMBER`), or from the oldest record (`TRIM_HORIZON`) without one.
//! 3. **Records.** Of each page of records it takes the `INSERT`s of outbox items
//!    (`pk = outbox#<shard>`) in state `pending`, and reads their current state and, for
//!    each aggregate's first record in the page, its predecessor's (one strongly
//!    consistent `BatchGetItem`). A record already published (by the sweeper, or by a
//!    relay that died before its checkpoint) is skipped. An aggregate whose predecessor
//!    is still pending (parked, or never delivered by the stream) is held back: its
//!    records are left pending, and the sweeper publishes them in order once the
//!    predecessor is published.
//! 4. **Publish.** The rest go to the publisher in stream order: an aggregate's records
//!    share a partition key, so a shard returns them in commit order. Accepted records are
//!    marked published through the store (the same marks as the polling relay's, fenced
//!    by the lease). A failed record is retried in place, with the backoff, its aggregate's
//!    later records waiting behind it; each failure is recorded with `mark_failed`. After
//!    `max_attempts` (or at once when not retriable) it is parked and its aggregate's later
//!    records in the page are held back; the shard moves on.
//! 5. **Checkpoint.** Only when every record of the page is settled does the relay write
//!    the shard's checkpoint (`pk = "outbox-checkpoint"`, `sk = <shard id>`, the last
//!    record's sequence number), in one transaction with a check of its lease.
//! 6. **Sweep.** Every `sweep_every` it publishes, like the polling relay, the ready
//!    records ([`OutboxStore::fetch_ready`]) committed more
//!    than `sweep_after` ago: records the stream no longer holds (it keeps 24 hours),
//!    records held back, records committed while the stream was unreadable.
//!
//! Delivery is at least once: a record published but not marked (the relay dies, loses its
//! lease, or the store fails between publish and mark) is published again by the next
//! relay, which starts from the checkpoint. Records marked published before the crash are
//! skipped, so the window is the marks not written, not the whole page. The sweeper's
//! window: a pending record the stream does not deliver goes out between `sweep_after`
//! and `sweep_after + sweep_every` after its commit.
//!
//! Sequence numbers and shard ids are opaque strings, compared only by equality (the AWS
//! emulator's sequence numbers have 30 digits and its shard id never changes).

mod checkpoint;
mod config;
mod records;
mod report;
mod shards;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodbstreams::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType, StreamViewType};
use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishError, PublishResult, Publisher};
use tokio::time::Instant;

pub use config::StreamsRelayConfig;
pub use report::StreamsRelayReport;

use self::records::{Candidate, Decoded};
use super::{
    ATTEMPTS, DynamoDbOutboxStore, PARKED, PENDING, STATE, epoch_ms, number_of, shard_partition,
    storage, string_of,
};
use crate::relay::lease::{self, HeldLease, Renewal};
use crate::relay::outcome::{self, Slot};
use crate::relay::report::Meter;
use crate::relay::{Shutdown, Waited};
use crate::{Failure, OutboxError, OutboxRecord, OutboxStore, Position};

/// How many pages of one shard a round reads before it turns to the next shard.
const PAGES_PER_SHARD: usize = 10;

/// How often a shard whose pages hold no outbox record gets its checkpoint moved.
const IDLE_CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

/// How many batches one sweep publishes at most.
const SWEEP_BATCHES: usize = 100;

/// How many keys one `BatchGetItem` asks for (DynamoDB's limit).
const KEYS_PER_BATCH_GET: usize = 100;

/// How often a `BatchGetItem` is retried for keys DynamoDB left unprocessed.
const BATCH_GET_ATTEMPTS: u32 = 8;

/// A shard's checkpoint: the last record settled, and whether the shard is read to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Checkpoint {
    sequence_number: Option<String>,
    finished: bool,
}

/// Publishes a DynamoDB outbox's records from the table's stream, one relay instance among
/// any number: the one holding the lease reads, the others stand by. See the
/// [module documentation](self) for how.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use dovetail_events::envelope::Source;
/// use dovetail_events::publish::MemoryPublisher;
/// use dovetail_outbox::dynamodb::{
///     DynamoDbOutbox, DynamoDbOutboxConfig, StreamsRelay, StreamsRelayConfig,
/// };
///
/// # async fn example(
/// #     dynamodb: aws_sdk_dynamodb::Client,
/// #     streams: aws_sdk_dynamodbstreams::Client,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = DynamoDbOutbox::new(
///     dynamodb,
///     DynamoDbOutboxConfig::new("policy-service", Source::parse("policy-service")?),
/// );
/// outbox.create_table_if_missing().await?; // enables the NEW_IMAGE stream
/// let mut config = StreamsRelayConfig::default();
/// config.relay.wake = Some(outbox.commits());
/// let relay = StreamsRelay::new(
///     streams,
///     outbox.store("policy-service.streams"),
///     MemoryPublisher::new(),
///     config,
/// );
/// let report = relay.run(tokio::time::sleep(Duration::from_secs(60))).await?;
/// println!("published {} events", report.published + report.swept);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct StreamsRelay<P> {
    streams: aws_sdk_dynamodbstreams::Client,
    store: DynamoDbOutboxStore,
    publisher: P,
    config: StreamsRelayConfig,
}

/// How a stretch of holding the lease ended.
enum Holding {
    /// Shutdown was requested; the lease is still ours, to release.
    Stopped,
    /// The lease was taken over or lapsed.
    Lost,
}

/// Why a round of work ended early.
enum Interrupted {
    /// Shutdown was requested.
    Stopped,
    /// The lease was taken over or lapsed.
    Lost,
    /// The store or the stream failed (logged and counted); try again after a pause.
    Failed,
}

/// The current state of an outbox item, read strongly consistently.
#[derive(Debug, Clone, Copy)]
struct ItemState {
    pending: bool,
    parked: bool,
    attempts: u32,
}

/// A stream record on its way to the broker.
struct Pending {
    position: Position,
    envelope: Envelope,
    attempts: u32,
    settled: bool,
}

/// Where the relay is in the stream while it holds the lease.
#[derive(Default)]
struct Reading {
    stream_arn: Option<String>,
    /// The next iterator of each shard, valid only while the checkpoint is where it
    /// points (dropped whenever a page is not settled).
    iterators: HashMap<String, String>,
    /// When each shard's checkpoint was last written by this relay.
    checkpointed_at: HashMap<String, Instant>,
}

/// Counts the relay's `Meter` does not keep.
#[derive(Debug, Default)]
struct Counts {
    swept: u64,
    already_published: u64,
    pages: u64,
    checkpoints: u64,
    checkpoints_deleted: u64,
    sweeps: u64,
}

/// The relay's running state: its meter and its own counts.
struct Tally {
    meter: Meter,
    counts: Counts,
}

impl<P: Publisher> StreamsRelay<P> {
    /// A relay that publishes the records of `store`'s outbox, read from its table's
    /// stream through `streams`, with `publisher`.
    pub fn new(
        streams: aws_sdk_dynamodbstreams::Client,
        store: DynamoDbOutboxStore,
        publisher: P,
        config: StreamsRelayConfig,
    ) -> Self {
        Self {
            streams,
            store,
            publisher,
            config,
        }
    }

    /// This instance's lease owner id.
    pub fn owner(&self) -> &str {
        &self.config.relay.owner
    }

    /// Publishes until `shutdown` completes, then releases the lease and returns what it
    /// did. A page in hand is left unsettled on shutdown: the next relay starts again from
    /// its checkpoint and skips what was marked published.
    ///
    /// Store and stream failures are logged, counted and retried after `poll_interval`;
    /// they do not end the relay.
    ///
    /// # Errors
    /// [`OutboxError::InvalidConfig`] when the configuration cannot work; the relay does
    /// not start.
    pub async fn run<F: Future>(self, shutdown: F) -> Result<StreamsRelayReport, OutboxError> {
        if let Some(reason) = self.config.problem() {
            return Err(OutboxError::InvalidConfig { reason });
        }
        let relay = &self.config.relay;
        let signal = pin!(shutdown);
        let mut shutdown = Shutdown::new(signal);
        let mut tally = Tally {
            meter: Meter::new(&relay.name),
            counts: Counts::default(),
        };
        let mut last_token = None;
        tracing::info!(outbox = %relay.name, owner = %relay.owner, lease = %self.store.lease_name(), "outbox streams relay started");
        while let Some(mut held) = self
            .take_lease(&mut shutdown, &mut tally, &mut last_token)
            .await
        {
            match self
                .publish_while_held(&mut held, &mut shutdown, &mut tally)
                .await
            {
                Holding::Stopped => {
                    self.release(&held, &mut tally).await;
                    break;
                }
                Holding::Lost => {
                    tally.meter.lease_lost();
                    tracing::warn!(outbox = %relay.name, owner = %relay.owner, fencing_token = held.lease.fencing_token, "the outbox lease was lost; standing by");
                }
            }
        }
        let base = tally.meter.report();
        let counts = tally.counts;
        let report = StreamsRelayReport {
            published: base.published.saturating_sub(counts.swept),
            swept: counts.swept,
            already_published: counts.already_published,
            failed_attempts: base.failed_attempts,
            parked: base.parked,
            held_back: base.held_back,
            pages: counts.pages,
            checkpoints: counts.checkpoints,
            checkpoints_deleted: counts.checkpoints_deleted,
            sweeps: counts.sweeps,
            lease_takeovers: base.lease_takeovers,
            leases_lost: base.leases_lost,
            store_errors: base.store_errors,
        };
        tracing::info!(outbox = %relay.name, owner = %relay.owner, ?report, "outbox streams relay stopped");
        Ok(report)
    }

    /// Takes the lease, standing by while another relay holds it; `None` on shutdown.
    async fn take_lease<F: Future>(
        &self,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
        last_token: &mut Option<u64>,
    ) -> Option<HeldLease> {
        let relay = &self.config.relay;
        loop {
            if shutdown.requested() {
                return None;
            }
            match lease::ask(&self.store, relay).await.into_held(relay) {
                Ok(Some(held)) => {
                    let token = held.lease.fencing_token;
                    if *last_token != Some(token) {
                        *last_token = Some(token);
                        tally.meter.lease_taken();
                        tracing::info!(outbox = %relay.name, owner = %relay.owner, fencing_token = token, "took the outbox streams lease");
                    }
                    return Some(held);
                }
                Ok(None) => {
                    tracing::trace!(outbox = %relay.name, owner = %relay.owner, "another relay holds the outbox streams lease; standing by");
                }
                Err(error) => {
                    tally.meter.store_error();
                    tracing::warn!(outbox = %relay.name, %error, "could not take the outbox streams lease; trying again");
                }
            }
            let next_try = Instant::now() + relay.poll_interval;
            if let Waited::Shutdown = shutdown.wait_until(next_try, None).await {
                return None;
            }
        }
    }

    /// Reads the stream and sweeps while the lease is ours.
    async fn publish_while_held<F: Future>(
        &self,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Holding {
        let mut reading = Reading::default();
        // A sweep at once: it catches up on what was committed while no relay ran.
        let mut next_sweep = Instant::now();
        let mut next_backlog = Instant::now();
        loop {
            if shutdown.requested() {
                return Holding::Stopped;
            }
            if Instant::now() >= held.renew_at && !self.renew(held, tally).await {
                return Holding::Lost;
            }
            if Instant::now() >= next_backlog {
                self.observe_backlog(tally).await;
                next_backlog = Instant::now() + self.config.backlog_every;
            }
            if Instant::now() >= next_sweep {
                match self.sweep(held, tally).await {
                    Ok(()) | Err(Interrupted::Failed) => {}
                    Err(Interrupted::Stopped) => return Holding::Stopped,
                    Err(Interrupted::Lost) => return Holding::Lost,
                }
                next_sweep = Instant::now() + self.config.sweep_every;
            }
            let progress = match self.read_round(held, shutdown, tally, &mut reading).await {
                Ok(progress) => progress,
                Err(Interrupted::Stopped) => return Holding::Stopped,
                Err(Interrupted::Lost) => return Holding::Lost,
                Err(Interrupted::Failed) => {
                    reading = Reading::default();
                    false
                }
            };
            if progress {
                continue;
            }
            let poll_at = (Instant::now() + self.config.relay.poll_interval).min(next_sweep);
            loop {
                let until = poll_at.min(held.renew_at);
                match shutdown
                    .wait_until(until, self.config.relay.wake.as_deref())
                    .await
                {
                    Waited::Shutdown => return Holding::Stopped,
                    Waited::Woken => break,
                    Waited::Deadline if Instant::now() >= poll_at => break,
                    Waited::Deadline => {
                        if !self.renew(held, tally).await {
                            return Holding::Lost;
                        }
                    }
                }
            }
        }
    }

    /// Sets the backlog gauges (with the `metrics` feature; a no-op without).
    async fn observe_backlog(&self, tally: &mut Tally) {
        if !cfg!(feature = "metrics") {
            return;
        }
        match self.store.backlog().await {
            Ok(backlog) => tally.meter.backlog(&backlog),
            Err(error) => {
                tally.meter.store_error();
                tracing::warn!(outbox = %self.config.relay.name, %error, "could not read the outbox backlog");
            }
        }
    }

    /// Reads every readable shard once (up to a few pages each); whether anything was
    /// settled or checkpointed.
    async fn read_round<F: Future>(
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
    async fn prune_checkpoints(
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
    async fn read_shard<F: Future>(
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
            if Instant::now() >= held.renew_at && !self.renew(held, tally).await {
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
    async fn stream_arn(&self) -> Result<String, OutboxError> {
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
    async fn iterator(
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
    async fn page(&self, iterator: String) -> Result<Option<GetRecordsOutput>, OutboxError> {
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

    /// Publishes a page's new outbox records and marks them, until each is published,
    /// parked, held back or found published already; whether the page had any.
    async fn settle_page<F: Future>(
        &self,
        records: &[Record],
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Result<bool, Interrupted> {
        let mut candidates = Vec::new();
        for record in records {
            match records::decode(record, self.store.config()) {
                Decoded::Candidate(candidate) => candidates.push(*candidate),
                Decoded::Other => {}
                Decoded::Corrupt(why) => {
                    tracing::error!(outbox = %self.config.relay.name, %why, "skipping a stream record the outbox cannot read");
                }
            }
        }
        if candidates.is_empty() {
            return Ok(false);
        }
        let current = self
            .current_states(&candidates)
            .await
            .map_err(|error| self.failed(tally, &error))?;
        let mut pending = self.sort_candidates(candidates, &current, tally);
        let result = self
            .publish_in_place(&mut pending, held, shutdown, tally)
            .await;
        // Marks forget published records' positions; these are the rest.
        self.store
            .forget(pending.iter().map(|record| record.position));
        result.map(|()| true)
    }

    /// Turns a page's candidates into records to publish: skips those published already,
    /// holds back aggregates whose predecessor is still pending or parked.
    fn sort_candidates(
        &self,
        candidates: Vec<Candidate>,
        current: &HashMap<(u16, String), ItemState>,
        tally: &mut Tally,
    ) -> Vec<Pending> {
        let mut first_seen: HashSet<(String, String)> = HashSet::new();
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut pending = Vec::new();
        let mut held_back = 0;
        for candidate in candidates {
            let (aggregate_type, aggregate_id) = candidate.aggregate();
            let aggregate = (aggregate_type.to_owned(), aggregate_id.to_owned());
            if first_seen.insert(aggregate.clone())
                && let Some(predecessor) = candidate.predecessor()
                && current
                    .get(&(candidate.shard, predecessor))
                    .is_some_and(|state| state.pending)
            {
                blocked.insert(aggregate.clone());
            }
            let own = current.get(&(candidate.shard, candidate.sort_key.clone()));
            let Some(state) = own.filter(|state| state.pending) else {
                // Published (and perhaps deleted by TTL) since it was committed.
                tally.counts.already_published += 1;
                continue;
            };
            if state.parked {
                blocked.insert(aggregate.clone());
            }
            if blocked.contains(&aggregate) {
                held_back += 1;
                continue;
            }
            pending.push(Pending {
                position: self.store.position_at(candidate.shard, &candidate.sort_key),
                envelope: candidate.envelope,
                attempts: state.attempts,
                settled: false,
            });
        }
        tally.meter.held_back(held_back);
        pending
    }

    /// Publishes `pending` in order, retrying failures in place with the backoff, until
    /// every record is settled.
    async fn publish_in_place<F: Future>(
        &self,
        pending: &mut [Pending],
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Result<(), Interrupted> {
        let relay = &self.config.relay;
        loop {
            let waiting: Vec<usize> = (0..pending.len())
                .filter(|&index| !pending[index].settled)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if shutdown.requested() {
                return Err(Interrupted::Stopped);
            }
            if Instant::now() >= held.renew_at && !self.renew(held, tally).await {
                return Err(Interrupted::Lost);
            }
            let envelopes: Vec<Envelope> = waiting
                .iter()
                .map(|&index| pending[index].envelope.clone())
                .collect();
            tally.meter.batch();
            let started = Instant::now();
            let results = self.publish_renewing(&envelopes, held, tally).await?;
            tally.meter.publish_time(started.elapsed());

            let now = SystemTime::now();
            let mut results = results.into_iter();
            let mut accepted = Vec::new();
            let mut failures = Vec::new();
            let mut parked = 0;
            let mut held_back = 0;
            let mut soonest: Option<Duration> = None;
            for &index in &waiting {
                let result = results.next().unwrap_or_else(|| {
                    Err(PublishError::Unavailable {
                        reason: "the publisher returned no result for this event".to_owned(),
                    })
                });
                if pending[index].settled {
                    continue; // held back behind a record parked just now
                }
                let error = match result {
                    Ok(()) => {
                        accepted.push(pending[index].position);
                        pending[index].settled = true;
                        continue;
                    }
                    // Waits behind its aggregate's failed record, in place.
                    Err(PublishError::EarlierEventFailed { .. }) => continue,
                    Err(error) => error,
                };
                let record = &mut pending[index];
                record.attempts = record.attempts.saturating_add(1);
                let attempts = record.attempts;
                if !error.is_retriable() || attempts >= relay.max_attempts {
                    let why = if error.is_retriable() {
                        format!("parked after {attempts} failed attempts")
                    } else {
                        "parked: not retriable".to_owned()
                    };
                    tracing::warn!(event_id = %record.envelope.id(), reason = %error, "outbox record parked; the stream moves on, its aggregate's later records wait");
                    failures.push(Failure {
                        position: record.position,
                        reason: format!("{error} ({why})"),
                        retry_at: None,
                    });
                    record.settled = true;
                    parked += 1;
                    let aggregate = (
                        record.envelope.aggregate_type().clone(),
                        record.envelope.aggregate_id().clone(),
                    );
                    for later in &mut pending[index + 1..] {
                        if !later.settled
                            && later.envelope.aggregate_type() == &aggregate.0
                            && later.envelope.aggregate_id() == &aggregate.1
                        {
                            later.settled = true;
                            held_back += 1;
                        }
                    }
                } else {
                    let delay = relay.backoff.delay(attempts);
                    soonest = Some(soonest.map_or(delay, |known| known.min(delay)));
                    tracing::debug!(event_id = %record.envelope.id(), reason = %error, ?delay, "outbox record failed; retrying in place");
                    failures.push(Failure {
                        position: record.position,
                        reason: error.to_string(),
                        retry_at: Some(now + delay),
                    });
                }
            }
            tally.meter.published(count(accepted.len()));
            tally.meter.held_back(held_back);
            if !accepted.is_empty() {
                match self.store.mark_published(&held.lease, &accepted).await {
                    Ok(()) => {}
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !failures.is_empty() {
                match self.store.mark_failed(&held.lease, &failures).await {
                    Ok(()) => tally.meter.failed(count(failures.len()), parked),
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if let Some(delay) = soonest {
                self.pause(delay, held, shutdown, tally).await?;
            }
        }
    }

    /// The current state of each candidate's item and of each aggregate's first
    /// candidate's predecessor, read strongly consistently; an item absent from the answer
    /// is gone (published, then deleted by TTL).
    async fn current_states(
        &self,
        candidates: &[Candidate],
    ) -> Result<HashMap<(u16, String), ItemState>, OutboxError> {
        const OPERATION: &str = "reading the state of streamed outbox records";
        let config = self.store.config();
        let mut keys: Vec<(u16, String)> = Vec::new();
        let mut wanted = HashSet::new();
        let mut first_seen = HashSet::new();
        for candidate in candidates {
            if first_seen.insert(candidate.aggregate())
                && let Some(predecessor) = candidate.predecessor()
                && wanted.insert((candidate.shard, predecessor.clone()))
            {
                keys.push((candidate.shard, predecessor));
            }
            if wanted.insert((candidate.shard, candidate.sort_key.clone())) {
                keys.push((candidate.shard, candidate.sort_key.clone()));
            }
        }
        let mut states = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_BATCH_GET) {
            let mut asked: Vec<_> = chunk
                .iter()
                .map(|(shard, sort_key)| config.key(shard_partition(*shard), sort_key.clone()))
                .collect();
            let mut attempt = 0;
            while !asked.is_empty() {
                attempt += 1;
                if attempt > BATCH_GET_ATTEMPTS {
                    return Err(OutboxError::storage(
                        OPERATION,
                        format!(
                            "DynamoDB left keys unprocessed {BATCH_GET_ATTEMPTS} times \
                         (throttled); the relay retries"
                        ),
                    ));
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut asked)))
                    .consistent_read(true)
                    .projection_expression("#pk, #sk, #state, #attempts, #parked")
                    .expression_attribute_names("#pk", &config.partition_key)
                    .expression_attribute_names("#sk", &config.sort_key)
                    .expression_attribute_names("#state", STATE)
                    .expression_attribute_names("#attempts", ATTEMPTS)
                    .expression_attribute_names("#parked", PARKED)
                    .build()
                    .map_err(|error| storage(OPERATION, error))?;
                let output = self
                    .store
                    .client()
                    .batch_get_item()
                    .request_items(&config.table, request)
                    .send()
                    .await
                    .map_err(|error| storage(OPERATION, error))?;
                for item in output
                    .responses()
                    .and_then(|responses| responses.get(&config.table))
                    .into_iter()
                    .flatten()
                {
                    let shard = string_of(item, &config.partition_key)
                        .and_then(|pk| pk.strip_prefix("outbox#"))
                        .and_then(|shard| shard.parse::<u16>().ok());
                    let (Some(shard), Some(sort_key)) = (shard, string_of(item, &config.sort_key))
                    else {
                        continue;
                    };
                    states.insert(
                        (shard, sort_key.to_owned()),
                        ItemState {
                            pending: string_of(item, STATE) == Some(PENDING),
                            parked: matches!(item.get(PARKED), Some(AttributeValue::Bool(true))),
                            attempts: number_of(item, ATTEMPTS)
                                .and_then(|attempts| u32::try_from(attempts).ok())
                                .unwrap_or(0),
                        },
                    );
                }
                if let Some(left) = output
                    .unprocessed_keys()
                    .and_then(|left| left.get(&config.table))
                {
                    asked = left.keys().to_vec();
                    if !asked.is_empty() {
                        tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                    }
                }
            }
        }
        Ok(states)
    }

    /// Publishes, like the polling relay, the ready records committed more than
    /// `sweep_after` ago.
    async fn sweep(&self, held: &mut HeldLease, tally: &mut Tally) -> Result<(), Interrupted> {
        tally.counts.sweeps += 1;
        let relay = &self.config.relay;
        let cutoff = epoch_ms(
            SystemTime::now()
                .checked_sub(self.config.sweep_after)
                .unwrap_or(UNIX_EPOCH),
        );
        for _ in 0..SWEEP_BATCHES {
            let ready = self
                .store
                .fetch_ready_placed(relay.batch_size)
                .await
                .map_err(|error| self.failed(tally, &error))?;
            let full = ready.len() == relay.batch_size;
            // Places never decrease: the old records are a prefix, in commit order.
            let old: Vec<OutboxRecord> = ready
                .into_iter()
                .take_while(|(_, placed)| *placed <= cutoff)
                .map(|(record, _)| record)
                .collect();
            if old.is_empty() {
                return Ok(());
            }
            let whole_batch = full && old.len() == relay.batch_size;
            let (slots, envelopes): (Vec<Slot>, Vec<Envelope>) = old
                .into_iter()
                .map(|record| {
                    let slot = Slot {
                        position: record.position,
                        attempts: record.attempts,
                    };
                    (slot, record.envelope)
                })
                .unzip();
            tally.meter.batch();
            let started = Instant::now();
            let results = self.publish_renewing(&envelopes, held, tally).await?;
            tally.meter.publish_time(started.elapsed());
            let outcome = outcome::sort_results(&slots, results, relay, SystemTime::now());
            tally.meter.published(count(outcome.published.len()));
            tally.counts.swept += count(outcome.published.len());
            tally.meter.held_back(outcome.held_back);
            if !outcome.published.is_empty() {
                tracing::info!(outbox = %relay.name, count = outcome.published.len(), "the sweeper published pending records the stream did not deliver");
                match self
                    .store
                    .mark_published(&held.lease, &outcome.published)
                    .await
                {
                    Ok(()) => {}
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !outcome.failures.is_empty() {
                match self.store.mark_failed(&held.lease, &outcome.failures).await {
                    Ok(()) => tally
                        .meter
                        .failed(count(outcome.failures.len()), outcome.parked),
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !whole_batch || outcome.published.is_empty() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Waits `delay`, renewing the lease when due.
    async fn pause<F: Future>(
        &self,
        delay: Duration,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Result<(), Interrupted> {
        let until = Instant::now() + delay;
        loop {
            match shutdown.wait_until(until.min(held.renew_at), None).await {
                Waited::Shutdown => return Err(Interrupted::Stopped),
                Waited::Deadline if Instant::now() >= until => return Ok(()),
                Waited::Deadline | Waited::Woken => {
                    if Instant::now() >= held.renew_at && !self.renew(held, tally).await {
                        return Err(Interrupted::Lost);
                    }
                }
            }
        }
    }

    /// Publishes `envelopes`, renewing the lease during a long publish
    /// ([`lease::publish_renewing`]); [`Interrupted::Lost`] when a renewal found it taken
    /// over.
    async fn publish_renewing(
        &self,
        envelopes: &[Envelope],
        held: &mut HeldLease,
        tally: &mut Tally,
    ) -> Result<Vec<PublishResult>, Interrupted> {
        lease::publish_renewing(
            &self.publisher,
            envelopes,
            &self.store,
            &self.config.relay,
            held,
            &mut tally.meter,
        )
        .await
        .ok_or(Interrupted::Lost)
    }

    /// Renews the lease; whether it is still ours.
    async fn renew(&self, held: &mut HeldLease, tally: &mut Tally) -> bool {
        let relay = &self.config.relay;
        let answer = lease::ask(&self.store, relay).await;
        match held.renewed(answer, relay) {
            Renewal::Renewed => true,
            Renewal::Lost => false,
            Renewal::Failed(error) => {
                tally.meter.store_error();
                tracing::warn!(outbox = %relay.name, %error, "could not renew the outbox streams lease");
                !held.lapsed()
            }
        }
    }

    /// Gives the lease up so that a standby relay takes over at once.
    async fn release(&self, held: &HeldLease, tally: &mut Tally) {
        let relay = &self.config.relay;
        match self.store.release_lease(&held.lease).await {
            Ok(()) => {
                tracing::info!(outbox = %relay.name, owner = %relay.owner, "released the outbox streams lease");
            }
            Err(error) => {
                tally.meter.store_error();
                tracing::warn!(outbox = %relay.name, %error, "could not release the outbox streams lease; it lapses by itself");
            }
        }
    }

    /// Counts and logs a store or stream failure.
    fn failed(&self, tally: &mut Tally, error: &OutboxError) -> Interrupted {
        tally.meter.store_error();
        tracing::warn!(outbox = %self.config.relay.name, %error, "the streams relay will try again");
        Interrupted::Failed
    }
}

/// A count for the report.
fn count(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}
