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
//!    records ([`OutboxStore::fetch_ready`](crate::OutboxStore::fetch_ready)) committed more
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
mod reading;
mod records;
mod report;
mod settling;
mod shards;
mod sweeping;

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishResult, Publisher};
use tokio::time::Instant;

pub use config::StreamsRelayConfig;
pub use report::StreamsRelayReport;

use super::DynamoDbOutboxStore;
use crate::relay::Shutdown;
use crate::relay::holding::{Holding, LeaseKeeper};
use crate::relay::lease::{self, HeldLease};
use crate::relay::report::Meter;
use crate::{OutboxError, Position};

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
        tracing::info!(outbox = %relay.name, owner = %relay.owner, lease = %self.store.lease_name(), "outbox streams relay started");
        let keeper = self.keeper();
        let mut last_token = None;
        while let Some(mut held) = keeper
            .take(&mut shutdown, &mut tally.meter, &mut last_token)
            .await
        {
            let end = self
                .publish_while_held(&mut held, &mut shutdown, &mut tally)
                .await;
            if !keeper.ended(&held, end, &mut tally.meter).await {
                break;
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

    /// The keeper of this relay's lease.
    fn keeper(&self) -> LeaseKeeper<'_, DynamoDbOutboxStore> {
        LeaseKeeper {
            store: &self.store,
            config: &self.config.relay,
            what: "outbox streams",
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
            if !self.keeper().renew_if_due(held, &mut tally.meter).await {
                return Holding::Lost;
            }
            if Instant::now() >= next_backlog {
                self.keeper().observe_backlog(&mut tally.meter).await;
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
            let wake = self.config.relay.wake.as_deref();
            if let Err(end) = self
                .keeper()
                .rest(poll_at, wake, held, shutdown, &mut tally.meter)
                .await
            {
                return end;
            }
        }
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
        match self
            .keeper()
            .rest(until, None, held, shutdown, &mut tally.meter)
            .await
        {
            Ok(_) => Ok(()),
            Err(Holding::Stopped) => Err(Interrupted::Stopped),
            Err(Holding::Lost) => Err(Interrupted::Lost),
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
