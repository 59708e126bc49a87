//! The embedded bus: fan-out with filters, per-aggregate order with parallel aggregates,
//! retries, dead letters and redrive, wake-ups, drain, and durability across a SIGKILL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{ConsumerReport, Delivery, HandlerError, RetryBackoff};
use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishError, Publisher};
use tokio::sync::oneshot;

use crate::support::{claim_event, policy_event};

const TOPIC: &str = "events";

fn temp_db(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-bus-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("bus.db")
}

async fn bus_with(subscriptions: &[(&str, serde_json::Value, u32)]) -> EmbeddedBus {
    let bus = EmbeddedBus::open(temp_db("test")).unwrap();
    bus.create_topic(TOPIC).await.unwrap();
    for (name, filter, max_receives) in subscriptions {
        bus.subscribe(BusSubscription {
            name: (*name).to_owned(),
            topic: TOPIC.to_owned(),
            filter: SubscriptionFilter::from_json(filter).unwrap(),
            max_receives: *max_receives,
        })
        .await
        .unwrap();
    }
    bus
}

fn fast_config(subscription: &str) -> BusConsumerConfig {
    let mut config = BusConsumerConfig::new(subscription);
    config.visibility_timeout = Duration::from_secs(5);
    config.heartbeat_every = Duration::from_secs(1);
    config.backoff = RetryBackoff::new(Duration::from_millis(50), Duration::from_millis(200));
    config.poll_interval = Duration::from_millis(200);
    config.drain_timeout = Duration::from_secs(5);
    config
}

/// Runs a consumer until `done` says so (or 10 s pass), then drains.
async fn consume_until<S, Done, Check>(
    bus: &EmbeddedBus,
    config: BusConsumerConfig,
    handler: S,
    done: Done,
) -> ConsumerReport
where
    S: tower::Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Done: Fn() -> Check,
    Check: std::future::Future<Output = bool>,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = tokio::spawn(BusConsumer::new(bus.clone(), config).run(handler, stopped));
    let started = Instant::now();
    while !done().await && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    consumer.await.unwrap().unwrap()
}

fn recording() -> (
    Arc<Mutex<Vec<Envelope>>>,
    impl tower::Service<Delivery, Response = (), Error = HandlerError, Future = impl Send> + Clone,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let handler = tower::service_fn(move |delivery: Delivery| {
        let record = Arc::clone(&record);
        async move {
            let envelope: Envelope = serde_json::from_str(&delivery.body)
                .map_err(|error| HandlerError::rejected(error.to_string()))?;
            record.lock().unwrap().push(envelope);
            Ok::<(), HandlerError>(())
        }
    });
    (seen, handler)
}

#[tokio::test]
async fn topics_fan_out_to_subscriptions_by_filter() {
    let bus = bus_with(&[
        ("all", serde_json::json!({}), 5),
        (
            "claims-only",
            serde_json::json!({"type": [{"prefix": "claim."}]}),
            5,
        ),
    ])
    .await;
    let batch = vec![policy_event("pol-1", 1, 0), claim_event("clm-1")];
    let results = bus.publisher(TOPIC).publish_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    assert_eq!(bus.backlog("all").await.unwrap().pending, 2);
    assert_eq!(bus.backlog("claims-only").await.unwrap().pending, 1);

    let (seen, handler) = recording();
    let probe = Arc::clone(&seen);
    let report = consume_until(&bus, fast_config("claims-only"), handler, move || {
        std::future::ready(probe.lock().unwrap().len() == 1)
    })
    .await;
    assert_eq!(seen.lock().unwrap().as_slice(), &batch[1..]);
    assert_eq!(report.handled, 1);
    assert_eq!(bus.backlog("claims-only").await.unwrap().pending, 0);
    assert_eq!(
        bus.backlog("all").await.unwrap().pending,
        2,
        "other subscriptions untouched"
    );
}

#[tokio::test]
async fn each_aggregate_in_order_while_aggregates_run_in_parallel() {
    let bus = bus_with(&[("orders", serde_json::json!({}), 5)]).await;
    let batch: Vec<Envelope> = (1..=10_u64)
        .flat_map(|sequence| {
            ["a", "b", "c", "d"].map(|aggregate| policy_event(aggregate, sequence, 0))
        })
        .collect();
    let results = bus.publisher(TOPIC).publish_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok));

    let seen: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (seen, running, most) = (Arc::clone(&seen), Arc::clone(&running), Arc::clone(&most));
        tower::service_fn(move |delivery: Delivery| {
            let (seen, running, most) =
                (Arc::clone(&seen), Arc::clone(&running), Arc::clone(&most));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(15)).await;
                let envelope: Envelope = serde_json::from_str(&delivery.body).unwrap();
                seen.lock().unwrap().push((
                    envelope.aggregate_id().as_str().to_owned(),
                    envelope.sequence().get(),
                ));
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let probe = Arc::clone(&seen);
    let report = consume_until(&bus, fast_config("orders"), handler, move || {
        std::future::ready(probe.lock().unwrap().len() == 40)
    })
    .await;
    assert_eq!(report.handled, 40);
    let seen = seen.lock().unwrap();
    for aggregate in ["a", "b", "c", "d"] {
        let sequences: Vec<u64> = seen
            .iter()
            .filter(|(id, _)| id == aggregate)
            .map(|(_, sequence)| *sequence)
            .collect();
        assert_eq!(
            sequences,
            (1..=10).collect::<Vec<_>>(),
            "aggregate {aggregate}"
        );
    }
    assert!(
        most.load(Ordering::SeqCst) > 1,
        "aggregates ran in parallel"
    );
    assert!(
        most.load(Ordering::SeqCst) <= 4,
        "never two messages of one aggregate at once"
    );
}

#[tokio::test]
async fn a_retriable_failure_is_redelivered_with_a_growing_receive_count() {
    let bus = bus_with(&[("retry", serde_json::json!({}), 10)]).await;
    bus.publisher(TOPIC)
        .publish(&policy_event("pol-1", 1, 0))
        .await
        .unwrap();

    let counts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let handler = {
        let counts = Arc::clone(&counts);
        tower::service_fn(move |delivery: Delivery| {
            let counts = Arc::clone(&counts);
            async move {
                counts.lock().unwrap().push(delivery.receive_count);
                if delivery.receive_count < 3 {
                    Err(HandlerError::retriable("the policy service is down"))
                } else {
                    Ok(())
                }
            }
        })
    };
    let probe = Arc::clone(&counts);
    let report = consume_until(&bus, fast_config("retry"), handler, move || {
        std::future::ready(probe.lock().unwrap().len() == 3)
    })
    .await;
    assert_eq!(*counts.lock().unwrap(), [1, 2, 3]);
    assert_eq!((report.retried, report.handled), (2, 1));
}

#[tokio::test]
async fn rejected_and_exhausted_messages_become_dead_letters_with_reasons_and_can_be_redriven() {
    let bus = bus_with(&[("dlq", serde_json::json!({}), 2)]).await;
    let batch = vec![
        policy_event("reject-me", 1, 0),
        policy_event("always-fails", 1, 0),
    ];
    bus.publisher(TOPIC).publish_batch(&batch).await;

    let handler = tower::service_fn(|delivery: Delivery| async move {
        let envelope: Envelope = serde_json::from_str(&delivery.body).unwrap();
        match envelope.aggregate_id().as_str() {
            "reject-me" => Err(HandlerError::rejected("coverage limit is negative")),
            _ => Err(HandlerError::retriable("still down")),
        }
    });
    let dead_probe = bus.clone();
    let mut config = fast_config("dlq");
    config.poll_interval = Duration::from_millis(50);
    let report = consume_until(&bus, config, handler, move || {
        let bus = dead_probe.clone();
        async move { bus.dead_letters("dlq").await.unwrap().len() == 2 }
    })
    .await;

    let dead = bus.dead_letters("dlq").await.unwrap();
    let reasons: HashMap<String, String> = dead
        .iter()
        .map(|d| (d.message_id.clone(), d.reason.clone()))
        .collect();
    assert_eq!(
        reasons[&batch[0].id().to_string()],
        "coverage limit is negative"
    );
    assert!(
        reasons[&batch[1].id().to_string()].contains("received 2 times"),
        "{reasons:?}"
    );
    assert_eq!(report.dead_lettered, 1);
    assert_eq!(
        bus.backlog("dlq").await.unwrap().pending,
        0,
        "dead letters are not pending"
    );

    assert_eq!(bus.backlog("dlq").await.unwrap().dead_letters, 2);

    assert_eq!(bus.redrive("dlq").await.unwrap(), 2);
    assert_eq!(bus.backlog("dlq").await.unwrap().pending, 2);
    assert_eq!(bus.backlog("dlq").await.unwrap().dead_letters, 0);
    assert!(bus.dead_letters("dlq").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_publish_wakes_an_idle_consumer_at_once() {
    let bus = bus_with(&[("wake", serde_json::json!({}), 5)]).await;
    let mut config = fast_config("wake");
    config.poll_interval = Duration::from_secs(30);
    let (seen, handler) = recording();
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = tokio::spawn(BusConsumer::new(bus.clone(), config).run(handler, stopped));
    tokio::time::sleep(Duration::from_millis(200)).await; // the consumer is idle now

    let published = Instant::now();
    bus.publisher(TOPIC)
        .publish(&policy_event("pol-1", 1, 0))
        .await
        .unwrap();
    while seen.lock().unwrap().is_empty() && published.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let latency = published.elapsed();
    let _ = stop.send(());
    consumer.await.unwrap().unwrap();
    assert!(
        latency < Duration::from_secs(1),
        "woken in {latency:?}, not after the 30 s poll"
    );
}

#[tokio::test]
async fn shutdown_waits_for_running_handlers() {
    let bus = bus_with(&[("drain", serde_json::json!({}), 5)]).await;
    bus.publisher(TOPIC)
        .publish(&policy_event("pol-1", 1, 0))
        .await
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let handler = {
        let started = Arc::clone(&started);
        tower::service_fn(move |_delivery: Delivery| {
            let started = Arc::clone(&started);
            async move {
                started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok::<(), HandlerError>(())
            }
        })
    };
    let probe = Arc::clone(&started);
    let report = consume_until(&bus, fast_config("drain"), handler, move || {
        std::future::ready(probe.load(Ordering::SeqCst) == 1)
    })
    .await;
    assert_eq!((report.handled, report.abandoned), (1, 0), "{report:?}");
    assert_eq!(bus.backlog("drain").await.unwrap().pending, 0);
}

#[tokio::test]
async fn an_unknown_topic_is_refused_and_an_oversized_event_is_too_large() {
    let bus = bus_with(&[]).await;
    let error = bus
        .publisher("no-such-topic")
        .publish(&policy_event("pol-1", 1, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(error, PublishError::Rejected { .. }) && !error.is_retriable(),
        "{error}"
    );
    let error = bus
        .publisher(TOPIC)
        .publish(&policy_event("pol-1", 1, 2 << 20))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("embedded bus"), "{error}");
}

/// The child half of the SIGKILL test: publishes events one at a time to the bus at
/// `DOVETAIL_BUS_CHILD` and prints each id once `publish` returned `Ok`, until killed.
async fn run_publisher_child(path: &str) {
    let bus = EmbeddedBus::open(path).unwrap();
    let publisher = bus.publisher(TOPIC);
    for sequence in 1.. {
        let envelope = policy_event("pol-crash", sequence, 64);
        publisher.publish(&envelope).await.unwrap();
        println!("accepted {}", envelope.id());
    }
}

#[tokio::test]
async fn accepted_events_survive_a_sigkill_of_the_publishing_process() {
    if let Ok(path) = std::env::var("DOVETAIL_BUS_CHILD") {
        run_publisher_child(&path).await;
        return;
    }
    let path = temp_db("crash");
    let bus = bus_with_path(&path).await;
    drop(bus);

    let mut accepted = Vec::new();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "bus::accepted_events_survive_a_sigkill_of_the_publishing_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DOVETAIL_BUS_CHILD", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it publish a while (a different number of events each round), then kill it.
        let wanted = 20 + round * 17;
        let mut this_round = 0;
        while this_round < wanted {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(id) = line.strip_prefix("accepted ") {
                accepted.push(id.to_owned());
                this_round += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("accepted ") {
                accepted.push(id.to_owned());
            }
        }
    }

    let bus = EmbeddedBus::open(&path).unwrap();
    let pending = bus.backlog("crash").await.unwrap().pending;
    let (seen, handler) = recording();
    let probe = Arc::clone(&seen);
    let target = usize::try_from(pending).unwrap();
    consume_until(&bus, fast_config("crash"), handler, move || {
        std::future::ready(probe.lock().unwrap().len() >= target)
    })
    .await;
    let stored: std::collections::HashSet<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.id().to_string())
        .collect();
    let lost: Vec<&String> = accepted.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        accepted.len() >= 100,
        "the children published {}",
        accepted.len()
    );
    assert!(
        lost.is_empty(),
        "{} of {} accepted events lost after SIGKILL (pending before consuming: {pending}, consumed: {}): {lost:?}",
        lost.len(),
        accepted.len(),
        stored.len()
    );
    assert!(pending >= accepted.len() as u64);
}

async fn bus_with_path(path: &PathBuf) -> EmbeddedBus {
    let bus = EmbeddedBus::open(path).unwrap();
    bus.create_topic(TOPIC).await.unwrap();
    bus.subscribe(BusSubscription {
        name: "crash".to_owned(),
        topic: TOPIC.to_owned(),
        filter: SubscriptionFilter::all(),
        max_receives: 5,
    })
    .await
    .unwrap();
    bus
}

#[tokio::test]
async fn a_message_whose_consumer_died_mid_handler_is_redelivered_after_its_visibility_timeout() {
    let bus = bus_with(&[("crashy", serde_json::json!({}), 5)]).await;
    let envelope = policy_event("pol-1", 1, 0);
    bus.publisher(TOPIC).publish(&envelope).await.unwrap();

    // A consumer whose handler hangs, killed (its task aborted) mid-handler: nothing settles.
    let mut config = fast_config("crashy");
    config.visibility_timeout = Duration::from_millis(600);
    config.heartbeat_every = Duration::from_secs(60);
    let entered = Arc::new(AtomicUsize::new(0));
    let hanging = {
        let entered = Arc::clone(&entered);
        tower::service_fn(move |_delivery: Delivery| {
            entered.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<(), HandlerError>>()
        })
    };
    let crashed = tokio::spawn(
        BusConsumer::new(bus.clone(), config.clone()).run(hanging, std::future::pending::<()>()),
    );
    while entered.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crashed.abort();
    let _ = crashed.await;

    let counts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let handler = {
        let counts = Arc::clone(&counts);
        tower::service_fn(move |delivery: Delivery| {
            counts.lock().unwrap().push(delivery.receive_count);
            std::future::ready(Ok::<(), HandlerError>(()))
        })
    };
    let probe = Arc::clone(&counts);
    let report = consume_until(&bus, config, handler, move || {
        std::future::ready(!probe.lock().unwrap().is_empty())
    })
    .await;
    assert_eq!(
        *counts.lock().unwrap(),
        [2],
        "redelivered once, as its second receive"
    );
    assert_eq!(report.handled, 1);
}
