//! The DynamoDB idempotency store against the AWS emulator: the contract suite, the table
//! helper, and the "processed" marker inside the caller's TransactWriteItems.

use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, CancellationReason, TransactWriteItem, Update};
use dovetail_events::idempotency::{
    ClaimOutcome, DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore, Fingerprint,
    IdempotencyError, IdempotencyKey, IdempotencyStore, LeaseOwner, MarkOutcome, StoredOutcome,
};
use dovetail_testkit::idempotency_contract::fresh_key;

async fn store_with(config: DynamoDbIdempotencyConfig) -> DynamoDbIdempotencyStore {
    let aws = dovetail_testkit::aws().await;
    let store = DynamoDbIdempotencyStore::new(aws.dynamodb(), config);
    store.create_table_if_missing().await.unwrap();
    store
}

async fn fresh_store() -> DynamoDbIdempotencyStore {
    store_with(DynamoDbIdempotencyConfig::new(
        dovetail_testkit::unique_name("idem"),
    ))
    .await
}

mod contract {
    dovetail_testkit::idempotency_contract_tests!(super::fresh_store);
}

/// A store in a table whose partition key is `id`, beside the service's own items, under
/// a prefix, with TTL on `ttl`.
mod contract_in_a_shared_table {
    use super::*;

    async fn shared_table_store() -> DynamoDbIdempotencyStore {
        store_with(
            DynamoDbIdempotencyConfig::new(dovetail_testkit::unique_name("idem-shared"))
                .with_partition_key("id")
                .with_key_prefix("idem#")
                .with_ttl_attribute("ttl"),
        )
        .await
    }

    dovetail_testkit::idempotency_contract_tests!(shared_table_store);
}

#[tokio::test]
async fn create_table_if_missing_is_idempotent_and_enables_ttl() {
    let store = fresh_store().await;
    store.create_table_if_missing().await.unwrap();
    let aws = dovetail_testkit::aws().await;
    let ttl = aws
        .dynamodb()
        .describe_time_to_live()
        .table_name(&store.config().table)
        .send()
        .await
        .unwrap();
    let description = ttl.time_to_live_description().unwrap();
    assert_eq!(description.attribute_name(), Some("expires_at"));

    // The same table with another TTL attribute configured is refused, clearly.
    let other = DynamoDbIdempotencyStore::new(
        aws.dynamodb(),
        store.config().clone().with_ttl_attribute("ttl"),
    );
    let error = other.create_table_if_missing().await.unwrap_err();
    let message = dovetail_testkit::error_chain(&error);
    assert!(message.contains("expires_at"), "{message}");
    // A table with another key is refused, clearly.
    let wrong_key = DynamoDbIdempotencyStore::new(
        aws.dynamodb(),
        store.config().clone().with_partition_key("id"),
    );
    let error = wrong_key.create_table_if_missing().await.unwrap_err();
    let message = dovetail_testkit::error_chain(&error);
    assert!(message.contains("`id`"), "{message}");
}

#[tokio::test]
async fn items_carry_a_ttl_in_epoch_seconds_and_expired_ones_are_ignored() {
    let store = fresh_store().await;
    let aws = dovetail_testkit::aws().await;
    let key = fresh_key("ttl");
    let fingerprint = Fingerprint::of(b"{}");
    let claim = store
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let lease = claim.lease().unwrap().clone();
    store
        .complete(
            &lease,
            StoredOutcome::from("done"),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    let item = aws
        .dynamodb()
        .get_item()
        .table_name(&store.config().table)
        .key("pk", AttributeValue::S(key.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let expires_at: u64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    let expires_at_ms: u64 = item["expires_at_ms"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires_at, expires_at_ms.div_ceil(1000));

    // The emulator's TTL never deletes: the store must ignore the expired item itself.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = store
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            ClaimOutcome::Claimed {
                taken_over_from: None,
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn an_unreadable_item_is_reported_as_corrupt() {
    let store = fresh_store().await;
    let aws = dovetail_testkit::aws().await;
    let key = fresh_key("corrupt");
    aws.dynamodb()
        .put_item()
        .table_name(&store.config().table)
        .item("pk", AttributeValue::S(key.to_string()))
        .item("fingerprint", AttributeValue::S("not binary".to_owned()))
        .send()
        .await
        .unwrap();
    let error = store
        .try_claim(
            &key,
            &Fingerprint::of(b"{}"),
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdempotencyError::CorruptRecord { .. }),
        "{error:?}"
    );
}

/// The handler's write in the tests of the transactional marker: adds one to a counter
/// item, so a second effect would show.
fn count_effect(table: &str, counter: &str) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(table)
        .key("pk", AttributeValue::S(counter.to_owned()))
        .update_expression("ADD effects :one")
        .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

async fn effects(store: &DynamoDbIdempotencyStore, counter: &str) -> u64 {
    let aws = dovetail_testkit::aws().await;
    let item = aws
        .dynamodb()
        .get_item()
        .table_name(&store.config().table)
        .key("pk", AttributeValue::S(counter.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item;
    item.and_then(|item| item.get("effects").cloned())
        .map_or(0, |effects| effects.as_n().unwrap().parse().unwrap())
}

/// Sends the handler's write and the marker in one transaction, the way a consumer does.
async fn deliver(
    store: &DynamoDbIdempotencyStore,
    key: &IdempotencyKey,
    payload: &[u8],
    counter: &str,
) -> Result<MarkOutcome, IdempotencyError> {
    let aws = dovetail_testkit::aws().await;
    let fingerprint = Fingerprint::of(payload);
    let marker = store.processed_marker_put(
        key,
        &fingerprint,
        &StoredOutcome::from("effect applied"),
        Duration::from_secs(3600),
    );
    let sent = aws
        .dynamodb()
        .transact_write_items()
        .transact_items(count_effect(&store.config().table, counter))
        .transact_items(marker)
        .send()
        .await;
    let Err(error) = sent else {
        return Ok(MarkOutcome::Marked);
    };
    let reasons: Vec<CancellationReason> = match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
            canceled.cancellation_reasons().to_vec()
        }
        _ => panic!(
            "the transaction failed: {}",
            dovetail_testkit::error_chain(&error)
        ),
    };
    let outcome = store
        .interpret_marker_cancellation(&reasons, 1, key, &fingerprint)
        .await?;
    Ok(outcome.expect("the marker's condition is what failed"))
}

#[tokio::test]
async fn the_processed_marker_commits_with_the_handlers_write_exactly_once() {
    let store = fresh_store().await;
    let key = fresh_key("tx");
    let counter = format!("counter-{key}");

    assert_eq!(
        deliver(&store, &key, b"payload", &counter).await.unwrap(),
        MarkOutcome::Marked
    );
    assert_eq!(
        deliver(&store, &key, b"payload", &counter).await.unwrap(),
        MarkOutcome::Duplicate(StoredOutcome::from("effect applied")),
    );
    assert_eq!(
        effects(&store, &counter).await,
        1,
        "the duplicate had no effect"
    );

    let mismatch = deliver(&store, &key, b"another payload", &counter).await;
    assert!(
        matches!(mismatch, Err(IdempotencyError::PayloadMismatch { .. })),
        "{mismatch:?}"
    );
    assert_eq!(effects(&store, &counter).await, 1);

    // Real DynamoDB returns the refused item in the reason; without it, the store reads
    // the item itself.
    let bare_reason = CancellationReason::builder()
        .code("ConditionalCheckFailed")
        .build();
    let interpreted = store
        .interpret_marker_cancellation(
            &[
                CancellationReason::builder().code("None").build(),
                bare_reason,
            ],
            1,
            &key,
            &Fingerprint::of(b"payload"),
        )
        .await
        .unwrap();
    assert_eq!(
        interpreted,
        Some(MarkOutcome::Duplicate(StoredOutcome::from(
            "effect applied"
        )))
    );

    // The lease-based API sees the marker as a processed key.
    let claim = store
        .try_claim(
            &key,
            &Fingerprint::of(b"payload"),
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        ClaimOutcome::Processed(StoredOutcome::from("effect applied"))
    );
}

#[tokio::test]
async fn the_marker_waits_for_a_live_lease_and_takes_over_an_expired_one() {
    let store = fresh_store().await;
    let key = fresh_key("tx-lease");
    let counter = format!("counter-{key}");
    let claim = store
        .try_claim(
            &key,
            &Fingerprint::of(b"payload"),
            &LeaseOwner::random(),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    let lease = claim.lease().unwrap().clone();

    let waiting = deliver(&store, &key, b"payload", &counter).await.unwrap();
    assert!(
        matches!(waiting, MarkOutcome::InProgress { held_until } if held_until == lease.held_until()),
        "{waiting:?}"
    );
    assert_eq!(
        effects(&store, &counter).await,
        0,
        "the cancelled transaction wrote nothing"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        deliver(&store, &key, b"payload", &counter).await.unwrap(),
        MarkOutcome::Marked
    );
    let late = store
        .complete(&lease, StoredOutcome::from("late"), Duration::from_secs(60))
        .await;
    assert!(
        matches!(late, Err(IdempotencyError::LeaseLost { .. })),
        "{late:?}"
    );
    assert_eq!(effects(&store, &counter).await, 1);
}

#[tokio::test]
async fn a_cancellation_caused_by_another_action_is_not_the_markers() {
    let store = fresh_store().await;
    let aws = dovetail_testkit::aws().await;
    let key = fresh_key("tx-other");
    let fingerprint = Fingerprint::of(b"payload");
    let failing = Update::builder()
        .table_name(&store.config().table)
        .key("pk", AttributeValue::S(format!("missing-{key}")))
        .update_expression("SET touched = :yes")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":yes", AttributeValue::Bool(true))
        .build()
        .unwrap();
    let error = aws
        .dynamodb()
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(failing).build())
        .transact_items(store.processed_marker_put(
            &key,
            &fingerprint,
            &StoredOutcome::empty(),
            Duration::from_secs(60),
        ))
        .send()
        .await
        .unwrap_err();
    let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
        error.as_service_error()
    else {
        panic!(
            "expected a cancellation: {}",
            dovetail_testkit::error_chain(&error)
        );
    };
    let reasons = canceled.cancellation_reasons();
    let interpreted = store
        .interpret_marker_cancellation(reasons, 1, &key, &fingerprint)
        .await
        .unwrap();
    assert_eq!(interpreted, None, "{reasons:?}");
    // Nothing was written, so the key is free.
    let claim = store
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(claim.lease().is_some(), "{claim:?}");
}
