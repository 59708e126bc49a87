//! The SNS/SQS transport's provisioning against the AWS emulator: subscribing twice
//! changes nothing (one queue, one dead-letter queue with its redrive policy, one
//! subscription with raw delivery and the queue policy for the topic), and a new type
//! filter replaces the old one, down to no filter at all.

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use dovetail_events::transport::{EventSource, Subscription, Transport, TypeFilter};
use serde_json::Value;

/// The queue URL and DLQ URL of an SQS source.
fn queue_urls(source: &EventSource) -> (String, Option<String>) {
    let [config] = source.sqs_consumers()[..] else {
        panic!("an AWS consumer source is one SQS queue");
    };
    (
        config.queue_url.clone(),
        config.dead_letter_queue_url.clone(),
    )
}

#[tokio::test]
async fn provisioning_a_consumer_twice_changes_nothing_and_a_new_filter_replaces_the_old() {
    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let name = dovetail_testkit::unique_name("provision");
    // The queue is `<prefix><consumer>-<topic>`: `<name>-queue-topic`.
    let transport =
        Transport::aws(sns.clone(), sqs.clone()).with_aws_name_prefix(format!("{name}-"));
    let topic = format!("{name}-topic");
    let spec = Subscription::new("queue").to_topic("topic", TypeFilter::types(["policy.issued"]));
    let first = transport.subscribe(&spec).await.unwrap();
    let second = transport.subscribe(&spec).await.unwrap();
    let (queue_url, dead_letter_url) = queue_urls(&first);
    assert_eq!(
        queue_urls(&second),
        (queue_url.clone(), dead_letter_url.clone())
    );
    let dead_letter_url = dead_letter_url.unwrap();
    assert!(
        dead_letter_url.ends_with(&format!("{name}-queue-topic-dlq")),
        "{dead_letter_url}"
    );

    let topic_arn = sns
        .create_topic()
        .name(&topic)
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    let queue_arn = queue_attribute(&sqs, &queue_url, QueueAttributeName::QueueArn).await;
    let dead_letter_arn =
        queue_attribute(&sqs, &dead_letter_url, QueueAttributeName::QueueArn).await;
    let redrive: Value = serde_json::from_str(
        &queue_attribute(&sqs, &queue_url, QueueAttributeName::RedrivePolicy).await,
    )
    .unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dead_letter_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(
        queue_attribute(&sqs, &queue_url, QueueAttributeName::VisibilityTimeout).await,
        "30"
    );
    let config = second.sqs_consumers()[0];
    assert_eq!(
        (
            config.visibility_timeout,
            config.heartbeat_every,
            config.wait_time
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    let policy = queue_attribute(&sqs, &queue_url, QueueAttributeName::Policy).await;
    assert!(
        policy.contains(&topic_arn),
        "the queue policy allows the topic: {policy}"
    );

    let subscriptions = subscriptions_of(&sns, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1, "one subscription after two runs");
    let attributes = subscription_attributes(&sns, &subscriptions[0]).await;
    assert_eq!(
        attributes.get("RawMessageDelivery").map(String::as_str),
        Some("true")
    );
    let filter: Value = serde_json::from_str(&attributes["FilterPolicy"]).unwrap();
    assert_eq!(filter, serde_json::json!({"type": ["policy.issued"]}));

    let wider = Subscription::new("queue").to_topic(
        "topic",
        TypeFilter::types(["policy.issued", "policy.cancelled"]),
    );
    transport.subscribe(&wider).await.unwrap();
    let subscriptions = subscriptions_of(&sns, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1);
    let attributes = subscription_attributes(&sns, &subscriptions[0]).await;
    let filter: Value = serde_json::from_str(&attributes["FilterPolicy"]).unwrap();
    assert_eq!(
        filter,
        serde_json::json!({"type": ["policy.cancelled", "policy.issued"]})
    );

    // No filter any more: the policy is removed (SNS takes `{}` for that).
    let everything = Subscription::new("queue").to_topic("topic", TypeFilter::All);
    transport.subscribe(&everything).await.unwrap();
    let subscriptions = subscriptions_of(&sns, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1);
    let attributes = subscription_attributes(&sns, &subscriptions[0]).await;
    let filter = attributes
        .get("FilterPolicy")
        .map(|text| text.trim())
        .unwrap_or_default();
    assert!(
        filter.is_empty() || filter == "{}",
        "no filter is left: {filter:?}"
    );
}

async fn queue_attribute(sqs: &aws_sdk_sqs::Client, url: &str, name: QueueAttributeName) -> String {
    let read = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .unwrap();
    read.attributes()
        .and_then(|attributes| attributes.get(&name))
        .cloned()
        .unwrap_or_else(|| panic!("{url} has no {name:?}"))
}

async fn subscriptions_of(
    sns: &aws_sdk_sns::Client,
    topic_arn: &str,
    queue_arn: &str,
) -> Vec<String> {
    let listed = sns
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .send()
        .await
        .unwrap();
    listed
        .subscriptions()
        .iter()
        .filter(|subscription| subscription.endpoint() == Some(queue_arn))
        .filter_map(|subscription| subscription.subscription_arn().map(str::to_owned))
        .collect()
}

async fn subscription_attributes(
    sns: &aws_sdk_sns::Client,
    subscription_arn: &str,
) -> std::collections::HashMap<String, String> {
    sns.get_subscription_attributes()
        .subscription_arn(subscription_arn)
        .send()
        .await
        .unwrap()
        .attributes()
        .cloned()
        .unwrap_or_default()
}
