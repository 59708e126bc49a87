//! `DynamoDbUnitOfWork` against the AWS emulator: business writes and events in one
//! `TransactWriteItems` (counted with an SDK interceptor), all or nothing; sequences
//! across units of work; conflicts with the actual version; the 100-action and 4 MB
//! budget refused before sending; a repeated commit made harmless by its request token.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use dovetail_events::envelope::EventMetadata;
use dovetail_outbox::dynamodb::DynamoDbOutbox;
use dovetail_outbox::{ExpectedVersion, OutboxError, OutboxStore};

use super::dynamodb_store::fresh_outbox_on;
use crate::support::{changed, policy};

/// Counts the `TransactWriteItems` calls a client makes (not its retries).
#[derive(Debug, Clone, Default)]
struct TransactionCounter(Arc<AtomicUsize>);

impl TransactionCounter {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for TransactionCounter {
    fn name(&self) -> &'static str {
        "TransactionCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context
            .input()
            .downcast_ref::<TransactWriteItemsInput>()
            .is_some()
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// A fresh outbox whose client counts its transactions.
async fn counted_outbox(prefix: &str) -> (DynamoDbOutbox, TransactionCounter) {
    let aws = dovetail_testkit::aws().await;
    let counter = TransactionCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(aws.sdk_config())
        .interceptor(counter.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    (fresh_outbox_on(client, prefix).await, counter)
}

/// A business `Put` of `policies/<id>` that refuses to overwrite.
fn create_policy(outbox: &DynamoDbOutbox, id: &str, padding: usize) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(&outbox.config().table)
        .item("pk", AttributeValue::S(format!("policy#{id}")))
        .item("sk", AttributeValue::S("policy".into()))
        .item("padding", AttributeValue::S("x".repeat(padding)))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .unwrap();
    TransactWriteItem::builder().put(put).build()
}

/// Every item of the table, by `pk` and `sk`.
async fn items(
    outbox: &DynamoDbOutbox,
) -> HashMap<(String, String), HashMap<String, AttributeValue>> {
    let client = dovetail_testkit::aws().await.dynamodb();
    let mut all = HashMap::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(&outbox.config().table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            let key = |name: &str| match item.get(name) {
                Some(AttributeValue::S(value)) => value.clone(),
                other => panic!("{name} is {other:?}"),
            };
            all.insert((key("pk"), key("sk")), item.clone());
        }
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return all;
        }
    }
}

fn outbox_count(items: &HashMap<(String, String), HashMap<String, AttributeValue>>) -> usize {
    items
        .keys()
        .filter(|(pk, _)| pk.starts_with("outbox#"))
        .count()
}

#[tokio::test]
async fn a_business_write_and_its_events_commit_in_one_transaction() {
    let (outbox, counter) = counted_outbox("uow-together").await;
    let mut uow = outbox.unit_of_work();
    uow.write(create_policy(&outbox, "pol-1", 10))
        .append(
            policy("pol-1"),
            ExpectedVersion::New,
            &changed("pol-1", "issued"),
            EventMetadata::default(),
        )
        .unwrap()
        .append(
            policy("pol-1"),
            ExpectedVersion::New,
            &changed("pol-1", "priced"),
            EventMetadata::default(),
        )
        .unwrap();
    assert_eq!(
        uow.action_count(),
        4,
        "1 business write + 1 version + 2 events"
    );
    let committed = uow.commit().await.unwrap();
    assert_eq!(
        counter.count(),
        1,
        "exactly one TransactWriteItems per commit"
    );
    assert_eq!(committed.version(&policy("pol-1")), Some(2));

    let items = items(&outbox).await;
    assert!(items.contains_key(&("policy#pol-1".into(), "policy".into())));
    let version = &items[&("aggregate#policy#pol-1".into(), "version".into())];
    assert_eq!(version.get("version"), Some(&AttributeValue::N("2".into())));
    assert_eq!(outbox_count(&items), 2);
    let record = items
        .iter()
        .find(|((pk, sk), _)| pk.starts_with("outbox#") && sk.ends_with("#00000000000000000001"))
        .map(|(_, item)| item)
        .unwrap();
    assert_eq!(
        record.get("state"),
        Some(&AttributeValue::S("pending".into()))
    );
    assert_eq!(
        record.get("event_id"),
        Some(&AttributeValue::S(
            committed.envelopes()[0].id().to_string()
        ))
    );

    // An `Any` append reads the version first, and still sends one transaction.
    let mut uow = outbox.unit_of_work();
    uow.append(
        policy("pol-1"),
        ExpectedVersion::Any,
        &changed("pol-1", "noted"),
        EventMetadata::default(),
    )
    .unwrap();
    uow.commit().await.unwrap();
    assert_eq!(counter.count(), 2);
}

#[tokio::test]
async fn a_failing_business_condition_writes_nothing_not_even_the_events() {
    let (outbox, _) = counted_outbox("uow-nothing").await;
    let mut first = outbox.unit_of_work();
    first.write(create_policy(&outbox, "pol-1", 10));
    first.commit().await.unwrap();
    let before = items(&outbox).await;

    let mut uow = outbox.unit_of_work();
    uow.write(create_policy(&outbox, "pol-1", 10)) // exists: its condition fails
        .append(
            policy("pol-1"),
            ExpectedVersion::New,
            &changed("pol-1", "issued"),
            EventMetadata::default(),
        )
        .unwrap()
        .append(
            policy("pol-2"),
            ExpectedVersion::Any,
            &changed("pol-2", "issued"),
            EventMetadata::default(),
        )
        .unwrap();
    let error = uow.commit().await.unwrap_err();
    assert!(
        matches!(&error, OutboxError::BusinessConditionFailed { writes, .. } if writes == &[0]),
        "{error}"
    );
    assert_eq!(
        items(&outbox).await.len(),
        before.len(),
        "nothing was written"
    );
    assert!(
        outbox
            .store("relay")
            .fetch_ready(10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn sequences_continue_across_units_of_work() {
    let (outbox, _) = counted_outbox("uow-sequences").await;
    let pol = policy("pol-1");
    let commit = |expected: ExpectedVersion, count: usize| {
        let outbox = outbox.clone();
        let pol = pol.clone();
        async move {
            let mut uow = outbox.unit_of_work();
            for _ in 0..count {
                uow.append(
                    pol.clone(),
                    expected,
                    &changed("pol-1", "x"),
                    EventMetadata::default(),
                )
                .unwrap();
            }
            uow.commit().await.unwrap()
        }
    };
    let sequences = |committed: &dovetail_outbox::Committed| {
        committed
            .envelopes()
            .iter()
            .map(|e| e.sequence().get())
            .collect::<Vec<_>>()
    };
    assert_eq!(sequences(&commit(ExpectedVersion::New, 2).await), [1, 2]);
    assert_eq!(
        sequences(&commit(ExpectedVersion::Exactly(2), 1).await),
        [3]
    );
    let last = commit(ExpectedVersion::Any, 2).await;
    assert_eq!(sequences(&last), [4, 5]);
    assert_eq!(last.version(&pol), Some(5));

    let store = outbox.store("relay");
    let ready = store.fetch_ready(100).await.unwrap();
    assert_eq!(
        ready
            .iter()
            .map(|r| r.envelope.sequence().get())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
}

#[tokio::test]
async fn conflicts_report_the_actual_version_and_commit_nothing() {
    let (outbox, counter) = counted_outbox("uow-conflict").await;
    let mut uow = outbox.unit_of_work();
    for _ in 0..2 {
        uow.append(
            policy("pol-1"),
            ExpectedVersion::New,
            &changed("pol-1", "x"),
            EventMetadata::default(),
        )
        .unwrap();
    }
    uow.commit().await.unwrap();
    let before = items(&outbox).await;

    for expected in [ExpectedVersion::New, ExpectedVersion::Exactly(1)] {
        let mut uow = outbox.unit_of_work();
        uow.write(create_policy(&outbox, "other", 10))
            .append(
                policy("pol-1"),
                expected,
                &changed("pol-1", "late"),
                EventMetadata::default(),
            )
            .unwrap();
        let error = uow.commit().await.unwrap_err();
        assert!(
            matches!(
                &error,
                OutboxError::Conflict { aggregate_id, actual: 2, .. } if aggregate_id == "pol-1"
            ),
            "{expected:?}: {error}"
        );
    }
    assert_eq!(
        items(&outbox).await.len(),
        before.len(),
        "nothing was written"
    );
    assert_eq!(counter.count(), 3);
}

#[tokio::test]
async fn the_action_budget_is_refused_before_sending() {
    let (outbox, counter) = counted_outbox("uow-actions").await;
    let mut uow = outbox.unit_of_work();
    for i in 0..95 {
        uow.write(create_policy(&outbox, &format!("pol-{i}"), 10));
    }
    for _ in 0..6 {
        uow.append(
            policy("pol-0"),
            ExpectedVersion::Any,
            &changed("pol-0", "x"),
            EventMetadata::default(),
        )
        .unwrap();
    }
    assert_eq!(uow.action_count(), 102);
    let error = uow.commit().await.unwrap_err();
    assert!(
        matches!(&error, OutboxError::TooLarge { limit, actual, .. } if limit == "100 actions" && actual.starts_with("102 actions")),
        "{error}"
    );
    assert_eq!(counter.count(), 0, "nothing was sent");
    assert!(items(&outbox).await.is_empty());

    // 93 + 1 + 6 = 100 fits.
    let mut uow = outbox.unit_of_work();
    for i in 0..93 {
        uow.write(create_policy(&outbox, &format!("pol-{i}"), 10));
    }
    for _ in 0..6 {
        uow.append(
            policy("pol-0"),
            ExpectedVersion::New,
            &changed("pol-0", "x"),
            EventMetadata::default(),
        )
        .unwrap();
    }
    uow.commit().await.unwrap();
    assert_eq!(counter.count(), 1);
}

#[tokio::test]
async fn the_size_budget_is_refused_before_sending() {
    let (outbox, counter) = counted_outbox("uow-size").await;
    let mut uow = outbox.unit_of_work();
    for i in 0..11 {
        uow.write(create_policy(&outbox, &format!("pol-{i}"), 390_000));
    }
    uow.append(
        policy("pol-0"),
        ExpectedVersion::New,
        &changed("pol-0", "x"),
        EventMetadata::default(),
    )
    .unwrap();
    let error = uow.commit().await.unwrap_err();
    assert!(
        matches!(&error, OutboxError::TooLarge { limit, .. } if limit == "4 MB"),
        "{error}"
    );
    assert!(error.to_string().contains("bytes"), "{error}");
    assert_eq!(counter.count(), 0, "nothing was sent");
    assert!(items(&outbox).await.is_empty());
}

#[tokio::test]
async fn committing_the_same_unit_again_is_harmless() {
    let (outbox, counter) = counted_outbox("uow-token").await;
    let mut uow = outbox.unit_of_work();
    uow.write(create_policy(&outbox, "pol-1", 10))
        .append(
            policy("pol-1"),
            ExpectedVersion::New,
            &changed("pol-1", "issued"),
            EventMetadata::default(),
        )
        .unwrap();
    let first = uow.commit().await.unwrap();
    // As if the first answer had been lost: the same transaction, the same token.
    let again = uow.commit().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(counter.count(), 2, "sent twice");

    let items = items(&outbox).await;
    assert_eq!(outbox_count(&items), 1, "committed once");
    let version = &items[&("aggregate#policy#pol-1".into(), "version".into())];
    assert_eq!(version.get("version"), Some(&AttributeValue::N("1".into())));
    let ready = outbox.store("relay").fetch_ready(10).await.unwrap();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].envelope.id(), first.envelopes()[0].id());
}
