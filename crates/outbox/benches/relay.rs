//! Benchmarks of the relay (not timed tests), on the embedded backends:
//! (b) relay throughput against publishing the same events directly with the same
//!     Publisher, same run; (c) commit-to-published latency at 1,000 events/s.
//!
//! Run with: `cargo bench -p dovetail-outbox --bench relay` (or `cargo xtask bench`).
//! The publisher is the embedded bus (`dovetail_events::bus`) in its own SQLite file; the
//! outbox is a SQLite file in WAL mode. (b) runs 7 rounds of 20,000 events, relay first in
//! even rounds and direct first in odd ones, and prints the per-round ratios and the
//! medians; the relay's clock runs until the outbox is empty, but the backlog is only read
//! once the publisher has seen every event, so the measuring does not slow the relay down.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dovetail_events::bus::{BusPublisher, BusSubscription, EmbeddedBus, SubscriptionFilter};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventId, EventMetadata, Source};
use dovetail_events::publish::{PublishResult, Publisher};
use dovetail_outbox::relay::{Relay, RelayConfig};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_outbox::{ExpectedVersion, OutboxStore};

const EVENTS: usize = 20_000;
const ROUNDS: usize = 7;
const LATENCY_RATE_PER_SECOND: u64 = 1_000;
const LATENCY_EVENTS: usize = 3_000;

#[derive(serde::Serialize, serde::Deserialize)]
struct PremiumChanged {
    cents: u64,
}

impl Event for PremiumChanged {
    const TYPE: &'static str = "policy.premium-changed";
    const VERSION: u32 = 1;
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-relay-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn bus_publisher(dir: &std::path::Path) -> BusPublisher {
    std::fs::create_dir_all(dir).unwrap();
    let bus = EmbeddedBus::open(dir.join("bus.db")).unwrap();
    bus.create_topic("t").await.unwrap();
    bus.subscribe(BusSubscription {
        name: "s".into(),
        topic: "t".into(),
        filter: SubscriptionFilter::all(),
        max_receives: 5,
    })
    .await
    .unwrap();
    bus.publisher("t")
}

fn writer_connection(db: &std::path::Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(db).unwrap();
    SqliteOutbox::prepare_connection(&connection).unwrap();
    connection
}

/// Commits `count` events on 100 aggregates, ten per unit of work.
fn commit_events(
    outbox: &SqliteOutbox,
    connection: &mut rusqlite::Connection,
    count: usize,
) -> Vec<Envelope> {
    let mut committed = Vec::with_capacity(count);
    let mut cents = 0;
    while committed.len() < count {
        let mut unit = outbox.begin(connection).unwrap();
        for _ in 0..10 {
            cents += 1;
            let aggregate = AggregateRef::parse("policy", &format!("pol-{}", cents % 100)).unwrap();
            unit.append(
                aggregate,
                ExpectedVersion::Any,
                &PremiumChanged { cents },
                EventMetadata::default(),
            )
            .unwrap();
        }
        committed.extend(unit.commit().unwrap().into_envelopes());
    }
    committed
}

fn relay_config(wake: Option<Arc<tokio::sync::Notify>>) -> RelayConfig {
    let mut config = RelayConfig::default();
    config.batch_size = 100;
    config.poll_interval = Duration::from_millis(100);
    config.wake = wake;
    config
}

/// (b): seconds for the relay to publish `EVENTS` committed events, and for the same
/// publisher to publish them directly in batches of the same size; `relay_first` says
/// which of the two runs first (rounds alternate, so that neither always meets a warmer
/// or a busier machine).
async fn throughput_round(relay_first: bool) -> (f64, f64) {
    let dir = temp_dir();
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("bench").unwrap()));
    let mut connection = writer_connection(&dir.join("policy.db"));
    let events = commit_events(&outbox, &mut connection, EVENTS);
    if relay_first {
        let relayed = relay_all(&dir).await;
        (relayed, publish_directly(&dir, &events).await)
    } else {
        let direct = publish_directly(&dir, &events).await;
        (relay_all(&dir).await, direct)
    }
}

/// Seconds until a relay emptied the outbox in `dir`.
async fn relay_all(dir: &std::path::Path) -> f64 {
    let store = SqliteOutboxStore::open(dir.join("policy.db"), "relay").unwrap();
    let all_accepted = Arc::new(tokio::sync::Notify::new());
    let publisher = Counting {
        inner: bus_publisher(&dir.join("relay")).await,
        accepted: Arc::new(AtomicUsize::new(0)),
        expected: EVENTS,
        all_accepted: Arc::clone(&all_accepted),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let relay = tokio::spawn(Relay::new(store.clone(), publisher, relay_config(None)).run(stopped));
    // The clock stops when the outbox is empty (the last batch marked too); the backlog
    // is read only once the broker has every event, so that reading it (a COUNT over the
    // outbox, on the relay's connection) does not slow the relay down meanwhile.
    all_accepted.notified().await;
    while store.backlog().await.unwrap().pending > 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let relayed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    relay.await.unwrap().unwrap();
    relayed
}

/// Seconds to publish `events` with a fresh publisher, in batches of the relay's size.
async fn publish_directly(dir: &std::path::Path, events: &[Envelope]) -> f64 {
    let publisher = bus_publisher(&dir.join("direct")).await;
    let started = Instant::now();
    for batch in events.chunks(100) {
        let results = publisher.publish_batch(batch).await;
        assert!(results.iter().all(Result::is_ok));
    }
    started.elapsed().as_secs_f64()
}

/// A publisher that signals once it accepted `expected` events.
struct Counting<P> {
    inner: P,
    accepted: Arc<AtomicUsize>,
    expected: usize,
    all_accepted: Arc<tokio::sync::Notify>,
}

impl<P: Publisher> Publisher for Counting<P> {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        let results = self.inner.publish_batch(envelopes).await;
        let ok = results.iter().filter(|result| result.is_ok()).count();
        if self.accepted.fetch_add(ok, Ordering::SeqCst) + ok >= self.expected {
            self.all_accepted.notify_one();
        }
        results
    }
}

/// A publisher that notes when each event was accepted.
#[derive(Clone)]
struct Timed<P> {
    inner: P,
    accepted: Arc<Mutex<HashMap<EventId, Instant>>>,
}

impl<P: Publisher> Publisher for Timed<P> {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        let results = self.inner.publish_batch(envelopes).await;
        let now = Instant::now();
        let mut accepted = self.accepted.lock().unwrap();
        for (envelope, result) in envelopes.iter().zip(&results) {
            if result.is_ok() {
                accepted.entry(envelope.id()).or_insert(now);
            }
        }
        results
    }
}

/// (c): commit-to-published latencies at a steady 1,000 commits of one event per second.
async fn latency_run() -> Vec<Duration> {
    let dir = temp_dir();
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("bench").unwrap()));
    let db = dir.join("policy.db");
    let mut connection = writer_connection(&db);
    let store = SqliteOutboxStore::open(&db, "relay").unwrap();
    let accepted = Arc::new(Mutex::new(HashMap::new()));
    let publisher = Timed {
        inner: bus_publisher(&dir).await,
        accepted: Arc::clone(&accepted),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(
        Relay::new(
            store.clone(),
            publisher,
            relay_config(Some(outbox.commits())),
        )
        .run(stopped),
    );

    // The writer runs on its own thread, as a service's request handlers would.
    let committed: Vec<(EventId, Instant)> = tokio::task::spawn_blocking(move || {
        let interval = Duration::from_micros(1_000_000 / LATENCY_RATE_PER_SECOND);
        let start = Instant::now();
        let mut committed = Vec::with_capacity(LATENCY_EVENTS);
        for index in 0..LATENCY_EVENTS {
            let due = start + interval * u32::try_from(index).unwrap();
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut unit = outbox.begin(&mut connection).unwrap();
            let aggregate = AggregateRef::parse("policy", &format!("pol-{}", index % 100)).unwrap();
            unit.append(
                aggregate,
                ExpectedVersion::Any,
                &PremiumChanged {
                    cents: index as u64,
                },
                EventMetadata::default(),
            )
            .unwrap();
            let done = unit.commit().unwrap();
            committed.push((done.envelopes()[0].id(), Instant::now()));
        }
        committed
    })
    .await
    .unwrap();
    while store.backlog().await.unwrap().pending > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    relay.await.unwrap().unwrap();
    let accepted = accepted.lock().unwrap();
    committed
        .iter()
        .map(|(id, at)| accepted[id].saturating_duration_since(*at))
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The `per_mille`-th per-mille of sorted values (nearest rank).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut ratios = Vec::new();
    let mut relay_rates = Vec::new();
    let mut direct_rates = Vec::new();
    for round in 0..ROUNDS {
        let (relayed, direct) = throughput_round(round % 2 == 0).await;
        relay_rates.push(EVENTS as f64 / relayed);
        direct_rates.push(EVENTS as f64 / direct);
        ratios.push(direct / relayed);
    }
    println!("relay on the embedded backends: {EVENTS} events, median of {ROUNDS} rounds");
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "  per-round ratios (sorted): {}",
        sorted
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  (b) direct publish           {:>9.0} events/s",
        median(direct_rates)
    );
    println!(
        "      through outbox + relay   {:>9.0} events/s",
        median(relay_rates)
    );
    println!(
        "      throughput ratio         {:>9.2}           (target >= 0.90)",
        median(ratios)
    );

    let mut latencies = latency_run().await;
    latencies.sort();
    println!(
        "  (c) commit-to-published at {LATENCY_RATE_PER_SECOND} events/s ({LATENCY_EVENTS} events): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 20 ms)",
        percentile(&latencies, 500).as_secs_f64() * 1e3,
        percentile(&latencies, 990).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}
