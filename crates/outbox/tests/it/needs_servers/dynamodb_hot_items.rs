//! Units of work that all update one hot item (as every write of a bucket updates its
//! consistency digest) committed at once against the AWS emulator: each commits, its
//! update counted once, whether DynamoDB serialises them or cancels some with
//! `TransactionConflict` (which the unit of work sends again). The emulator serialises
//! transactions, so there this does not reach the resend; real DynamoDB does.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use dovetail_events::envelope::EventMetadata;
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::dynamodb::DynamoDbOutbox;

use super::dynamodb_store::fresh_outbox;
use crate::support::{changed, policy};

/// `ADD hits :one` on the item `hot`/`counter`.
fn hit(outbox: &DynamoDbOutbox) -> TransactWriteItem {
    let update = Update::builder()
        .table_name(&outbox.config().table)
        .key("pk", AttributeValue::S("hot".into()))
        .key("sk", AttributeValue::S("counter".into()))
        .update_expression("ADD hits :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .unwrap();
    TransactWriteItem::builder().update(update).build()
}

#[tokio::test]
async fn concurrent_units_of_work_on_one_hot_item_all_commit_once() {
    let outbox = fresh_outbox("hot-item").await;
    let writers = 24;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let id = format!("p{i}");
                let mut uow = outbox.unit_of_work();
                uow.write(hit(&outbox))
                    .append(
                        policy(&id),
                        ExpectedVersion::New,
                        &changed(&id, "hot"),
                        EventMetadata::default(),
                    )
                    .unwrap();
                uow.commit().await
            })
        })
        .collect();
    for task in tasks {
        let committed = task.await.unwrap();
        assert!(committed.is_ok(), "{committed:?}");
    }
    let counter = dovetail_testkit::aws()
        .await
        .dynamodb()
        .get_item()
        .table_name(&outbox.config().table)
        .key("pk", AttributeValue::S("hot".into()))
        .key("sk", AttributeValue::S("counter".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        counter.item().and_then(|item| item.get("hits")),
        Some(&AttributeValue::N(writers.to_string()))
    );
}
