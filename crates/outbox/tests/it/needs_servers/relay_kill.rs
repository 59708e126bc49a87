//! The outbox's central promise against a real broker: a relay process SIGKILLed at random
//! points 20 times while writes go on loses no committed event; duplicates stay within the
//! at-least-once window (at most one batch per kill).

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Source};
use dovetail_events::publish::{SnsPublisher, SnsPublisherConfig};
use dovetail_outbox::relay::{Relay, RelayConfig};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_outbox::{ExpectedVersion, OutboxStore};
use dovetail_testkit::aws::{
    QueueSpec, SubscriptionSpec, TopicSpec, fresh_queue, fresh_topic, subscribe_queue,
};

const KILLS: usize = 20;
const BATCH_SIZE: usize = 50;
const CHILD_DB: &str = "DOVETAIL_RELAY_CHILD_DB";
const CHILD_TOPIC: &str = "DOVETAIL_RELAY_CHILD_TOPIC";
const TEST_NAME: &str = "needs_servers::relay_kill::a_relay_killed_at_random_points_while_writes_go_on_loses_no_committed_event";

#[derive(serde::Serialize, serde::Deserialize)]
struct PremiumChanged {
    cents: u64,
}

impl Event for PremiumChanged {
    const TYPE: &'static str = "policy.premium-changed";
    const VERSION: u32 = 1;
}

fn relay_config() -> RelayConfig {
    let mut config = RelayConfig::default();
    config.lease_ttl = Duration::from_millis(600);
    config.renew_every = Duration::from_millis(150);
    config.poll_interval = Duration::from_millis(20);
    config.batch_size = BATCH_SIZE;
    config
}

/// The child process: a relay from the outbox file to the topic, until it is killed.
async fn run_relay_child(db: &str, topic_arn: String) {
    let aws = dovetail_testkit::aws().await;
    let store = SqliteOutboxStore::open(db, "relay").unwrap();
    let publisher = SnsPublisher::new(aws.sns(), SnsPublisherConfig { topic_arn });
    Relay::new(store, publisher, relay_config())
        .run(std::future::pending::<()>())
        .await
        .unwrap();
}

fn spawn_child(db: &std::path::Path, topic_arn: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_TOPIC, topic_arn)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A pseudo-random number in `0..bound`, from a fresh v4 UUID.
fn random(bound: u64) -> u64 {
    u64::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(bound)).unwrap()
}

/// Commits units of work of one to three events on ten aggregates until `stop`.
fn write_until(db: std::path::PathBuf, stop: &AtomicBool, committed: &Mutex<Vec<String>>) {
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service").unwrap()));
    let mut connection = rusqlite::Connection::open(db).unwrap();
    SqliteOutbox::prepare_connection(&connection).unwrap();
    let mut cents = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut unit = outbox.begin(&mut connection).unwrap();
        for _ in 0..=random(3) {
            cents += 1;
            let aggregate = AggregateRef::parse("policy", &format!("pol-{}", random(10))).unwrap();
            unit.append(
                aggregate,
                ExpectedVersion::Any,
                &PremiumChanged { cents },
                EventMetadata::default(),
            )
            .unwrap();
        }
        let done = unit.commit().unwrap();
        committed.lock().unwrap().extend(
            done.envelopes()
                .iter()
                .map(|envelope| envelope.id().to_string()),
        );
        std::thread::sleep(Duration::from_millis(random(15)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_random_points_while_writes_go_on_loses_no_committed_event() {
    if let (Ok(db), Ok(topic)) = (std::env::var(CHILD_DB), std::env::var(CHILD_TOPIC)) {
        run_relay_child(&db, topic).await;
        return;
    }
    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let topic = fresh_topic(&sns, "outbox-kill", &TopicSpec::default()).await;
    let queue = fresh_queue(&sqs, "outbox-kill", &QueueSpec::default()).await;
    let raw = SubscriptionSpec {
        raw_message_delivery: true,
        ..SubscriptionSpec::default()
    };
    subscribe_queue(&sns, &sqs, &topic, &queue, &raw).await;

    let dir = std::env::temp_dir().join(format!(
        "dovetail-outbox-kill-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("policy.db");
    let store = SqliteOutboxStore::open(&db, "relay").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (db, stop, committed) = (db.clone(), Arc::clone(&stop), Arc::clone(&committed));
        std::thread::spawn(move || write_until(db, &stop, &committed))
    };

    // Kill the relay at random points: while idle, mid-batch, between publish and mark.
    for _ in 0..KILLS {
        let mut child = spawn_child(&db, &topic.arn);
        tokio::time::sleep(Duration::from_millis(200 + random(900))).await;
        child.kill().unwrap();
        child.wait().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let committed = committed.lock().unwrap().clone();

    // A last relay drains what is left.
    let mut child = spawn_child(&db, &topic.arn);
    let started = Instant::now();
    while store.backlog().await.unwrap().pending > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Everything on the queue, by event id.
    let mut received: HashMap<String, usize> = HashMap::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        let output = sqs
            .receive_message()
            .queue_url(&queue.url)
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
                .queue_url(&queue.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }

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
        "relay kill test: {} committed, {} distinct received, {duplicates} duplicates after {KILLS} kills",
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
        duplicates <= KILLS * BATCH_SIZE,
        "{duplicates} duplicates: more than one batch per kill"
    );
}
