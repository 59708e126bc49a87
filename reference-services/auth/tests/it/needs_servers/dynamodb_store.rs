//! What only the DynamoDB user store does: the store promises of `store_promises` on a
//! fresh table, the items it keeps (a user item without a secondary index, an email item
//! naming the one user), and two processes on one table agreeing on a taken email.

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_auth::domain::Email;
use dovetail_auth::store::{Registration, UserStore};
use dovetail_outbox::AnyOutboxStore;
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::store_promises::{customer, open_with, pending, store_promises, unique_email};

/// The store on the table `table`, opened as the service opens it.
async fn open_on(table: &str) -> (UserStore, AnyOutboxStore) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(table.to_owned());
    open_with(&storage, &Transport::Aws(super::clients().await)).await
}

/// A store on a fresh table.
async fn open() -> (UserStore, AnyOutboxStore) {
    open_on(&dovetail_testkit::unique_name("auth-users")).await
}

store_promises!(promises, open().await);

#[tokio::test]
async fn a_user_is_a_user_item_and_an_email_item_and_the_table_has_no_index() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("auth-items");
    let (store, _) = open_on(&table).await;
    let email = unique_email("items");
    let (user, change) = customer(&email, "cust-1");
    store
        .register(user.clone(), "$argon2id$items".to_owned(), change)
        .await
        .unwrap();
    let get = |pk: String, sk: &str| {
        clients
            .dynamodb()
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
    };
    let email_item = get(format!("email#{email}"), "email").await.unwrap();
    let email_item = email_item.item().unwrap();
    assert_eq!(
        email_item.get("user_id"),
        Some(&AttributeValue::S(user.id().to_owned()))
    );
    let user_item = get(format!("user#{}", user.id()), "user").await.unwrap();
    let user_item = user_item.item().unwrap();
    assert_eq!(
        user_item.get("version"),
        Some(&AttributeValue::N("1".to_owned()))
    );
    let Some(AttributeValue::S(snapshot)) = user_item.get("snapshot") else {
        panic!("no snapshot in {user_item:?}");
    };
    assert!(
        !snapshot.contains("argon2"),
        "the snapshot (what events carry) holds no hash: {snapshot}"
    );
    let described = clients
        .dynamodb()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    assert!(
        described
            .table()
            .unwrap()
            .global_secondary_indexes()
            .is_empty(),
        "lookups by email go through the email item, not an index"
    );
}

#[tokio::test]
async fn two_stores_on_one_table_agree_that_an_email_is_taken() {
    let table = dovetail_testkit::unique_name("auth-two");
    let (first, outbox) = open_on(&table).await;
    let (second, _) = open_on(&table).await;
    let email = unique_email("two");
    let (ada, change) = customer(&email, "cust-1");
    first
        .register(ada.clone(), "$argon2id$one".to_owned(), change)
        .await
        .unwrap();
    let (again, change) = customer(&email, "cust-2");
    let outcome = second
        .register(again, "$argon2id$two".to_owned(), change)
        .await
        .unwrap();
    assert_eq!(outcome, Registration::EmailTaken);
    let found = second
        .find_by_email(&Email::parse(&email).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user, ada);
    assert_eq!(pending(&outbox).await.len(), 1);
}
