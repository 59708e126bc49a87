//! What only the DynamoDB policy store does: the store promises of `store_promises` on a
//! fresh table, reopening a table, adding the index to an older table, and an item
//! changed by hand.

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_events::envelope::Source;
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion};
use dovetail_policy::store::{PolicyStore, PolicyWrite, StoreError};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::store_promises::{new_policy, open_with, pending, store_promises};

/// The store on the table `table`, opened as the service opens it.
async fn open_on(table: &str) -> (PolicyStore, AnyOutboxStore) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(table.to_owned());
    open_with(&storage, &Transport::Aws(super::clients().await)).await
}

/// A store on a fresh table.
async fn open() -> (PolicyStore, AnyOutboxStore) {
    open_on(&dovetail_testkit::unique_name("policy-store")).await
}

store_promises!(promises, open().await);

#[tokio::test]
async fn opening_an_existing_table_again_changes_nothing() {
    let table = dovetail_testkit::unique_name("policy-reopen");
    let (first, _) = open_on(&table).await;
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    first.write(write).await.unwrap();
    let (again, _) = open_on(&table).await;
    assert!(again.get(&id).await.unwrap().is_some());
    assert_eq!(
        again
            .list_by_customer("cust-1", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_table_made_before_the_index_gets_it_on_open() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-no-index");
    let source = Source::parse("policy-service").unwrap();
    // The outbox alone makes the table without the service's index.
    dovetail_outbox::dynamodb::DynamoDbOutbox::new(
        clients.dynamodb().clone(),
        dovetail_outbox::dynamodb::DynamoDbOutboxConfig::new(&table, source.clone()),
    )
    .create_table_if_missing()
    .await
    .unwrap();
    let (store, _) = open_on(&table).await;
    let described = clients
        .dynamodb()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let indexes: Vec<_> = described
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|index| index.index_name())
        .collect();
    assert_eq!(indexes, [dovetail_policy::store::dynamodb::BY_CUSTOMER]);
    store.write(new_policy("cust-1")).await.unwrap();
    assert_eq!(
        store
            .list_by_customer("cust-1", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_policy_item_changed_by_hand_is_reported_as_a_conflict_with_its_version() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-by-hand");
    let (store, outbox) = open_on(&table).await;
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    store.write(write.clone()).await.unwrap();
    // Someone sets the policy item's version by hand: the outbox's version item (still
    // at 1) would let the next write through, the policy item's own condition does not.
    clients
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("policy#{id}")))
        .key("sk", AttributeValue::S("policy".to_owned()))
        .update_expression("SET #version = :five")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":five", AttributeValue::N("5".to_owned()))
        .send()
        .await
        .unwrap();
    let (issued, issue) = write.policy.issue().unwrap();
    let error = store
        .write(PolicyWrite {
            policy: issued,
            change: issue,
            expected: ExpectedVersion::Exactly(1),
            request: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionConflict { id: conflicted, current: Some(5) } if *conflicted == id),
        "{error:?}"
    );
    assert_eq!(
        pending(&outbox).await.len(),
        1,
        "the refused write published nothing"
    );
}
