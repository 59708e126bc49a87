//! Benchmark of the idempotent consumer layer on the embedded bus (not a timed test):
//! store round trips per message, and throughput against the bare handler in the same run;
//! and the bus's delivery to the bare handler against its own publish rate, with the same
//! batch size (`BATCH`: the publisher's batches, the consumer's `max_in_flight`, which is
//! how many messages one receive takes at most), in the same rounds.
//!
//! Run with: `cargo bench -p dovetail-events --bench idempotency`
//! (or `cargo xtask bench`). Prints medians of several alternating rounds.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::idempotency::{
    Fingerprint, IdempotencyConfig, IdempotencyKey, IdempotencyLayer, MarkOutcome,
    SqliteIdempotencyStore, StoredOutcome,
};
use dovetail_events::publish::Publisher;
use tower::Layer;

const EVENTS: usize = 2_000;
const ROUNDS: usize = 7;
/// Messages per publish, and per receive at most (the consumer's `max_in_flight`).
const BATCH: usize = 32;

#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyIssued {
    policy_id: String,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

fn events() -> Vec<Envelope> {
    (0..EVENTS)
        .map(|i| {
            let id = format!("pol-{i}");
            Envelope::new(
                Source::parse("bench").unwrap(),
                AggregateRef::parse("policy", &id).unwrap(),
                Sequence::FIRST,
                &PolicyIssued {
                    policy_id: id.clone(),
                },
                EventMetadata::default(),
            )
            .unwrap()
        })
        .collect()
}

fn temp_dir() -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dovetail-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fresh bus holding `events`, published in batches of [`BATCH`]; and how long the
/// publishing took.
async fn loaded_bus(events: &[Envelope]) -> (EmbeddedBus, Duration) {
    let bus = EmbeddedBus::open(temp_dir().join("bus.db")).unwrap();
    bus.create_topic("t").await.unwrap();
    bus.subscribe(BusSubscription {
        name: "s".into(),
        topic: "t".into(),
        filter: SubscriptionFilter::all(),
        max_receives: 5,
    })
    .await
    .unwrap();
    let publisher = bus.publisher("t");
    let started = Instant::now();
    for chunk in events.chunks(BATCH) {
        let results = publisher.publish_batch(chunk).await;
        assert!(results.iter().all(Result::is_ok));
    }
    (bus, started.elapsed())
}

/// Consumes every message of a loaded bus through `handler`; returns the time taken.
async fn consume<S>(
    bus: EmbeddedBus,
    handler: S,
    handled: Arc<AtomicUsize>,
    target: usize,
) -> Duration
where
    S: tower::Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut config = BusConsumerConfig::new("s");
    config.max_in_flight = BATCH;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let consumer = tokio::spawn(BusConsumer::new(bus.clone(), config).run(handler, stopped));
    // The clock stops when every message is settled. The backlog (a count over the
    // subscription's rows, on the bus's connection) is read only once the handler has seen
    // every message, so that measuring does not hold the connection the consumer uses.
    while handled.load(Ordering::SeqCst) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while bus.backlog("s").await.unwrap().pending > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    let _ = stop.send(());
    consumer.await.unwrap().unwrap();
    took
}

fn counting_handler(
    handled: Arc<AtomicUsize>,
) -> impl tower::Service<Delivery, Response = (), Error = HandlerError, Future = impl Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_delivery: Delivery| {
        handled.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<(), HandlerError>(()))
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events = events();
    let mut publish_rates = Vec::new();
    let mut delivery_ratios = Vec::new();
    let mut bare_rates = Vec::new();
    let mut layered_rates = Vec::new();
    let mut ratios = Vec::new();
    let mut first_calls = Vec::new();
    let mut duplicate_calls = Vec::new();

    for _ in 0..ROUNDS {
        // Bare handler.
        let handled = Arc::new(AtomicUsize::new(0));
        let (bus, published) = loaded_bus(&events).await;
        let took = consume(
            bus,
            counting_handler(Arc::clone(&handled)),
            Arc::clone(&handled),
            EVENTS,
        )
        .await;
        bare_rates.push(EVENTS as f64 / took.as_secs_f64());
        publish_rates.push(EVENTS as f64 / published.as_secs_f64());
        delivery_ratios.push(published.as_secs_f64() / took.as_secs_f64());

        // Same handler behind the idempotency layer, SQLite store in its own file.
        let store = SqliteIdempotencyStore::open(temp_dir().join("idempotency.db")).unwrap();
        let layer = IdempotencyLayer::new(store, IdempotencyConfig::new("bench"));
        let handled = Arc::new(AtomicUsize::new(0));
        let (bus, _) = loaded_bus(&events).await;
        let service = layer.layer(counting_handler(Arc::clone(&handled)));
        let took = consume(bus.clone(), service.clone(), Arc::clone(&handled), EVENTS).await;
        layered_rates.push(EVENTS as f64 / took.as_secs_f64());
        // Paired with the bare round just before it, so load on the machine cancels out.
        ratios.push(layered_rates[layered_rates.len() - 1] / bare_rates[bare_rates.len() - 1]);
        first_calls.push(layer.stats().store_calls() as f64 / EVENTS as f64);

        // Every event delivered again (a relay republished them): the cache answers.
        let before = layer.stats().store_calls();
        for chunk in events.chunks(500) {
            bus.publisher("t").publish_batch(chunk).await;
        }
        let duplicates = Arc::new(AtomicUsize::new(0));
        let duplicate_service = tower::ServiceBuilder::new()
            .layer(layer.clone())
            .service(counting_handler(Arc::clone(&duplicates)));
        while bus.backlog("s").await.unwrap().pending > 0 {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let consumer = tokio::spawn(
                BusConsumer::new(bus.clone(), BusConsumerConfig::new("s"))
                    .run(duplicate_service.clone(), stopped),
            );
            while bus.backlog("s").await.unwrap().pending > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = stop.send(());
            consumer.await.unwrap().unwrap();
        }
        assert_eq!(
            duplicates.load(Ordering::SeqCst),
            0,
            "no duplicate reached the handler"
        );
        duplicate_calls.push((layer.stats().store_calls() - before) as f64 / EVENTS as f64);
    }

    // The transactional path: the marker commits in the handler's own SQLite transaction.
    let mut connection = rusqlite_connection();
    SqliteIdempotencyStore::create_schema(&connection).unwrap();
    let statements_before = connection.total_changes();
    for envelope in events.iter().take(500) {
        let tx = connection.transaction().unwrap();
        let key = IdempotencyKey::new(format!("bench:{}", envelope.id())).unwrap();
        let marked = SqliteIdempotencyStore::mark_processed_in(
            &tx,
            &key,
            &Fingerprint::of(&envelope.to_json_bytes()),
            &StoredOutcome::empty(),
            Duration::from_secs(3600),
        )
        .unwrap();
        assert_eq!(marked, MarkOutcome::Marked);
        tx.commit().unwrap();
    }
    let writes_per_event = (connection.total_changes() - statements_before) as f64 / 500.0;

    let bare = median(bare_rates);
    let layered = median(layered_rates);
    println!("idempotent consumer on the embedded bus, {EVENTS} events, median of {ROUNDS} rounds");
    println!(
        "  bus publish             {:>9.0} msg/s   (batches of {BATCH})",
        median(publish_rates)
    );
    println!("  bare handler            {bare:>9.0} msg/s   (receives of at most {BATCH})");
    let mut sorted = delivery_ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let listed: Vec<String> = sorted.iter().map(|ratio| format!("{ratio:.2}")).collect();
    println!(
        "  delivery / publish      {:>9.2}          (median of per-round ratios {}; target >= 0.50)",
        median(delivery_ratios),
        listed.join(" ")
    );
    println!("  with idempotency layer  {layered:>9.0} msg/s   (SQLite store, lease path)");
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let listed: Vec<String> = sorted.iter().map(|ratio| format!("{ratio:.2}")).collect();
    println!(
        "  throughput ratio        {:>9.2}          (median of per-round ratios {}; target >= 0.80)",
        median(ratios),
        listed.join(" ")
    );
    println!(
        "  store calls, first delivery      {:.2} per message (claim + complete)",
        median(first_calls)
    );
    println!(
        "  store calls, cached duplicate    {:.2} per message (target 0)",
        median(duplicate_calls)
    );
    println!(
        "  rows written, transactional path {writes_per_event:.2} per message (target 1 conditional write)"
    );
}

fn rusqlite_connection() -> rusqlite::Connection {
    rusqlite::Connection::open(temp_dir().join("tx.db")).unwrap()
}
