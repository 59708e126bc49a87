//! Two instances of the search service sharing one DynamoDB table of idempotency records
//! (`idempotency.backend = dynamodb`) on the AWS emulator: an event the first indexed,
//! delivered again to the second, is answered there as a duplicate from the table and
//! never reaches the second's index.
//!
//! Each instance gets a queue (and tantivy index) of its own, so the test decides which
//! one receives each delivery; in production the instances share one queue and a
//! duplicate reaches another instance by redelivery, which is what this stands for.

use std::time::Duration;

use dovetail_contracts::policy::{PolicyIssued, PolicyStatus};
use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
use dovetail_events::idempotency::IdempotencyStats;
use dovetail_events::publish::Publisher;
use dovetail_search::config::IdempotencyBackend;
use dovetail_search::document::IndexedDocument;
use dovetail_search::index::{AnyIndex, SearchIndex};
use dovetail_search::{Application, SearchConfig, SearchIdempotency};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::config::EventsBackend;
use dovetail_service_kit::events::Transport;

use crate::support::{policy_snapshot, temp_dir};

/// One instance: its configuration, AWS events under `prefix`, tantivy in a directory of
/// its own, records in the DynamoDB table `table` (or the default for `prefix`).
fn instance(prefix: &str, table: Option<String>) -> SearchConfig {
    let mut config = SearchConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.tantivy_path = temp_dir("search-ddb-idem").join("search");
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = prefix.to_owned();
    config.idempotency.backend = IdempotencyBackend::Dynamodb;
    config.idempotency.table = table;
    config
}

struct Running {
    index: AnyIndex,
    idempotency: SearchIdempotency,
    policy_topic: String,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn run(app: Application, config: &SearchConfig) -> Running {
    let index = app.index().clone();
    let idempotency = app.idempotency().clone();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Running {
        index,
        idempotency,
        policy_topic: config
            .events
            .transport_name(dovetail_contracts::policy::TOPIC),
        shutdown,
        running,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
    }
}

/// Waits until `done` holds of `instance`'s idempotency stats, for at most 30 s.
async fn until_stats(instance: &Running, what: &str, done: impl Fn(&IdempotencyStats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(instance.idempotency.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened: {:?}",
            instance.idempotency.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivered_to_a_second_instance_stops_at_the_shared_dynamodb_records() {
    let clients = super::clients().await;
    let first_prefix = format!("{}-", dovetail_testkit::unique_name("search-idem-a"));
    let second_prefix = format!("{}-", dovetail_testkit::unique_name("search-idem-b"));
    let first_config = instance(&first_prefix, None);
    // The first instance names the table by default, after its prefix; the second is
    // pointed at the same table.
    let table = first_config.idempotency_table();
    assert_eq!(table, format!("{first_prefix}search-service-idempotency"));
    let second_config = instance(&second_prefix, Some(table.clone()));

    // Both start at once: each creates the missing table, and neither minds the other.
    let transport = Transport::Aws(clients.clone());
    let (first, second) = tokio::join!(
        Application::build(first_config.clone(), &transport),
        Application::build(second_config.clone(), &transport),
    );
    let first = run(first.unwrap(), &first_config);
    let second = run(second.unwrap(), &second_config);
    let described = clients
        .dynamodb()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap_or_else(|error| panic!("no table {table}: {error:?}"));
    assert!(described.table().is_some());

    let policy = policy_snapshot("pol-dup", "cust-dup", "home", 1, PolicyStatus::Active);
    let issued = Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", "pol-dup").unwrap(),
        Sequence::new(1).unwrap(),
        &PolicyIssued { policy },
        EventMetadata::default(),
    )
    .unwrap();

    // The first instance gets the event and indexes it.
    publish(&clients, &first.policy_topic, &issued).await;
    until_stats(&first, "the first instance processing the event", |stats| {
        stats.processed() == 1
    })
    .await;
    assert!(
        first.index.get("policy:pol-dup").await.unwrap().is_some(),
        "the first instance did not index the event"
    );

    // The same event reaches the second instance: a duplicate, known from the table.
    publish(&clients, &second.policy_topic, &issued).await;
    until_stats(
        &second,
        "the second instance answering a duplicate",
        |stats| stats.duplicates_from_store() == 1,
    )
    .await;
    let stats = second.idempotency.stats();
    assert_eq!(
        (
            stats.processed(),
            stats.duplicates_from_cache(),
            stats.mismatches()
        ),
        (0, 0, 0),
        "{stats:?}"
    );
    let held: Option<IndexedDocument> = second.index.get("policy:pol-dup").await.unwrap();
    assert!(
        held.is_none(),
        "the duplicate reached the second instance's index: {held:?}"
    );
    assert_eq!(first.idempotency.stats().processed(), 1);

    first.stop().await;
    second.stop().await;
}

async fn publish(clients: &AwsClients, topic: &str, envelope: &Envelope) {
    clients
        .transport("")
        .publisher(topic)
        .await
        .unwrap()
        .publish(envelope)
        .await
        .unwrap();
}
