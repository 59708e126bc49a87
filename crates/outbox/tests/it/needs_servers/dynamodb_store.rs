//! `DynamoDbOutboxStore` against the AWS emulator: the generic store contract (a fresh
//! table per test), the table's creation with its secondary indexes, TTL marks on published records, and a relay draining 50 events of 5
//! aggregates through a `MemoryPublisher` in per-aggregate order.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use dovetail_events::envelope::EventMetadata;
use dovetail_events::publish::MemoryPublisher;
use dovetail_outbox::dynamodb::{
    DynamoDbOutbox, DynamoDbOutboxConfig, DynamoDbOutboxStore, SecondaryIndex,
};
use dovetail_outbox::relay::{Relay, RelayConfig};
use dovetail_outbox::{ExpectedVersion, OutboxStore, Position};
use dovetail_testkit::aws::{TableSpec, fresh_table};

use crate::store_contract::{AnyStoreHarness, Harness, store_contract_tests};
use crate::support::{changed, policy, source};

/// A fresh table shaped like `create_table_if_missing` makes it, and an outbox on it.
pub(crate) async fn fresh_outbox(prefix: &str) -> DynamoDbOutbox {
    let aws = dovetail_testkit::aws().await;
    fresh_outbox_on(aws.dynamodb(), prefix).await
}

/// The same, on a client of the caller's.
pub(crate) async fn fresh_outbox_on(
    client: aws_sdk_dynamodb::Client,
    prefix: &str,
) -> DynamoDbOutbox {
    let spec = TableSpec {
        stream: Some(StreamViewType::NewImage),
        ttl_attribute: Some("expires_at".to_owned()),
        ..TableSpec::default()
    };
    let table = fresh_table(&client, prefix, &spec).await;
    DynamoDbOutbox::new(client, DynamoDbOutboxConfig::new(table, source()))
}

/// The DynamoDB store, fed by units of work.
pub(crate) struct DynamoDbHarness {
    outbox: DynamoDbOutbox,
    store: DynamoDbOutboxStore,
}

impl DynamoDbHarness {
    pub(crate) async fn new() -> Self {
        let outbox = fresh_outbox("outbox-contract").await;
        let store = outbox.store("contract.relay");
        Self { outbox, store }
    }
}

impl Harness for DynamoDbHarness {
    type Store = DynamoDbOutboxStore;

    fn store(&self) -> &Self::Store {
        &self.store
    }

    async fn commit(&self, policies: &[&str]) -> Vec<Position> {
        let mut uow = self.outbox.unit_of_work();
        for id in policies {
            uow.append(
                policy(id),
                ExpectedVersion::Any,
                &changed(id, "contract"),
                EventMetadata::default(),
            )
            .unwrap();
        }
        let committed = uow.commit().await.unwrap();
        self.store.positions_of(&committed)
    }
}

store_contract_tests!(contract, DynamoDbHarness::new().await);
store_contract_tests!(
    contract_any,
    AnyStoreHarness::new(DynamoDbHarness::new().await)
);

/// Reads every outbox item of the table (any state).
async fn outbox_items(outbox: &DynamoDbOutbox) -> Vec<HashMap<String, AttributeValue>> {
    let client = dovetail_testkit::aws().await.dynamodb();
    let scanned = client
        .scan()
        .table_name(&outbox.config().table)
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    scanned
        .items()
        .iter()
        .filter(|item| matches!(item.get("pk"), Some(AttributeValue::S(pk)) if pk.starts_with("outbox#")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn create_table_if_missing_is_idempotent_and_enables_ttl() {
    let aws = dovetail_testkit::aws().await;
    let client = aws.dynamodb();
    let table = dovetail_testkit::unique_name("outbox-created");
    let outbox = DynamoDbOutbox::new(client.clone(), DynamoDbOutboxConfig::new(&table, source()));
    outbox.create_table_if_missing().await.unwrap();
    outbox.create_table_if_missing().await.unwrap();

    let described = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let description = described.table().unwrap();
    assert_eq!(description.key_schema().len(), 2);
    let stream = description.stream_specification().unwrap();
    assert!(stream.stream_enabled());
    assert_eq!(stream.stream_view_type(), Some(&StreamViewType::NewImage));
    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|ttl| ttl.attribute_name()),
        Some("expires_at")
    );

    // It works: a commit and a fetch.
    let mut uow = outbox.unit_of_work();
    uow.append(
        policy("p"),
        ExpectedVersion::New,
        &changed("p", "x"),
        EventMetadata::default(),
    )
    .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(
        outbox.store("relay").fetch_ready(10).await.unwrap().len(),
        1
    );

    // A table with other keys is refused, with a message saying so.
    let mut other = DynamoDbOutboxConfig::new(&table, source());
    other.sort_key = "range".to_owned();
    let refused = DynamoDbOutbox::new(client, other)
        .create_table_if_missing()
        .await
        .unwrap_err();
    // What is wrong is the error's source; the chain reads as one message.
    let message = format!(
        "{refused}: {}",
        std::error::Error::source(&refused)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(message.contains("sort key `range`"), "{message}");
}

#[tokio::test]
async fn secondary_indexes_are_created_with_the_table_and_added_to_an_existing_one() {
    let aws = dovetail_testkit::aws().await;
    let client = aws.dynamodb();
    let table = dovetail_testkit::unique_name("outbox-indexed");
    let by_customer = SecondaryIndex::new("by-customer", "customer_id", "policy_id");
    let config = DynamoDbOutboxConfig::new(&table, source()).with_secondary_index(by_customer);
    DynamoDbOutbox::new(client.clone(), config.clone())
        .create_table_if_missing()
        .await
        .unwrap();
    assert_eq!(index_names(&client, &table).await, ["by-customer"]);

    // A later version of the service wants one more, on an attribute already defined.
    let by_status = SecondaryIndex::new("by-status", "status", "policy_id");
    let wider = config.with_secondary_index(by_status);
    let outbox = DynamoDbOutbox::new(client.clone(), wider);
    outbox.create_table_if_missing().await.unwrap();
    outbox.create_table_if_missing().await.unwrap();
    assert_eq!(
        index_names(&client, &table).await,
        ["by-customer", "by-status"]
    );

    // The index answers queries on the service's own items.
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("policy#p-1".into()))
        .item("sk", AttributeValue::S("policy".into()))
        .item("status", AttributeValue::S("active".into()))
        .item("policy_id", AttributeValue::S("p-1".into()))
        .send()
        .await
        .unwrap();
    let found = client
        .query()
        .table_name(&table)
        .index_name("by-status")
        .key_condition_expression("#s = :s")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":s", AttributeValue::S("active".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(found.count(), 1);
}

/// The names of `table`'s global secondary indexes, sorted; each one active.
async fn index_names(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let mut names: Vec<String> = described
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            assert_eq!(
                index.index_status(),
                Some(&aws_sdk_dynamodb::types::IndexStatus::Active),
                "{index:?}"
            );
            index.index_name().unwrap_or_default().to_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn published_records_get_a_ttl_and_are_ignored_until_deleted() {
    let harness = DynamoDbHarness::new().await;
    let p = harness.commit(&["a", "b"]).await;
    let store = harness.store();
    let lease = store
        .acquire_lease("relay-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    store.mark_published(&lease, &p[..1]).await.unwrap();

    let items = outbox_items(&harness.outbox).await;
    assert_eq!(
        items.len(),
        2,
        "the emulator keeps published items until TTL"
    );
    let published: Vec<_> = items
        .iter()
        .filter(|item| item.get("state") == Some(&AttributeValue::S("published".into())))
        .collect();
    assert_eq!(published.len(), 1);
    let Some(AttributeValue::N(expires_at)) = published[0].get("expires_at") else {
        panic!("a published item carries expires_at: {:?}", published[0]);
    };
    let expires_at: u64 = expires_at.parse().unwrap();
    let in_a_day = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 24 * 3600;
    assert!(
        expires_at.abs_diff(in_a_day) < 60,
        "{expires_at} vs {in_a_day}"
    );

    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.pending, 1);
    assert_eq!(store.fetch_ready(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn sharded_records_of_many_aggregates_come_back_in_commit_order() {
    let harness = DynamoDbHarness::new().await;
    let mut positions = Vec::new();
    for round in 0..3 {
        let ids: Vec<String> = (0..8).map(|i| format!("p{}", (i + round) % 8)).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        positions.extend(harness.commit(&ids).await);
    }
    let records = harness.store().fetch_ready(1_000).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        positions
    );
    let limited = harness.store().fetch_ready(5).await.unwrap();
    assert_eq!(
        limited.iter().map(|r| r.position).collect::<Vec<_>>(),
        positions[..5]
    );
}

/// 50 events on 5 aggregates through a relay into a `MemoryPublisher`: all published,
/// each aggregate in sequence order, every item marked with a TTL.
#[tokio::test]
async fn a_relay_drains_the_dynamodb_outbox_in_order() {
    let outbox = fresh_outbox("outbox-relay").await;
    for round in 0..10 {
        let mut uow = outbox.unit_of_work();
        for aggregate in 0..5 {
            let id = format!("pol-{aggregate}");
            let expected = if round == 0 {
                ExpectedVersion::New
            } else {
                ExpectedVersion::Exactly(round)
            };
            uow.append(
                policy(&id),
                expected,
                &changed(&id, "relay"),
                EventMetadata::default(),
            )
            .unwrap();
        }
        uow.commit().await.unwrap();
    }
    let store = outbox.store("relay-test");
    assert_eq!(store.backlog().await.unwrap().pending, 50);

    let publisher = MemoryPublisher::new();
    let mut config = RelayConfig::default();
    config.owner = "relay-1".into();
    config.batch_size = 7;
    config.poll_interval = Duration::from_millis(20);
    config.wake = Some(outbox.commits());
    let relay = Relay::new(store.clone(), publisher.clone(), config);
    let watcher = store.clone();
    let drained = async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if watcher.backlog().await.unwrap().pending == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the backlog did not drain"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    Box::pin(relay.run(drained)).await.unwrap();

    let published = publisher.published();
    let mut by_aggregate: HashMap<String, Vec<u64>> = HashMap::new();
    for envelope in &published {
        by_aggregate
            .entry(envelope.aggregate_id().as_str().to_owned())
            .or_default()
            .push(envelope.sequence().get());
    }
    assert_eq!(by_aggregate.len(), 5);
    for (aggregate, sequences) in &by_aggregate {
        let mut deduplicated = sequences.clone();
        deduplicated.dedup();
        assert_eq!(
            deduplicated,
            (1..=10).collect::<Vec<_>>(),
            "{aggregate} out of order: {sequences:?}"
        );
    }

    let items = outbox_items(&outbox).await;
    assert_eq!(items.len(), 50);
    assert!(items.iter().all(|item| {
        item.get("state") == Some(&AttributeValue::S("published".into()))
            && matches!(item.get("expires_at"), Some(AttributeValue::N(_)))
    }));
}
