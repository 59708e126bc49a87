//! SQS dead-letter queues against the real emulator: the depth the consumer reports
//! (`dead_letter_depth`, the `dovetail_consumer_dead_letters` gauge of an event source)
//! and the redrive back to the source queue, standard and FIFO.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use dovetail_events::consumer::sqs::{
    REASON_ATTRIBUTE, SOURCE_ATTRIBUTE, dead_letter_depth, redrive_dead_letters,
};
use dovetail_events::transport::{Subscription, Transport, TypeFilter};
use dovetail_testkit::aws::{Queue, QueueSpec, fresh_queue};

use crate::transport_dead_letters::scraped_gauge;

fn text(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

/// Sends `body` as the consumer dead-letters it: with its own `type` attribute and ours.
async fn dead_letter(sqs: &aws_sdk_sqs::Client, queue_url: &str, body: &str, group: Option<&str>) {
    let mut request = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_attributes("type", text("policy.issued"))
        .message_attributes(REASON_ATTRIBUTE, text("unknown product"))
        .message_attributes(SOURCE_ATTRIBUTE, text("claims"));
    if let Some(group) = group {
        request = request
            .message_group_id(group)
            .message_deduplication_id(format!("{group}-{body}"));
    }
    request.send().await.unwrap();
}

/// Every message of `queue`, received (and left to reappear) until it answers none.
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &Queue) -> Vec<Message> {
    let mut all = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            return all;
        }
        all.extend(received);
    }
}

fn attribute(message: &Message, name: &str) -> Option<String> {
    message
        .message_attributes
        .as_ref()?
        .get(name)?
        .string_value
        .clone()
}

#[tokio::test]
async fn a_redrive_moves_every_dead_letter_back_with_its_attributes() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let source = fresh_queue(&sqs, "redrive-source", &QueueSpec::default()).await;
    let dlq = fresh_queue(&sqs, "redrive-dlq", &QueueSpec::default()).await;
    for index in 0..12 {
        dead_letter(&sqs, &dlq.url, &format!("event-{index}"), None).await;
    }
    assert_eq!(dead_letter_depth(&sqs, &dlq.url).await.unwrap(), 12);

    assert_eq!(
        redrive_dead_letters(&sqs, &dlq.url, &source.url)
            .await
            .unwrap(),
        12
    );

    assert_eq!(dead_letter_depth(&sqs, &dlq.url).await.unwrap(), 0);
    assert!(
        drain(&sqs, &dlq).await.is_empty(),
        "deleted from the dead-letter queue"
    );
    let back = drain(&sqs, &source).await;
    let mut bodies: Vec<String> = back.iter().filter_map(|m| m.body.clone()).collect();
    bodies.sort();
    let mut expected: Vec<String> = (0..12).map(|index| format!("event-{index}")).collect();
    expected.sort();
    assert_eq!(bodies, expected);
    for message in &back {
        assert_eq!(attribute(message, "type").as_deref(), Some("policy.issued"));
        assert_eq!(
            attribute(message, REASON_ATTRIBUTE),
            None,
            "the dead-letter reason is dropped"
        );
        assert_eq!(attribute(message, SOURCE_ATTRIBUTE), None);
    }
    assert_eq!(
        redrive_dead_letters(&sqs, &dlq.url, &source.url)
            .await
            .unwrap(),
        0,
        "an empty dead-letter queue moves nothing"
    );
}

#[tokio::test]
async fn a_fifo_redrive_keeps_each_message_group() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let fifo = QueueSpec {
        fifo: true,
        ..QueueSpec::default()
    };
    let source = fresh_queue(&sqs, "redrive-source", &fifo).await;
    let dlq = fresh_queue(&sqs, "redrive-dlq", &fifo).await;
    dead_letter(&sqs, &dlq.url, "a-1", Some("policy-a")).await;
    dead_letter(&sqs, &dlq.url, "b-1", Some("policy-b")).await;

    assert_eq!(
        redrive_dead_letters(&sqs, &dlq.url, &source.url)
            .await
            .unwrap(),
        2
    );

    let groups: HashMap<String, String> = drain(&sqs, &source)
        .await
        .iter()
        .map(|message| {
            let group = message
                .attributes
                .as_ref()
                .and_then(|system| system.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap();
            (message.body.clone().unwrap(), group)
        })
        .collect();
    assert_eq!(groups.get("a-1").map(String::as_str), Some("policy-a"));
    assert_eq!(groups.get("b-1").map(String::as_str), Some("policy-b"));
}

#[tokio::test]
async fn an_sqs_event_source_reports_and_redrives_its_dead_letter_queue() {
    let aws = dovetail_testkit::aws().await;
    let name = dovetail_testkit::unique_name("dead-letters");
    let transport = Transport::aws(aws.sns(), aws.sqs()).with_aws_name_prefix(format!("{name}-"));
    let source = transport
        .subscribe(&Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All))
        .await
        .unwrap();
    let [config] = source.sqs_consumers()[..] else {
        panic!("an AWS consumer source is one SQS queue");
    };
    let (queue_url, dlq_url) = (
        config.queue_url.clone(),
        config.dead_letter_queue_url.clone().unwrap(),
    );
    let queue = config.queue_name().to_owned();
    let sqs = aws.sqs();
    dead_letter(&sqs, &dlq_url, "first", None).await;
    dead_letter(&sqs, &dlq_url, "second", None).await;

    let depths = source.dead_letters().await.unwrap();
    assert_eq!(depths.len(), 1);
    assert_eq!(
        (depths[0].queue.as_str(), depths[0].depth),
        (queue.as_str(), 2)
    );
    assert_eq!(scraped_gauge(&depths, &queue), Some(2.0));

    assert_eq!(source.redrive_dead_letters(&queue).await.unwrap(), Some(2));
    assert_eq!(source.dead_letters().await.unwrap()[0].depth, 0);
    assert_eq!(
        dead_letter_depth(&sqs, &queue_url).await.unwrap(),
        2,
        "back in the source queue"
    );
}
