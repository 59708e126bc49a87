//! The Streams relay deletes checkpoints nothing needs any more, against the AWS emulator:
//! one of a shard the stream no longer lists (as DynamoDB trims closed shards after 24
//! hours; the emulator never does, so the test writes it) and one left by an earlier
//! stream of the table, while the checkpoint of the shard it reads stays.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_events::publish::MemoryPublisher;
use dovetail_outbox::dynamodb::DynamoDbOutbox;

use super::dynamodb_store::fresh_outbox;
use super::dynamodb_streams::{Running, all_published, commit_rounds, config, wait_until};

/// Writes a checkpoint item of `shard` on `stream_arn`, as a relay would have.
async fn write_checkpoint(outbox: &DynamoDbOutbox, stream_arn: &str, shard: &str) {
    let client = dovetail_testkit::aws().await.dynamodb();
    client
        .put_item()
        .table_name(&outbox.config().table)
        .item("pk", AttributeValue::S("outbox-checkpoint".into()))
        .item("sk", AttributeValue::S(shard.into()))
        .item("stream_arn", AttributeValue::S(stream_arn.into()))
        .item("finished", AttributeValue::Bool(true))
        .item("sequence_number", AttributeValue::S("1".into()))
        .item("fencing_token", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();
}

/// The checkpoint items of the table: shard id to stream ARN.
async fn checkpoints(outbox: &DynamoDbOutbox) -> HashMap<String, String> {
    let client = dovetail_testkit::aws().await.dynamodb();
    let output = client
        .query()
        .table_name(&outbox.config().table)
        .consistent_read(true)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("outbox-checkpoint".into()))
        .send()
        .await
        .unwrap();
    output
        .items()
        .iter()
        .map(|item| {
            let text = |name: &str| match item.get(name) {
                Some(AttributeValue::S(value)) => value.clone(),
                _ => String::new(),
            };
            (text("sk"), text("stream_arn"))
        })
        .collect()
}

#[tokio::test]
async fn checkpoints_of_trimmed_shards_and_old_streams_are_deleted() {
    let outbox = fresh_outbox("outbox-streams-prune").await;
    let client = dovetail_testkit::aws().await.dynamodb();
    let described = client
        .describe_table()
        .table_name(&outbox.config().table)
        .send()
        .await
        .unwrap();
    let stream_arn = described
        .table()
        .and_then(|table| table.latest_stream_arn())
        .unwrap()
        .to_owned();
    write_checkpoint(&outbox, &stream_arn, "shardId-trimmed-long-ago").await;
    write_checkpoint(
        &outbox,
        "arn:aws:dynamodb:old-stream",
        "shardId-of-old-stream",
    )
    .await;

    let events = commit_rounds(&outbox, &["pol-1"], 3).await;
    let publisher = MemoryPublisher::new();
    let relay = Running::start(&outbox, publisher.clone(), config("prune")).await;
    wait_until("the events are published", || {
        all_published(&publisher, &events)
    })
    .await;
    wait_until_checkpointed(&outbox, &stream_arn).await;
    let report = relay.stop().await;

    let left = checkpoints(&outbox).await;
    assert_eq!(report.checkpoints_deleted, 2, "{report:?}");
    assert!(
        !left.contains_key("shardId-trimmed-long-ago")
            && !left.contains_key("shardId-of-old-stream"),
        "{left:?}"
    );
    assert!(
        !left.is_empty() && left.values().all(|arn| *arn == stream_arn),
        "the checkpoint of the shard read stays: {left:?}"
    );
}

/// Waits until the relay wrote a checkpoint of a shard it reads.
async fn wait_until_checkpointed(outbox: &DynamoDbOutbox, stream_arn: &str) {
    for _ in 0..200 {
        let left = checkpoints(outbox).await;
        if left
            .iter()
            .any(|(shard, arn)| arn == stream_arn && !shard.contains("trimmed"))
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the relay wrote no checkpoint within 10 s");
}
