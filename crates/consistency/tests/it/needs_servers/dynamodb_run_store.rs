//! The DynamoDB run store on the AWS emulator: the same lease and records as the SQLite
//! one, and two runners sharing the table never run at once.

use dovetail_consistency::DynamoDbRunStore;
use dovetail_testkit::aws::{TableSpec, fresh_table};

use crate::runner::{keeps_runs_and_a_fenced_lease, two_runners_never_run_at_once};

async fn table() -> (aws_sdk_dynamodb::Client, String) {
    let client = dovetail_testkit::aws().await.dynamodb();
    let table = fresh_table(&client, "consistency-runs", &TableSpec::default()).await;
    (client, table)
}

#[tokio::test]
async fn the_dynamodb_run_store_keeps_runs_and_a_fenced_lease() {
    let (client, table) = table().await;
    keeps_runs_and_a_fenced_lease(|| DynamoDbRunStore::new(client.clone(), &table)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_sharing_a_dynamodb_table_never_run_at_once() {
    let (client, table) = table().await;
    two_runners_never_run_at_once(|| DynamoDbRunStore::new(client.clone(), &table)).await;
}

#[tokio::test]
async fn the_table_is_created_when_missing_and_opening_it_again_is_harmless() {
    let client = dovetail_testkit::aws().await.dynamodb();
    let name = dovetail_testkit::unique_name("consistency-runs-created");
    let store = DynamoDbRunStore::new(client.clone(), &name);
    store.create_table_if_missing().await.unwrap();
    store.create_table_if_missing().await.unwrap();
    keeps_runs_and_a_fenced_lease(|| DynamoDbRunStore::new(client.clone(), &name)).await;
}
