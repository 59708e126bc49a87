//! `StreamsRelay` against the AWS emulator: events committed by units of work reach a
//! `MemoryPublisher` through the table's stream in per-aggregate order; a relay killed and
//! replaced resumes from its checkpoint without loss; a failing publish is retried in
//! place, or parked with its aggregate's later events held back; the sweeper publishes
//! what the stream will not deliver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use dovetail_events::consumer::RetryBackoff;
use dovetail_events::envelope::{Envelope, EventId, EventMetadata};
use dovetail_events::publish::{MemoryPublisher, PublishError, PublishResult, Publisher};
use dovetail_outbox::dynamodb::{
    DynamoDbOutbox, StreamsRelay, StreamsRelayConfig, StreamsRelayReport,
};
use dovetail_outbox::{ExpectedVersion, OutboxError, OutboxStore};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::dynamodb_store::fresh_outbox;
use crate::support::{changed, policy};

/// A streams relay configuration for tests: quick polls and retries, a short lease, and a
/// sweeper that finds nothing old enough unless a test says otherwise.
pub(crate) fn config(owner: &str) -> StreamsRelayConfig {
    let mut config = StreamsRelayConfig::default();
    config.relay.owner = owner.to_owned();
    config.relay.poll_interval = Duration::from_millis(50);
    config.relay.lease_ttl = Duration::from_secs(2);
    config.relay.renew_every = Duration::from_millis(500);
    config.relay.backoff = RetryBackoff::new(Duration::from_millis(20), Duration::from_millis(200));
    config.sweep_every = Duration::from_secs(3600);
    config.sweep_after = Duration::from_secs(3600);
    config
}

/// A relay running in its own task, stopped gracefully by `stop` or killed by `abort`.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<StreamsRelayReport, OutboxError>>,
}

impl Running {
    pub(crate) async fn start<P: Publisher + 'static>(
        outbox: &DynamoDbOutbox,
        publisher: P,
        config: StreamsRelayConfig,
    ) -> Self {
        let aws = dovetail_testkit::aws().await;
        let relay = StreamsRelay::new(
            aws.dynamodb_streams(),
            outbox.store("test.streams"),
            publisher,
            config,
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async move {
            stopped.await.ok();
        }));
        Self { stop, task }
    }

    pub(crate) async fn stop(self) -> StreamsRelayReport {
        self.stop.send(()).ok();
        self.task.await.unwrap().unwrap()
    }

    /// Kills the relay: its lease is not released, its last page maybe not checkpointed.
    async fn abort(self) {
        self.task.abort();
        assert!(self.task.await.unwrap_err().is_cancelled());
    }
}

/// Commits `count` events of each of `ids`, one unit of work per round, interleaving the
/// aggregates; returns the committed envelopes in commit order.
pub(crate) async fn commit_rounds(
    outbox: &DynamoDbOutbox,
    ids: &[&str],
    count: u64,
) -> Vec<Envelope> {
    let mut committed = Vec::new();
    for _ in 0..count {
        let mut uow = outbox.unit_of_work();
        for id in ids {
            uow.append(
                policy(id),
                ExpectedVersion::Any,
                &changed(id, "streamed"),
                EventMetadata::default(),
            )
            .unwrap();
        }
        committed.extend(uow.commit().await.unwrap().envelopes().iter().cloned());
    }
    committed
}

/// Waits until `done` holds, failing the test after 30 seconds.
pub(crate) async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether every one of `events` was published (at least once).
pub(crate) fn all_published(publisher: &MemoryPublisher, events: &[Envelope]) -> bool {
    let published: std::collections::HashSet<EventId> =
        publisher.published().iter().map(Envelope::id).collect();
    events.iter().all(|event| published.contains(&event.id()))
}

/// The sequences each aggregate was published with, in publish order.
fn sequences(published: &[Envelope]) -> HashMap<String, Vec<u64>> {
    let mut by_aggregate: HashMap<String, Vec<u64>> = HashMap::new();
    for envelope in published {
        by_aggregate
            .entry(envelope.aggregate_id().as_str().to_owned())
            .or_default()
            .push(envelope.sequence().get());
    }
    by_aggregate
}

/// Asserts that each aggregate went out in sequence order, `1..=last`, each event once.
fn assert_in_order_once(published: &[Envelope], last: u64) {
    for (aggregate, sequences) in sequences(published) {
        assert_eq!(
            sequences,
            (1..=last).collect::<Vec<_>>(),
            "{aggregate} not once each, in order"
        );
    }
}

/// The sequence number of the last outbox INSERT the table's stream holds now (read from
/// the oldest record of every shard).
async fn stream_tail(outbox: &DynamoDbOutbox) -> String {
    let aws = dovetail_testkit::aws().await;
    let streams = aws.dynamodb_streams();
    let described = aws
        .dynamodb()
        .describe_table()
        .table_name(&outbox.config().table)
        .send()
        .await
        .unwrap();
    let arn = described
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_owned();
    let stream = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    let mut last = None;
    for shard in stream.stream_description().unwrap().shards() {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator.take() {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            if page.records().is_empty() {
                break;
            }
            let outbox_record = |record: &&aws_sdk_dynamodbstreams::types::Record| {
                record.event_name() == Some(&aws_sdk_dynamodbstreams::types::OperationType::Insert)
                    && matches!(
                        record.dynamodb().and_then(|change| change.keys()?.get("pk")),
                        Some(aws_sdk_dynamodbstreams::types::AttributeValue::S(pk))
                            if pk.starts_with("outbox#")
                    )
            };
            if let Some(sequence) = page
                .records()
                .iter()
                .rev()
                .find(outbox_record)
                .and_then(|record| record.dynamodb()?.sequence_number())
            {
                last = Some(sequence.to_owned());
            }
            iterator = page.next_shard_iterator;
        }
    }
    last.expect("the stream holds records")
}

/// The checkpoint items: shard id and sequence number.
async fn checkpoints(outbox: &DynamoDbOutbox) -> Vec<(String, Option<String>)> {
    let client = dovetail_testkit::aws().await.dynamodb();
    let output = client
        .query()
        .table_name(&outbox.config().table)
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("outbox-checkpoint".into()))
        .send()
        .await
        .unwrap();
    output
        .items()
        .iter()
        .map(|item| {
            let text = |name: &str| match item.get(name) {
                Some(AttributeValue::S(value)) => Some(value.clone()),
                _ => None,
            };
            (text("sk").unwrap(), text("sequence_number"))
        })
        .collect()
}

/// Waits until a checkpoint stands at or past the stream's last outbox INSERT now. The
/// relay's own lease and checkpoint writes are stream records too, so the checkpoint may
/// pass it; the test compares the emulator's sequence numbers as numbers (the relay never
/// does: to it they are opaque).
async fn wait_for_checkpoint_at_tail(outbox: &DynamoDbOutbox) {
    let number = |sequence: &str| sequence.parse::<u128>().unwrap();
    let tail = number(&stream_tail(outbox).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = checkpoints(outbox).await;
        if found
            .iter()
            .any(|(_, at)| at.as_deref().is_some_and(|at| number(at) >= tail))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint reached {tail}: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A publisher that fails chosen events a number of times (as unavailable), keeping the
/// per-aggregate rule, then publishes them to a `MemoryPublisher`.
#[derive(Debug, Clone, Default)]
struct FlakyPublisher {
    inner: MemoryPublisher,
    failures: Arc<Mutex<HashMap<EventId, u32>>>,
    attempts: Arc<Mutex<HashMap<EventId, u32>>>,
}

impl FlakyPublisher {
    fn fail(&self, event: EventId, times: u32) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(event, times);
    }

    fn attempts(&self, event: EventId) -> u32 {
        let attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        attempts.get(&event).copied().unwrap_or(0)
    }
}

impl Publisher for FlakyPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        let mut failed: HashMap<(String, String), EventId> = HashMap::new();
        let mut results = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let aggregate = (
                envelope.aggregate_type().as_str().to_owned(),
                envelope.aggregate_id().as_str().to_owned(),
            );
            if let Some(&earlier) = failed.get(&aggregate) {
                results.push(Err(PublishError::EarlierEventFailed { earlier }));
                continue;
            }
            *self
                .attempts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(envelope.id())
                .or_default() += 1;
            let fail = {
                let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
                match failures.get_mut(&envelope.id()) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        true
                    }
                    _ => false,
                }
            };
            if fail {
                failed.insert(aggregate, envelope.id());
                results.push(Err(PublishError::Unavailable {
                    reason: "told to fail".to_owned(),
                }));
            } else {
                results.push(self.inner.publish(envelope).await);
            }
        }
        results
    }
}

/// Events committed before and while the relay runs go out through the stream, each
/// aggregate in order, each event once; every item ends `published`, a checkpoint stands.
#[tokio::test]
async fn committed_events_reach_the_publisher_through_the_stream_in_order() {
    let outbox = fresh_outbox("streams-order").await;
    let ids = ["pol-a", "pol-b", "pol-c", "pol-d", "pol-e"];
    let mut events = commit_rounds(&outbox, &ids, 3).await;

    let publisher = MemoryPublisher::new();
    let mut relay_config = config("streams-1");
    relay_config.relay.wake = Some(outbox.commits());
    let relay = Running::start(&outbox, publisher.clone(), relay_config).await;
    events.extend(commit_rounds(&outbox, &ids, 3).await);
    wait_until("all 30 events published", || {
        all_published(&publisher, &events)
    })
    .await;
    wait_for_checkpoint_at_tail(&outbox).await;
    let report = relay.stop().await;

    assert_in_order_once(&publisher.published(), 6);
    assert_eq!(report.published, 30, "{report:?}");
    assert_eq!((report.swept, report.parked, report.held_back), (0, 0, 0));
    assert!(
        report.checkpoints >= 1 && report.lease_takeovers == 1,
        "{report:?}"
    );
    let store = outbox.store("test.streams");
    assert_eq!(
        store.backlog().await.unwrap().pending,
        0,
        "all marked published"
    );
}

/// A relay killed after its checkpoint is replaced by another once its lease lapses: the
/// new one starts after the checkpoint (reads none of the old records again) and publishes
/// everything committed meanwhile, in order, nothing lost.
#[tokio::test]
async fn a_new_relay_resumes_from_the_checkpoint_without_loss() {
    let outbox = fresh_outbox("streams-resume").await;
    let ids = ["pol-a", "pol-b", "pol-c"];
    let publisher = MemoryPublisher::new();

    let first = Running::start(&outbox, publisher.clone(), config("streams-1")).await;
    let mut events = commit_rounds(&outbox, &ids, 4).await;
    wait_until("the first 12 events published", || {
        all_published(&publisher, &events)
    })
    .await;
    wait_for_checkpoint_at_tail(&outbox).await;
    first.abort().await;

    // Committed while no relay runs; the dead relay's lease is still live for a while.
    events.extend(commit_rounds(&outbox, &ids, 4).await);
    let second = Running::start(&outbox, publisher.clone(), config("streams-2")).await;
    wait_until("all 24 events published", || {
        all_published(&publisher, &events)
    })
    .await;
    let report = second.stop().await;

    assert_in_order_once(&publisher.published(), 8);
    assert_eq!(report.published, 12, "{report:?}");
    assert_eq!(
        report.already_published, 0,
        "the new relay started after the checkpoint: {report:?}"
    );
    assert_eq!(report.lease_takeovers, 1);
}

/// A relay killed before its marks and checkpoint: the next one republishes the
/// un-checkpointed tail (duplicates allowed), loses nothing and keeps the order.
#[tokio::test]
async fn a_relay_killed_mid_page_loses_nothing() {
    let outbox = fresh_outbox("streams-kill").await;
    let ids = ["pol-a", "pol-b"];
    let events = commit_rounds(&outbox, &ids, 5).await;
    // The first relay's publisher never succeeds: it retries in place until killed.
    let broken = MemoryPublisher::new();
    broken.set_unavailable(true);
    let mut first_config = config("streams-1");
    first_config.relay.max_attempts = 1_000;
    let first = Running::start(&outbox, broken, first_config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.abort().await;

    let publisher = MemoryPublisher::new();
    let second = Running::start(&outbox, publisher.clone(), config("streams-2")).await;
    wait_until("all 10 events published", || {
        all_published(&publisher, &events)
    })
    .await;
    let report = second.stop().await;
    assert_in_order_once(&publisher.published(), 5);
    assert_eq!(report.published, 10, "{report:?}");
}

/// A publish that fails twice is retried in place: its aggregate's later events wait for
/// it, other aggregates go on, nothing is parked, the order holds.
#[tokio::test]
async fn a_failed_publish_is_retried_in_place_and_order_kept() {
    let outbox = fresh_outbox("streams-retry").await;
    let events = commit_rounds(&outbox, &["pol-a", "pol-b"], 4).await;
    let flaky = FlakyPublisher::default();
    let second_of_a = events
        .iter()
        .find(|e| e.aggregate_id().as_str() == "pol-a" && e.sequence().get() == 2)
        .unwrap()
        .id();
    flaky.fail(second_of_a, 2);

    let relay = Running::start(&outbox, flaky.clone(), config("streams-1")).await;
    wait_until("all 8 events published", || {
        all_published(&flaky.inner, &events)
    })
    .await;
    let report = relay.stop().await;

    assert_in_order_once(&flaky.inner.published(), 4);
    assert_eq!(
        flaky.attempts(second_of_a),
        3,
        "two failures, then accepted"
    );
    assert_eq!(report.failed_attempts, 2, "{report:?}");
    assert_eq!((report.parked, report.published), (0, 8), "{report:?}");
}

/// A record that fails `max_attempts` times is parked; its aggregate's later events are
/// held back (left pending), other aggregates go on. Once an operator unparks it, the
/// sweeper publishes it and the held-back events, in order.
#[tokio::test]
async fn a_parked_record_holds_its_aggregate_back_until_the_sweeper_publishes_it() {
    let outbox = fresh_outbox("streams-park").await;
    let events = commit_rounds(&outbox, &["pol-a", "pol-b"], 3).await;
    let flaky = FlakyPublisher::default();
    let second_of_a = events
        .iter()
        .find(|e| e.aggregate_id().as_str() == "pol-a" && e.sequence().get() == 2)
        .unwrap()
        .id();
    flaky.fail(second_of_a, 2);
    let mut relay_config = config("streams-1");
    relay_config.relay.max_attempts = 2;
    relay_config.sweep_every = Duration::from_millis(200);
    // Long enough that the stream, not the sweeper, meets the records first.
    relay_config.sweep_after = Duration::from_secs(1);

    let relay = Running::start(&outbox, flaky.clone(), relay_config).await;
    let store = outbox.store("operator");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.backlog().await.unwrap().parked == 0 {
        assert!(tokio::time::Instant::now() < deadline, "nothing parked");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let published = sequences(&flaky.inner.published());
    assert_eq!(
        published["pol-a"],
        [1],
        "a's later events wait behind the parked one"
    );
    assert_eq!(
        store.backlog().await.unwrap().pending,
        2,
        "a2 parked, a3 held back"
    );

    assert_eq!(store.unpark_all().await.unwrap(), 1);
    wait_until("all 6 events published", || {
        all_published(&flaky.inner, &events)
    })
    .await;
    let report = relay.stop().await;

    assert_in_order_once(&flaky.inner.published(), 3);
    assert_eq!(report.parked, 1, "{report:?}");
    assert!(
        report.swept >= 2,
        "a2 and a3 through the sweeper: {report:?}"
    );
    assert_eq!(report.swept + report.published, 6, "{report:?}");
    assert!(report.held_back >= 1, "{report:?}");
}

/// Records the stream will not deliver (committed before the relay's checkpoint, as if the
/// stream had trimmed them) go out through the sweeper; records committed later through
/// the stream; each event once, in order.
#[tokio::test]
async fn the_sweeper_publishes_what_the_stream_will_not_deliver() {
    let outbox = fresh_outbox("streams-sweep").await;
    let ids = ["pol-a", "pol-b"];
    let mut events = commit_rounds(&outbox, &ids, 2).await;

    // A checkpoint past those records: the stream iterator starts after them.
    let tail = stream_tail(&outbox).await;
    let aws = dovetail_testkit::aws().await;
    let client = aws.dynamodb();
    let described = client
        .describe_table()
        .table_name(&outbox.config().table)
        .send()
        .await
        .unwrap();
    let arn = described
        .table()
        .unwrap()
        .latest_stream_arn()
        .unwrap()
        .to_owned();
    let stream = aws
        .dynamodb_streams()
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    for shard in stream.stream_description().unwrap().shards() {
        client
            .put_item()
            .table_name(&outbox.config().table)
            .item("pk", AttributeValue::S("outbox-checkpoint".into()))
            .item(
                "sk",
                AttributeValue::S(shard.shard_id().unwrap().to_owned()),
            )
            .item("stream_arn", AttributeValue::S(arn.clone()))
            .item("sequence_number", AttributeValue::S(tail.clone()))
            .item("finished", AttributeValue::Bool(false))
            .send()
            .await
            .unwrap();
    }

    // Without the sweeper, the relay does not see them.
    let publisher = MemoryPublisher::new();
    let blind = Running::start(&outbox, publisher.clone(), config("streams-1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = blind.stop().await;
    assert!(publisher.published().is_empty(), "{report:?}");

    // With it: the old ones through the sweeper, new ones through the stream.
    let mut relay_config = config("streams-2");
    relay_config.sweep_every = Duration::from_millis(200);
    relay_config.sweep_after = Duration::from_millis(100);
    let relay = Running::start(&outbox, publisher.clone(), relay_config).await;
    wait_until("the 4 old events published", || {
        all_published(&publisher, &events)
    })
    .await;
    let newer = commit_rounds(&outbox, &ids, 2).await;
    events.extend(newer.iter().cloned());
    wait_until("all 8 events published", || {
        all_published(&publisher, &events)
    })
    .await;
    let report = relay.stop().await;

    assert_in_order_once(&publisher.published(), 4);
    assert_eq!(report.swept + report.published, 8, "{report:?}");
    assert!(
        report.swept >= 4,
        "the old ones through the sweeper: {report:?}"
    );
    assert!(report.sweeps >= 1);
}
