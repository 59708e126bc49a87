//! The search service's benchmark on OpenSearch (not a timed test): event to searchable
//! latency against the refresh interval, and indexing throughput against `_bulk` of the
//! same documents sent straight to OpenSearch, in the same run.
//!
//! Run with the servers up: `cargo xtask servers`, then
//! `DOVETAIL_OPENSEARCH_URL=... cargo bench -p dovetail-search --bench search`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::field_reassign_with_default
)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use dovetail_contracts::policy::{PolicyIssued, PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_search::config::IndexBackend;
use dovetail_search::document::{IndexedDocument, Lineage, SearchDocument};
use dovetail_search::index::opensearch::OpenSearchSettings;
use dovetail_search::index::{Batching, OpenSearchIndex, Scope, SearchIndex, SearchQuery};
use dovetail_search::{Application, SearchConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::events::Transport;
use opensearch::http::request::JsonBody;
use opensearch::{BulkParts, CountParts};
use serde_json::{Value, json};
use time::macros::date;

const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const LATENCY_EVENTS: usize = 100;
const THROUGHPUT_DOCUMENTS: usize = 20_000;

fn snapshot(run: &str, n: usize) -> PolicySnapshot {
    PolicySnapshot {
        policy_id: format!("pol-{run}-{n}"),
        customer_id: format!("cust-{}", n % 50),
        product_line: "home".into(),
        coverage_limit: "10000.00".parse().unwrap(),
        deductible: "250.00".parse().unwrap(),
        premium: "120.00".parse().unwrap(),
        effective_date: date!(2026 - 01 - 01),
        expiry_date: date!(2026 - 12 - 31),
        status: PolicyStatus::Active,
        version: 1,
    }
}

fn envelope(policy: &PolicySnapshot) -> Envelope {
    Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", &policy.policy_id).unwrap(),
        Sequence::new(1).unwrap(),
        &PolicyIssued {
            policy: policy.clone(),
        },
        EventMetadata::default(),
    )
    .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Service {
    bus: EmbeddedBus,
    index: OpenSearchIndex,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(url: &str, alias: &str) -> Service {
    let (app, bus) = build(url, alias).await;
    run(app, bus)
}

async fn build(url: &str, alias: &str) -> (Application, EmbeddedBus) {
    let dir = std::env::temp_dir().join(format!("dovetail-search-bench-{alias}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = SearchConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.backend = IndexBackend::Opensearch;
    config.index.opensearch_url = url.to_owned();
    config.index.opensearch_alias = alias.to_owned();
    config.index.refresh_interval = format!("{}ms", REFRESH_INTERVAL.as_millis());
    config.events.bus_path = dir.join("bus.db");
    config.idempotency.path = Some(dir.join("idempotency.db"));
    let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
    let app = Application::build(config, &Transport::Embedded(bus.clone()))
        .await
        .unwrap();
    (app, bus)
}

fn run(app: Application, bus: EmbeddedBus) -> Service {
    let dovetail_search::index::AnyIndex::OpenSearch(index) = app.index().clone() else {
        panic!("configured for OpenSearch");
    };
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Service {
        bus,
        index,
        shutdown,
        running,
    }
}

async fn count(client: &opensearch::OpenSearch, index: &str) -> u64 {
    client
        .indices()
        .refresh(opensearch::indices::IndicesRefreshParts::Index(&[index]))
        .send()
        .await
        .unwrap();
    let body: Value = client
        .count(CountParts::Index(&[index]))
        // Leave out the service's freshness probe.
        .body(json!({ "query": { "bool": { "must_not": { "prefix": { "id": "probe:" } } } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["count"].as_u64().unwrap_or(0)
}

/// Event published to document found by a search, for events 100 ms apart.
async fn event_to_searchable(url: &str) {
    let service = start(url, &format!("bench-latency-{}", std::process::id())).await;
    let publisher = service.bus.publisher(dovetail_contracts::policy::TOPIC);
    let mut published: HashMap<String, SystemTime> = HashMap::new();
    let mut found: HashMap<String, Duration> = HashMap::new();
    let mut query = SearchQuery::new(Scope::Staff);
    query.limit = 100;
    let mut next_publish = Instant::now();
    let started = Instant::now();
    while found.len() < LATENCY_EVENTS {
        if published.len() < LATENCY_EVENTS && Instant::now() >= next_publish {
            let policy = snapshot("latency", published.len());
            let envelope = envelope(&policy);
            publisher.publish(&envelope).await.unwrap();
            published.insert(
                format!("policy:{}", policy.policy_id),
                SystemTime::from(envelope.occurred_at()),
            );
            next_publish += Duration::from_millis(100);
        }
        let now = SystemTime::now();
        for hit in service.index.search(&query).await.unwrap().hits {
            if let Some(at) = published.get(&hit.document.id) {
                found
                    .entry(hit.document.id)
                    .or_insert_with(|| now.duration_since(*at).unwrap_or_default());
            }
        }
        // The page holds the newest 100: the benchmark publishes exactly that many.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "documents never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut latencies: Vec<Duration> = found.into_values().collect();
    latencies.sort();
    let target = REFRESH_INTERVAL + Duration::from_millis(200);
    let p99 = percentile(&latencies, 0.99);
    println!(
        "event to searchable, {LATENCY_EVENTS} events 100 ms apart, refresh_interval {REFRESH_INTERVAL:?}: \
         p50 {:?}, p90 {:?}, p99 {p99:?}, max {:?} (target p99 <= {target:?}: {})",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        latencies.last().unwrap(),
        if p99 <= target { "met" } else { "NOT met" }
    );
    service.shutdown.cancel();
    service.running.await.unwrap().unwrap();
}

/// The same documents three ways: events through the bus and the service, concurrent
/// writes through the service's batching writer, and `_bulk` straight to OpenSearch.
async fn throughput(url: &str) {
    let client = OpenSearchIndex::client(url).unwrap();
    let pid = std::process::id();
    let documents: Vec<SearchDocument> = (0..THROUGHPUT_DOCUMENTS)
        .map(|n| {
            let policy = snapshot("throughput", n);
            SearchDocument::from_policy(&policy, Lineage::of(&envelope(&policy)))
        })
        .collect();

    // 1. Direct _bulk, 500 a request, external versions, into an index with the mapping.
    let settings = |alias: String| OpenSearchSettings {
        alias,
        refresh_interval: format!("{}ms", REFRESH_INTERVAL.as_millis()),
        replicas: 0,
    };
    let mut direct_started = Instant::now();
    let direct = OpenSearchIndex::open(client.clone(), &settings(format!("bench-direct-{pid}")))
        .await
        .unwrap();
    // A first pass warms the node up (and is overwritten by the measured one, whose
    // versions are one higher).
    for pass in 0..2u64 {
        if pass == 1 {
            direct_started = Instant::now();
        }
        for chunk in documents.chunks(500) {
            let mut body: Vec<JsonBody<Value>> = Vec::with_capacity(chunk.len() * 2);
            for document in chunk {
                body.push(json!({ "index": { "_id": document.id, "version": document.version + pass, "version_type": "external" } }).into());
                body.push(
                    IndexedDocument::Live(document.clone())
                        .to_stored_json()
                        .into(),
                );
            }
            let response = client
                .bulk(BulkParts::Index(direct.alias()))
                .body(body)
                .send()
                .await
                .unwrap();
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["errors"], false, "{answer}");
        }
    }
    let direct_elapsed = direct_started.elapsed();
    assert_eq!(
        count(&client, direct.alias()).await,
        THROUGHPUT_DOCUMENTS as u64
    );
    let direct_rate = THROUGHPUT_DOCUMENTS as f64 / direct_elapsed.as_secs_f64();

    // 2. The service's writer under as many concurrent writers as handlers in flight.
    let mut batched_rates = Vec::new();
    for writers in [16, 256] {
        let batched = Batching::new(
            OpenSearchIndex::open(
                client.clone(),
                &settings(format!("bench-batched-{writers}-{pid}")),
            )
            .await
            .unwrap(),
        );
        let started = Instant::now();
        // A shared stack of work for the writers.
        let work = std::sync::Arc::new(tokio::sync::Mutex::new(documents.clone()));
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (batched, work) = (batched.clone(), std::sync::Arc::clone(&work));
                tokio::spawn(async move {
                    loop {
                        let next = work.lock().await.pop();
                        let Some(document) = next else { break };
                        batched.upsert(document).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let batched_elapsed = started.elapsed();
        assert_eq!(
            count(&client, batched.inner().alias()).await,
            THROUGHPUT_DOCUMENTS as u64
        );
        batched_rates.push((
            writers,
            THROUGHPUT_DOCUMENTS as f64 / batched_elapsed.as_secs_f64(),
        ));
    }

    // 3. Events through the embedded bus and the service's consumer: published first
    //    (the bus's own publishing is not the search service's), then consumed.
    let (app, bus) = build(url, &format!("bench-events-{pid}")).await;
    let publisher = bus.publisher(dovetail_contracts::policy::TOPIC);
    let started = Instant::now();
    for n in 0..THROUGHPUT_DOCUMENTS {
        publisher
            .publish(&envelope(&snapshot("throughput", n)))
            .await
            .unwrap();
    }
    let published = started.elapsed();
    let service = run(app, bus);
    let started = Instant::now();
    loop {
        let indexed = count(&client, service.index.alias()).await;
        if indexed >= THROUGHPUT_DOCUMENTS as u64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {indexed} indexed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_elapsed = started.elapsed();
    let events_rate = THROUGHPUT_DOCUMENTS as f64 / events_elapsed.as_secs_f64();
    service.shutdown.cancel();
    service.running.await.unwrap().unwrap();
    let bus_rate = bus_alone(&service.bus).await;

    println!(
        "indexing {THROUGHPUT_DOCUMENTS} documents (target ratio to direct _bulk >= 0.8): \
         direct _bulk (500 a request) {direct_rate:.0}/s in {direct_elapsed:?}"
    );
    for (writers, rate) in batched_rates {
        println!(
            "  the service's batching writer, {writers} concurrent writers: {rate:.0}/s, ratio {:.2}",
            rate / direct_rate
        );
    }
    println!(
        "  events already on the embedded bus through the service's consumer (256 in flight): \
         {events_rate:.0}/s, ratio {:.2} (publishing them onto the bus took {published:?}, {:.0}/s)",
        events_rate / direct_rate,
        THROUGHPUT_DOCUMENTS as f64 / published.as_secs_f64()
    );
    println!(
        "  the same bus consumer (256 in flight) with a handler that does nothing: {bus_rate:.0}/s"
    );
}

/// How fast the embedded bus delivers the same number of events to a handler that does
/// nothing: the ceiling of the event path, whatever the index.
async fn bus_alone(bus: &EmbeddedBus) -> f64 {
    use dovetail_events::bus::{
        BusConsumer, BusConsumerConfig, BusSubscription, SubscriptionFilter,
    };
    use dovetail_events::consumer::{Delivery, HandlerError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let topic = "bench-bus-alone";
    bus.create_topic(topic).await.unwrap();
    bus.subscribe(BusSubscription {
        name: topic.into(),
        topic: topic.into(),
        filter: SubscriptionFilter::all(),
        max_receives: 5,
    })
    .await
    .unwrap();
    let publisher = bus.publisher(topic);
    for n in 0..THROUGHPUT_DOCUMENTS {
        publisher
            .publish(&envelope(&snapshot("bus", n)))
            .await
            .unwrap();
    }
    let handled = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = Shutdown::new();
    let mut config = BusConsumerConfig::new(topic);
    config.max_in_flight = 256;
    let started = Instant::now();
    let consumer = {
        let (handled, stop) = (std::sync::Arc::clone(&handled), stop.clone());
        tokio::spawn(BusConsumer::new(bus.clone(), config).run(
            tower::service_fn(move |_: Delivery| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), HandlerError>(()) }
            }),
            async move { stop.cancelled().await },
        ))
    };
    while handled.load(Ordering::SeqCst) < THROUGHPUT_DOCUMENTS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = THROUGHPUT_DOCUMENTS as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    consumer.await.unwrap().unwrap();
    rate
}

fn main() {
    let Ok(url) = std::env::var("DOVETAIL_OPENSEARCH_URL") else {
        eprintln!(
            "the search benchmark needs OpenSearch: start the servers with `cargo xtask servers` \
             and set DOVETAIL_OPENSEARCH_URL from its output"
        );
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        event_to_searchable(&url).await;
        throughput(&url).await;
    });
}
