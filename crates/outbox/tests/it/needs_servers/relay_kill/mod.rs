//! The outbox's central promise against a real broker: a relay process SIGKILLed at random
//! points 20 times while writes go on loses no committed event; duplicates stay within the
//! at-least-once window (at most two batches per kill: the one being published and the
//! one whose mark goes with it, `RelayConfig::mark_while_publishing`). Every committed
//! event id must be on a real SQS queue, published through SNS.
//!
//! One harness ([`run`]), one outbox per module: SQLite (`sqlite`), DynamoDB with the
//! polling relay and with the Streams relay (`dynamodb`). The relay runs in a child
//! process: the test binary itself, started with `--exact <the test>` and the
//! [`Child`] variables, which the test function hands to its outbox's relay.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dovetail_events::envelope::{AggregateRef, Envelope, Event};
use dovetail_outbox::relay::RelayConfig;
use dovetail_testkit::aws::{
    QueueSpec, SubscriptionSpec, TopicSpec, fresh_queue, fresh_topic, subscribe_queue,
};

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "sqlite")]
mod sqlite;

const KILLS: usize = 20;
const BATCH_SIZE: usize = 50;
const CHILD_OUTBOX: &str = "DOVETAIL_RELAY_CHILD_OUTBOX";
const CHILD_TOPIC: &str = "DOVETAIL_RELAY_CHILD_TOPIC";

/// The event the writers commit.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct PremiumChanged {
    pub(crate) cents: u64,
}

impl Event for PremiumChanged {
    const TYPE: &'static str = "policy.premium-changed";
    const VERSION: u32 = 1;
}

/// The relays' settings: a short lease, quick polls, batches of [`BATCH_SIZE`].
pub(crate) fn relay_config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.lease_ttl = Duration::from_millis(600);
    config.renew_every = Duration::from_millis(150);
    config.poll_interval = Duration::from_millis(20);
    config.batch_size = BATCH_SIZE;
    config
}

/// What a child process is told: where the outbox is and which topic to publish to.
pub(crate) struct Child {
    pub(crate) outbox: String,
    pub(crate) topic_arn: String,
}

impl Child {
    /// The child's variables, when this process is a child.
    pub(crate) fn from_env() -> Option<Self> {
        Some(Self {
            outbox: std::env::var(CHILD_OUTBOX).ok()?,
            topic_arn: std::env::var(CHILD_TOPIC).ok()?,
        })
    }
}

/// An outbox under test, seen from the parent process.
pub(crate) trait KillTarget: Send + Sync + 'static {
    /// The full name of the test whose child runs this outbox's relay.
    fn test_name(&self) -> &'static str;

    /// Where the outbox is, for [`Child::outbox`].
    fn location(&self) -> String;

    /// Commits units of work of [`unit_plan`]s until `stop`; answers the ids of the
    /// events committed, in commit order.
    fn write_until(
        self: Arc<Self>,
        stop: Arc<AtomicBool>,
    ) -> impl Future<Output = Vec<String>> + Send + 'static;

    /// How many committed events are not published yet.
    fn pending(&self) -> impl Future<Output = u64> + Send;
}

/// A pseudo-random number in `0..bound`, from a fresh v4 UUID.
pub(crate) fn random(bound: u64) -> u64 {
    u64::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(bound)).unwrap()
}

/// The events of the next unit of work: one to three, on ten aggregates; `cents` counts
/// up across units.
pub(crate) fn unit_plan(cents: &mut u64) -> Vec<(AggregateRef, PremiumChanged)> {
    (0..=random(3))
        .map(|_| {
            *cents += 1;
            let aggregate = AggregateRef::parse("policy", &format!("pol-{}", random(10))).unwrap();
            (aggregate, PremiumChanged { cents: *cents })
        })
        .collect()
}

/// The pause between two units of work.
pub(crate) fn pause() -> Duration {
    Duration::from_millis(random(15))
}

fn spawn_child<T: KillTarget>(target: &T, topic_arn: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            target.test_name(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_OUTBOX, target.location())
        .env(CHILD_TOPIC, topic_arn)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Kills relay children of `target` [`KILLS`] times at random points while a writer
/// commits, drains with a last child, and checks the queue against what was committed.
pub(crate) async fn run<T: KillTarget>(target: T) {
    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let topic = fresh_topic(&sns, "outbox-kill", &TopicSpec::default()).await;
    let queue = fresh_queue(&sqs, "outbox-kill", &QueueSpec::default()).await;
    let raw = SubscriptionSpec {
        raw_message_delivery: true,
        ..SubscriptionSpec::default()
    };
    subscribe_queue(&sns, &sqs, &topic, &queue, &raw).await;

    let target = Arc::new(target);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(Arc::clone(&target).write_until(Arc::clone(&stop)));

    // Kill the relay at random points: while idle, mid-batch, between publish and mark.
    for _ in 0..KILLS {
        let mut child = spawn_child(target.as_ref(), &topic.arn);
        tokio::time::sleep(Duration::from_millis(200 + random(900))).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let committed = writer.await.unwrap();

    // A last relay drains what is left.
    let mut child = spawn_child(target.as_ref(), &topic.arn);
    let started = Instant::now();
    while target.pending().await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let received = drain_queue(&sqs, &queue.url).await;
    check(target.test_name(), &committed, &received);
}

/// Every message on the queue until it stays empty for 3 s, counted by event id.
async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> HashMap<String, usize> {
    let mut received: HashMap<String, usize> = HashMap::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = output.messages.unwrap_or_default();
        if !messages.is_empty() {
            quiet_since = Instant::now();
        }
        for message in messages {
            let envelope: Envelope = serde_json::from_str(message.body().unwrap()).unwrap();
            *received.entry(envelope.id().to_string()).or_default() += 1;
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    received
}

fn check(test: &str, committed: &[String], received: &HashMap<String, usize>) {
    let missing: Vec<&String> = committed
        .iter()
        .filter(|id| !received.contains_key(*id))
        .collect();
    let committed_set: HashSet<&String> = committed.iter().collect();
    let strangers = received
        .keys()
        .filter(|id| !committed_set.contains(id))
        .count();
    let duplicates: usize = received.values().map(|count| count - 1).sum();
    println!(
        "{test}: {} committed, {} distinct received, {duplicates} duplicates after {KILLS} kills",
        committed.len(),
        received.len()
    );
    assert!(
        committed.len() > 200,
        "the writer committed only {}",
        committed.len()
    );
    assert!(
        missing.is_empty(),
        "{} committed events never reached the queue: {missing:?}",
        missing.len()
    );
    assert_eq!(
        strangers, 0,
        "events on the queue that were never committed"
    );
    assert!(
        duplicates <= KILLS * 2 * BATCH_SIZE,
        "{duplicates} duplicates: more than two batches per kill"
    );
}
