//! Fresh SNS topics and SQS queues for tests, and queue subscriptions with filter policies.

#[cfg(feature = "sqs")]
use std::collections::HashMap;

#[cfg(feature = "sqs")]
use aws_sdk_sqs::types::QueueAttributeName;

use crate::error_chain;

/// A dead-letter queue and after how many receives a message moves there.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// ARN of the dead-letter queue.
    pub queue_arn: String,
    /// Receives after which a message is moved to the dead-letter queue.
    pub max_receive_count: u32,
}

/// The shape of a test queue.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    /// A FIFO queue (`.fifo` suffix, per-group order, deduplication).
    pub fifo: bool,
    /// Redrive to a dead-letter queue.
    pub dead_letter: Option<DeadLetter>,
    /// Visibility timeout in seconds (SQS default: 30).
    pub visibility_timeout_secs: Option<u32>,
}

/// A test queue.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// The queue name.
    pub name: String,
    /// The queue URL, for sending and receiving.
    pub url: String,
    /// The queue ARN, for subscriptions and redrive policies.
    pub arn: String,
}

/// Creates a queue with a unique name starting with `prefix`.
///
/// # Panics
/// When SQS refuses to create the queue or to describe it.
///
/// # Example
/// ```no_run
/// use dovetail_testkit::aws::{QueueSpec, fresh_queue};
/// # async fn example() {
/// let sqs = dovetail_testkit::aws().await.sqs();
/// let queue = fresh_queue(&sqs, "claims", &QueueSpec { fifo: true, ..QueueSpec::default() }).await;
/// assert!(queue.name.ends_with(".fifo"));
/// # }
/// ```
#[cfg(feature = "sqs")]
pub async fn fresh_queue(sqs: &aws_sdk_sqs::Client, prefix: &str, spec: &QueueSpec) -> Queue {
    let mut name = crate::unique_name(prefix);
    let mut attributes = HashMap::new();
    if spec.fifo {
        name.push_str(".fifo");
        attributes.insert(QueueAttributeName::FifoQueue, "true".to_owned());
    }
    if let Some(secs) = spec.visibility_timeout_secs {
        attributes.insert(QueueAttributeName::VisibilityTimeout, secs.to_string());
    }
    if let Some(dead_letter) = &spec.dead_letter {
        let policy = serde_json::json!({
            "deadLetterTargetArn": dead_letter.queue_arn,
            "maxReceiveCount": dead_letter.max_receive_count.to_string(),
        });
        attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let created = sqs
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot create the test queue {name}: {}",
                error_chain(&error)
            )
        });
    let url = created
        .queue_url
        .unwrap_or_else(|| panic!("CreateQueue for {name} returned no queue URL"));
    let arn = queue_arn(sqs, &url).await;
    Queue { name, url, arn }
}

#[cfg(feature = "sqs")]
async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|error| panic!("cannot read the ARN of {url}: {}", error_chain(&error)));
    attributes
        .attributes
        .and_then(|mut map| map.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| panic!("GetQueueAttributes for {url} returned no QueueArn"))
}

/// The shape of a test topic.
#[cfg(feature = "sns")]
#[derive(Debug, Clone, Default)]
pub struct TopicSpec {
    /// A FIFO topic (`.fifo` suffix, message groups, deduplication).
    pub fifo: bool,
}

/// A test topic.
#[cfg(feature = "sns")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic name.
    pub name: String,
    /// The topic ARN, for publishing and subscribing.
    pub arn: String,
}

/// Creates a topic with a unique name starting with `prefix`.
///
/// # Panics
/// When SNS refuses to create the topic.
#[cfg(feature = "sns")]
pub async fn fresh_topic(sns: &aws_sdk_sns::Client, prefix: &str, spec: &TopicSpec) -> Topic {
    let mut name = crate::unique_name(prefix);
    let mut request = sns.create_topic();
    if spec.fifo {
        name.push_str(".fifo");
        request = request.attributes("FifoTopic", "true");
    }
    let created = request.name(&name).send().await.unwrap_or_else(|error| {
        panic!(
            "cannot create the test topic {name}: {}",
            error_chain(&error)
        )
    });
    let arn = created
        .topic_arn
        .unwrap_or_else(|| panic!("CreateTopic for {name} returned no topic ARN"));
    Topic { name, arn }
}

/// How a queue subscribes to a topic.
#[cfg(all(feature = "sns", feature = "sqs"))]
#[derive(Debug, Clone, Default)]
pub struct SubscriptionSpec {
    /// An SNS filter policy on message attributes, e.g. `{"type": ["PolicyIssued"]}`.
    pub filter_policy: Option<serde_json::Value>,
    /// Deliver the bare message instead of the SNS JSON envelope.
    pub raw_message_delivery: bool,
}

/// Subscribes `queue` to `topic` and allows the topic to send to the queue.
///
/// Returns the subscription ARN.
///
/// # Panics
/// When SNS or SQS refuse the subscription or the queue policy.
#[cfg(all(feature = "sns", feature = "sqs"))]
pub async fn subscribe_queue(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    topic: &Topic,
    queue: &Queue,
    spec: &SubscriptionSpec,
) -> String {
    // Real SNS needs the queue to allow the topic to send; emulators ignore it.
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue.arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topic.arn}},
        }],
    });
    sqs.set_queue_attributes()
        .queue_url(&queue.url)
        .attributes(QueueAttributeName::Policy, policy.to_string())
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "cannot set the policy of {}: {}",
                queue.name,
                error_chain(&error)
            )
        });
    let mut request = sns
        .subscribe()
        .topic_arn(&topic.arn)
        .protocol("sqs")
        .endpoint(&queue.arn)
        .return_subscription_arn(true);
    if let Some(filter) = &spec.filter_policy {
        request = request.attributes("FilterPolicy", filter.to_string());
    }
    if spec.raw_message_delivery {
        request = request.attributes("RawMessageDelivery", "true");
    }
    let subscribed = request.send().await.unwrap_or_else(|error| {
        panic!(
            "cannot subscribe {} to {}: {}",
            queue.name,
            topic.name,
            error_chain(&error)
        )
    });
    subscribed
        .subscription_arn
        .unwrap_or_else(|| panic!("Subscribe returned no subscription ARN"))
}
