//! SNS to SQS on the emulator: a filter policy delivers only the matching message.

use std::time::{Duration, Instant};

use aws_sdk_sns::types::MessageAttributeValue;
use dovetail_testkit::aws::{
    QueueSpec, SubscriptionSpec, TopicSpec, fresh_queue, fresh_topic, subscribe_queue,
};

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

#[tokio::test]
async fn sns_filter_policy_delivers_only_the_matching_message_to_sqs() {
    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let topic = fresh_topic(&sns, "smoke-policy-events", &TopicSpec::default()).await;
    let queue = fresh_queue(&sqs, "smoke-claims", &QueueSpec::default()).await;
    let subscription = SubscriptionSpec {
        filter_policy: Some(serde_json::json!({ "type": ["PolicyIssued"] })),
        raw_message_delivery: true,
    };
    subscribe_queue(&sns, &sqs, &topic, &queue, &subscription).await;

    for (event_type, body) in [("ClaimFiled", "not for us"), ("PolicyIssued", "for us")] {
        sns.publish()
            .topic_arn(&topic.arn)
            .message(body)
            .message_attributes("type", attribute(event_type))
            .send()
            .await
            .unwrap();
    }

    // Drain the queue for a while: the matching message arrives, the other never does.
    let mut bodies = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let received = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for message in received.messages.unwrap_or_default() {
            let event_type = message
                .message_attributes()
                .and_then(|attributes| attributes.get("type"))
                .and_then(|value| value.string_value())
                .map(str::to_owned);
            bodies.push((message.body().unwrap_or_default().to_owned(), event_type));
        }
    }
    assert_eq!(
        bodies,
        [("for us".to_owned(), Some("PolicyIssued".to_owned()))],
        "raw delivery of exactly the matching message, attributes kept"
    );
}
