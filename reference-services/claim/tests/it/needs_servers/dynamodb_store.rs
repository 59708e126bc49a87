//! The claim store's promises (`store_promises`) on a fresh DynamoDB table.

use dovetail_claim::store::ClaimStore;
use dovetail_outbox::AnyOutboxStore;
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::store_promises::{open_with, store_promises};

/// A store on a fresh table, opened as the service opens it.
async fn open() -> (ClaimStore, AnyOutboxStore) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(dovetail_testkit::unique_name("claim-store"));
    open_with(&storage, &Transport::Aws(super::clients().await)).await
}

store_promises!(promises, open().await);
