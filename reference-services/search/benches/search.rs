//! The search service's benchmark on OpenSearch (not a timed test): event to searchable
//! latency against the refresh interval; indexing throughput against `_bulk` of the same
//! documents sent straight to OpenSearch, in the same run; and the SQS event path (SNS to
//! the service's queue, its consumer, the idempotency records, the batching writer,
//! OpenSearch) against an SQS consumer whose handler does nothing, over the same number of
//! messages in the same run.
//!
//! Run with the servers up (`cargo xtask servers > /tmp/servers.log &`), in one shell:
//! `eval "$(grep ^export /tmp/servers.log)"; cargo bench -p dovetail-search --bench search`.
//! Arguments choose parts: `-- latency`, `-- throughput`, `-- sqs`, `-- tantivy` (the
//! batching writer on tantivy, one batch at a time against two) (default: all).

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

use aws_sdk_sqs::types::QueueAttributeName;
use dovetail_contracts::policy::{PolicyIssued, PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_events::transport::{Subscription, TypeFilter};
use dovetail_search::config::{IdempotencyBackend, IndexBackend};
use dovetail_search::document::{IndexedDocument, Lineage, SearchDocument};
use dovetail_search::index::opensearch::OpenSearchSettings;
use dovetail_search::index::{
    Batching, OpenSearchIndex, Scope, SearchIndex, SearchQuery, TantivyIndex,
};
use dovetail_search::{Application, SearchConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::config::EventsBackend;
use dovetail_service_kit::events::Transport;
use opensearch::http::request::JsonBody;
use opensearch::{BulkParts, CountParts};
use serde_json::{Value, json};
use time::macros::date;

const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
const LATENCY_EVENTS: usize = 100;
const THROUGHPUT_DOCUMENTS: usize = 20_000;
/// Events per round of the SQS measure.
const SQS_EVENTS: usize = 5_000;
/// Rounds of the SQS measure; it prints their medians.
const SQS_ROUNDS: usize = 5;
/// Handlers in flight, as the service's default `consumer_in_flight`.
const IN_FLIGHT: usize = 256;

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
        let batched_elapsed = write_concurrently(&batched, &documents, writers).await;
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

/// The SQS event path: [`SQS_EVENTS`] policy events published to SNS and waiting on a
/// queue, consumed by an SQS consumer whose handler does nothing (the ceiling of the path)
/// and by the search service with its idempotency records in DynamoDB (as on AWS) and in
/// SQLite, [`SQS_ROUNDS`] rounds of each, interleaved; medians.
async fn sqs_throughput(url: &str, clients: &AwsClients) {
    let mut alone = Vec::new();
    let mut records_alone = Vec::new();
    let mut dynamodb = Vec::new();
    let mut sqlite = Vec::new();
    let mut publishing = Vec::new();
    for round in 0..SQS_ROUNDS {
        let (rate, published) = sqs_alone(clients, round).await;
        alone.push(rate);
        publishing.push(published);
        records_alone.push(dynamodb_records_alone(clients).await);
        let (rate, published) =
            sqs_service(url, clients, IdempotencyBackend::Dynamodb, round).await;
        dynamodb.push(rate);
        publishing.push(published);
        let (rate, published) = sqs_service(url, clients, IdempotencyBackend::Sqlite, round).await;
        sqlite.push(rate);
        publishing.push(published);
    }
    let alone_median = median(&alone);
    println!(
        "SQS event path, {SQS_EVENTS} policy events waiting on the queue (published to SNS), \
         {IN_FLIGHT} in flight, median of {SQS_ROUNDS} rounds [each round]:"
    );
    println!(
        "  SQS consumer, handler that does nothing: {alone_median:.0}/s {}",
        rounds(&alone)
    );
    println!(
        "  the DynamoDB idempotency records alone (claim and complete per key, {IN_FLIGHT} at \
         once, no SQS): {:.0}/s {}",
        median(&records_alone),
        rounds(&records_alone)
    );
    for (records, rates) in [("DynamoDB", &dynamodb), ("SQLite", &sqlite)] {
        let rate = median(rates);
        println!(
            "  the search service (SQS consumer, idempotency records in {records}, batching \
             writer, OpenSearch): {rate:.0}/s {}, ratio {:.2}",
            rounds(rates),
            rate / alone_median
        );
    }
    println!(
        "  (publishing them to SNS: {:.0}/s, median)",
        median(&publishing)
    );
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn rounds(values: &[f64]) -> String {
    let each: Vec<String> = values.iter().map(|value| format!("{value:.0}")).collect();
    format!("[{}]", each.join(", "))
}

/// Publishes [`SQS_EVENTS`] policy events of `run` to `topic` (eight `PublishBatch` calls
/// at a time), then waits until the queue `queue` holds them all; answers the publishing
/// rate.
async fn publish_to_sns(clients: &AwsClients, topic: &str, queue: &str, run: &str) -> f64 {
    let publisher = std::sync::Arc::new(clients.transport("").publisher(topic).await.unwrap());
    let envelopes: Vec<Envelope> = (0..SQS_EVENTS)
        .map(|n| envelope(&snapshot(run, n)))
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = envelopes
        .chunks(SQS_EVENTS.div_ceil(8))
        .map(|chunk| {
            let (publisher, chunk) = (std::sync::Arc::clone(&publisher), chunk.to_vec());
            tokio::spawn(async move {
                for result in publisher.publish_batch(&chunk).await {
                    result.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let published = SQS_EVENTS as f64 / started.elapsed().as_secs_f64();
    let queue_url = clients
        .sqs()
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let waiting = Instant::now();
    loop {
        let attributes = clients
            .sqs()
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap();
        let depth: usize = attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|depth| depth.parse().ok())
            .unwrap_or(0);
        if depth >= SQS_EVENTS {
            return published;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "only {depth} of {SQS_EVENTS} messages reached {queue}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An SQS consumer with the service's queue settings and concurrency, whose handler does
/// nothing, over [`SQS_EVENTS`] messages: (rate, publishing rate).
async fn sqs_alone(clients: &AwsClients, round: usize) -> (f64, f64) {
    use dovetail_events::consumer::{Delivery, HandlerError};
    use std::sync::atomic::{AtomicUsize, Ordering};

    let prefix = format!("{}-", dovetail_testkit::unique_name("bench-sqs-alone"));
    let topic = format!("{prefix}{}", dovetail_contracts::policy::TOPIC);
    let subscription = Subscription::new("alone")
        .to_topic(
            dovetail_contracts::policy::TOPIC,
            TypeFilter::prefixes(["policy."]),
        )
        .with_max_in_flight(IN_FLIGHT);
    let queue = format!("{prefix}{}", subscription.queue_name());
    let source = clients
        .transport(&prefix)
        .subscribe(&subscription)
        .await
        .unwrap();
    let published = publish_to_sns(clients, &topic, &queue, &format!("alone-{round}")).await;
    let handled = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = Shutdown::new();
    let started = Instant::now();
    let consumer = {
        let handled = std::sync::Arc::clone(&handled);
        let stopped = stop.clone();
        tokio::spawn(source.run(
            tower::service_fn(move |_: Delivery| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), HandlerError>(()) }
            }),
            async move { stopped.cancelled().await },
        ))
    };
    while handled.load(Ordering::SeqCst) < SQS_EVENTS {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} handled",
            handled.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = SQS_EVENTS as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    consumer.await.unwrap().unwrap();
    (rate, published)
}

/// What the idempotency layer asks of the DynamoDB records for each new event (a claim,
/// then the completion: two conditional writes), for [`SQS_EVENTS`] keys, [`IN_FLIGHT`]
/// at once, in a fresh table: keys per second.
async fn dynamodb_records_alone(clients: &AwsClients) -> f64 {
    use dovetail_events::idempotency::{
        Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner, StoredOutcome,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};

    let table = dovetail_testkit::unique_name("bench-records");
    let store = std::sync::Arc::new(
        dovetail_search::idempotency::open_dynamodb(clients, &table)
            .await
            .unwrap(),
    );
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (store, next) = (std::sync::Arc::clone(&store), std::sync::Arc::clone(&next));
            tokio::spawn(async move {
                let owner = LeaseOwner::random();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= SQS_EVENTS {
                        break;
                    }
                    let key = IdempotencyKey::new(format!("evt-{n}")).unwrap();
                    let claim = store
                        .try_claim(
                            &key,
                            &Fingerprint::of(key.as_str().as_bytes()),
                            &owner,
                            Duration::from_secs(30),
                        )
                        .await
                        .unwrap();
                    let lease = claim.lease().expect("a fresh key is claimed");
                    store
                        .complete(
                            lease,
                            StoredOutcome::from(""),
                            Duration::from_secs(14 * 24 * 3600),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    SQS_EVENTS as f64 / started.elapsed().as_secs_f64()
}

/// The search service on SQS and OpenSearch, its idempotency records in `records`, over
/// [`SQS_EVENTS`] events waiting on its queue, until its idempotency layer recorded every
/// one processed (each written to OpenSearch first): (rate, publishing rate).
async fn sqs_service(
    url: &str,
    clients: &AwsClients,
    records: IdempotencyBackend,
    round: usize,
) -> (f64, f64) {
    let name = dovetail_testkit::unique_name("bench-sqs");
    let mut config = SearchConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.backend = IndexBackend::Opensearch;
    config.index.opensearch_url = url.to_owned();
    config.index.opensearch_alias = name.clone();
    config.index.refresh_interval = format!("{}ms", REFRESH_INTERVAL.as_millis());
    config.index.tantivy_path = std::env::temp_dir().join(&name);
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = format!("{name}-");
    config.idempotency.backend = records;
    let app = Application::build(config.clone(), &Transport::Aws(clients.clone()))
        .await
        .unwrap();
    let published = publish_to_sns(
        clients,
        &config
            .events
            .transport_name(dovetail_contracts::policy::TOPIC),
        &config
            .events
            .transport_name(dovetail_search::config::EVENTS_QUEUE),
        &format!("service-{round}"),
    )
    .await;
    let dovetail_search::index::AnyIndex::OpenSearch(index) = app.index().clone() else {
        panic!("configured for OpenSearch");
    };
    let idempotency = app.idempotency().clone();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let started = Instant::now();
    while idempotency.stats().processed() < SQS_EVENTS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {} processed: {:?}",
            idempotency.stats().processed(),
            idempotency.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = SQS_EVENTS as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    running.await.unwrap().unwrap();
    let client = OpenSearchIndex::client(url).unwrap();
    assert_eq!(count(&client, index.alias()).await, SQS_EVENTS as u64);
    let _ = std::fs::remove_dir_all(&config.index.tantivy_path);
    (rate, published)
}

/// Writes `documents` through `batched` from `writers` concurrent tasks sharing one
/// stack of work, as the consumer's handlers in flight do; how long it took.
async fn write_concurrently<I: SearchIndex + Clone + 'static>(
    batched: &Batching<I>,
    documents: &[SearchDocument],
    writers: usize,
) -> Duration {
    let work = std::sync::Arc::new(tokio::sync::Mutex::new(documents.to_vec()));
    let started = Instant::now();
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
    started.elapsed()
}

/// tantivy through the batching writer (256 concurrent writers, as the consumer's handlers
/// in flight) with one batch at a time against two, and against `upsert_batch` of 500 at
/// a time from one caller (the baseline): medians of interleaved rounds, each on a fresh
/// index directory.
async fn tantivy_throughput() {
    const ROUNDS: usize = 3;
    let documents: Vec<SearchDocument> = (0..THROUGHPUT_DOCUMENTS)
        .map(|n| {
            let policy = snapshot("tantivy", n);
            SearchDocument::from_envelope(&envelope(&policy)).unwrap()
        })
        .collect();
    let fresh = |name: &str| {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-search-bench-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        (TantivyIndex::open(&dir).unwrap(), dir)
    };
    let (mut direct, mut one, mut two) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (index, dir) = fresh(&format!("direct-{round}"));
        let started = Instant::now();
        for chunk in documents.chunks(500) {
            let batch = chunk.iter().cloned().map(IndexedDocument::Live).collect();
            index.upsert_batch(batch).await.unwrap();
        }
        direct.push(THROUGHPUT_DOCUMENTS as f64 / started.elapsed().as_secs_f64());
        drop(index);
        let _ = std::fs::remove_dir_all(dir);
        for (parallel, rates) in [(1, &mut one), (2, &mut two)] {
            let (index, dir) = fresh(&format!("batched-{parallel}-{round}"));
            let batched = Batching::with_parallel_batches(index, parallel);
            let elapsed = write_concurrently(&batched, &documents, IN_FLIGHT).await;
            rates.push(THROUGHPUT_DOCUMENTS as f64 / elapsed.as_secs_f64());
            drop(batched);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (direct, one, two) = (median(&mut direct), median(&mut one), median(&mut two));
    println!(
        "tantivy, {THROUGHPUT_DOCUMENTS} documents, medians of {ROUNDS} rounds: upsert_batch of \
         500 from one caller {direct:.0}/s; the batching writer with {IN_FLIGHT} writers, one \
         batch at a time {one:.0}/s (ratio {:.2}), two at a time {two:.0}/s (ratio {:.2})",
        one / direct,
        two / direct
    );
}

fn main() {
    let Ok(url) = std::env::var("DOVETAIL_OPENSEARCH_URL") else {
        eprintln!(
            "the search benchmark needs OpenSearch: start the servers with `cargo xtask servers` \
             and set DOVETAIL_OPENSEARCH_URL from its output"
        );
        std::process::exit(2);
    };
    // `cargo bench` passes `--bench`; other arguments name the parts to run.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let wants = |part: &str| parts.is_empty() || parts.iter().any(|wanted| wanted == part);
    let aws = wants("sqs").then(|| {
        AwsClients::from_env().unwrap_or_else(|error| {
            eprintln!(
                "the SQS part of the search benchmark needs the AWS emulator: start the servers \
                 with `cargo xtask servers` and export its variables ({error}); or run only \
                 `-- latency throughput`"
            );
            std::process::exit(2);
        })
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if wants("latency") {
            event_to_searchable(&url).await;
        }
        if wants("throughput") {
            throughput(&url).await;
        }
        if wants("tantivy") {
            tantivy_throughput().await;
        }
        if let Some(clients) = aws {
            sqs_throughput(&url, &clients).await;
        }
    });
}
