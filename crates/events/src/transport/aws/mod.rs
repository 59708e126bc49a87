//! The SNS/SQS transport (features `sns` and `sqs`): topics on SNS, each consumer's
//! queue on SQS with its dead-letter queue, subscribed to its topics with filter
//! policies, all provisioned idempotently ([`provision`]).
//!
//! Provisioning is safe to run on every start, from several processes at once:
//! `CreateTopic` answers an existing topic, queues and subscriptions are read before they
//! are changed, and only what differs from the [`Subscription`] is changed. On AWS a new
//! or changed filter policy may take up to 15 minutes to apply everywhere (SNS is
//! eventually consistent); emulators apply it at once.

mod provision;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::source::Part;
use super::{EventSource, Subscription, TransportError};
use crate::consumer::sqs::SqsConsumerConfig;
use crate::publish::{SnsPublisher, SnsPublisherConfig};
use provision::{QueueNames, queue_policy};

/// How long a dead-letter queue keeps messages: SQS's maximum, 14 days.
const DEAD_LETTER_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
/// After how many receives SQS moves a message to the dead-letter queue by default.
const DEFAULT_MAX_RECEIVES: u32 = 5;
/// The shortest visibility timeout a queue gets.
const MIN_VISIBILITY: Duration = Duration::from_secs(3);

/// SNS and SQS clients, the transport's AWS backend; cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct AwsTransport {
    pub(super) sns: aws_sdk_sns::Client,
    pub(super) sqs: aws_sdk_sqs::Client,
}

impl AwsTransport {
    /// The ARN of the SNS topic `topic`, created when missing (a name ending in `.fifo`
    /// makes a FIFO topic).
    pub(super) async fn ensure_topic(&self, topic: &str) -> Result<String, TransportError> {
        let operation = format!("creating the SNS topic {topic}");
        let mut request = self.sns.create_topic().name(topic);
        if topic.ends_with(".fifo") {
            request = request.attributes("FifoTopic", "true");
        }
        let created = request
            .send()
            .await
            .map_err(TransportError::aws(operation.clone()))?;
        created
            .topic_arn()
            .map(str::to_owned)
            .ok_or_else(|| TransportError::incomplete(operation, "topic ARN"))
    }

    /// The publisher to `topic`, created when missing.
    pub(super) async fn publisher(&self, topic: &str) -> Result<SnsPublisher, TransportError> {
        let topic_arn = self.ensure_topic(topic).await?;
        Ok(SnsPublisher::new(
            self.sns.clone(),
            SnsPublisherConfig { topic_arn },
        ))
    }

    /// Brings the consumer's queue to the state `subscription` describes (its names
    /// already prefixed):
    /// - the queue and its dead-letter queue (`<queue>-dlq`, FIFO when the queue is),
    ///   created when missing; the dead-letter queue keeps messages 14 days;
    /// - the redrive policy: a message received `max_receives` times (default 5) moves
    ///   to the dead-letter queue;
    /// - the queue policy allowing each topic to send to it, and its visibility timeout;
    /// - one raw subscription per topic, with the filter policy on `type`.
    pub(super) async fn subscribe(
        &self,
        queue: &str,
        subscription: &Subscription,
    ) -> Result<EventSource, TransportError> {
        let names = QueueNames::of(queue)?;
        let dead_letter = self.ensure_queue(&names.dead_letter, names.fifo).await?;
        let queue = self.ensure_queue(&names.queue, names.fifo).await?;
        let mut topics = Vec::with_capacity(subscription.topics.len());
        for part in &subscription.topics {
            topics.push(self.ensure_topic(&part.topic).await?);
        }

        let max_receives = subscription.max_receives.unwrap_or(DEFAULT_MAX_RECEIVES);
        let visibility = subscription.visibility_timeout.max(MIN_VISIBILITY);
        let wanted = HashMap::from([
            (
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({
                    "deadLetterTargetArn": dead_letter.arn,
                    "maxReceiveCount": max_receives.max(1),
                })
                .to_string(),
            ),
            (
                QueueAttributeName::Policy,
                queue_policy(&queue.arn, &topics).to_string(),
            ),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            ),
        ]);
        self.set_queue_attributes(&queue, wanted).await?;
        self.set_queue_attributes(
            &dead_letter,
            HashMap::from([(
                QueueAttributeName::MessageRetentionPeriod,
                DEAD_LETTER_RETENTION.as_secs().to_string(),
            )]),
        )
        .await?;

        for (part, topic_arn) in subscription.topics.iter().zip(&topics) {
            self.ensure_subscription(topic_arn, &queue, part.filter.filter_policy())
                .await?;
        }

        let mut config = SqsConsumerConfig::new(queue.url);
        config.dead_letter_queue_url = Some(dead_letter.url);
        config.wait_time = subscription.wait_time;
        config.visibility_timeout = visibility;
        config.heartbeat_every = visibility / 3;
        if let Some(max_in_flight) = subscription.max_in_flight {
            config.max_in_flight = max_in_flight;
        }
        Ok(EventSource::new(
            subscription.consumer.clone(),
            vec![Part::Sqs {
                client: self.sqs.clone(),
                config: Box::new(config),
            }],
        ))
    }
}
