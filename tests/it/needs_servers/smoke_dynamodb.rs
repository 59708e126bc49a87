//! DynamoDB and DynamoDB Streams on the emulator: transactions are atomic, streams see inserts.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, StreamViewType, TransactWriteItem};
use aws_sdk_dynamodbstreams::types::{OperationType, ShardIteratorType};
use dovetail_testkit::aws::{TableSpec, fresh_table};

fn item(pk: &str, sk: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ]
    .into()
}

fn put(table: &str, pk: &str, sk: &str, condition: &str) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item(pk, sk)))
        .condition_expression(condition)
        .build()
        .unwrap();
    TransactWriteItem::builder().put(put).build()
}

#[tokio::test]
async fn transact_write_items_with_one_failing_condition_writes_nothing() {
    let aws = dovetail_testkit::aws().await;
    let client = aws.dynamodb();
    let table = fresh_table(&client, "smoke-tx", &TableSpec::default()).await;

    // An existing item makes the second put's condition fail.
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(item("policy#2", "v")))
        .send()
        .await
        .unwrap();

    let result = client
        .transact_write_items()
        .transact_items(put(&table, "policy#1", "v", "attribute_not_exists(pk)"))
        .transact_items(put(&table, "policy#2", "v", "attribute_not_exists(pk)"))
        .send()
        .await;

    let error = result.expect_err("the second condition fails, so the transaction must fail");
    let service_error = error.into_service_error();
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(
        canceled,
    ) = service_error
    else {
        panic!("expected TransactionCanceledException, got {service_error:?}");
    };
    let reasons: Vec<Option<&str>> = canceled
        .cancellation_reasons()
        .iter()
        .map(|reason| reason.code())
        .collect();
    assert_eq!(
        reasons,
        [Some("None"), Some("ConditionalCheckFailed")],
        "one reason per action, in order"
    );

    let first = client
        .get_item()
        .table_name(&table)
        .set_key(Some(item("policy#1", "v")))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert!(
        first.item.is_none(),
        "the passing put of a canceled transaction was written"
    );
}

#[tokio::test]
async fn dynamodb_streams_returns_the_insert() {
    let aws = dovetail_testkit::aws().await;
    let client = aws.dynamodb();
    let streams = aws.dynamodb_streams();
    let spec = TableSpec {
        stream: Some(StreamViewType::NewAndOldImages),
        ..TableSpec::default()
    };
    let table = fresh_table(&client, "smoke-stream", &spec).await;

    client
        .put_item()
        .table_name(&table)
        .set_item(Some(item("claim#7", "v1")))
        .send()
        .await
        .unwrap();

    let description = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let stream_arn = description
        .table
        .and_then(|table| table.latest_stream_arn)
        .expect("a table with a stream has a LatestStreamArn");
    let stream = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap();
    let shard_id = stream
        .shards()
        .first()
        .and_then(|shard| shard.shard_id())
        .expect("the stream has a shard")
        .to_owned();

    let mut iterator = streams
        .get_shard_iterator()
        .stream_arn(&stream_arn)
        .shard_id(&shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator;
    let mut seen = Vec::new();
    for _ in 0..20 {
        let Some(current) = iterator.take() else {
            break;
        };
        let page = streams
            .get_records()
            .shard_iterator(current)
            .send()
            .await
            .unwrap();
        seen.extend(page.records.unwrap_or_default());
        if !seen.is_empty() {
            break;
        }
        iterator = page.next_shard_iterator;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let record = seen.first().expect("the stream returned the insert");
    assert_eq!(record.event_name(), Some(&OperationType::Insert));
    let image = record
        .dynamodb()
        .and_then(|change| change.new_image())
        .expect("NEW_AND_OLD_IMAGES carries the new image");
    assert_eq!(
        image.get("pk"),
        Some(&aws_sdk_dynamodbstreams::types::AttributeValue::S(
            "claim#7".to_owned()
        ))
    );
}
