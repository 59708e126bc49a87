//! A transport-neutral way for a service to publish and subscribe: a [`Transport`] is the
//! embedded bus (feature `sqlite`) or SNS topics fanned out to SQS queues (features `sns`
//! and `sqs`). A service asks for a [publisher per topic](Transport::publisher) and
//! [subscribes by spec](Transport::subscribe) ([`Subscription`]: topics, event-type
//! filters, redrive and receive limits); the transport creates what is missing on its
//! backend, so the service never matches on one.
//!
//! # Example
//! ```
//! use dovetail_events::bus::EmbeddedBus;
//! use dovetail_events::transport::{Subscription, Transport, TypeFilter};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = Transport::embedded(EmbeddedBus::open_in_memory()?);
//! let publisher = transport.publisher("policy-events").await?;
//! let source = transport
//!     .subscribe(&Subscription::new("claim-service").to_topic("policy-events", TypeFilter::prefixes(["policy."])))
//!     .await?;
//! assert_eq!(source.parts(), ["claim-service-policy-events"]);
//! # let _ = publisher;
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
//! ```

#[cfg(all(feature = "sns", feature = "sqs"))]
mod aws;
mod dead_letters;
mod error;
mod source;
mod subscription;

#[cfg(feature = "metrics")]
pub use dead_letters::record_dead_letters;
pub use dead_letters::{DEAD_LETTER_SAMPLE_EVERY, DeadLetterDepth};
pub use error::{BoxedSource, TransportError};
pub use source::EventSource;
pub use subscription::{Subscription, TopicSubscription, TypeFilter};

use crate::envelope::Envelope;
use crate::publish::{PublishResult, Publisher};

/// Where a process's events go and come from; cheap to clone, shared by its services.
#[derive(Debug, Clone)]
pub struct Transport {
    backend: Backend,
    aws_name_prefix: String,
}

#[derive(Debug, Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Embedded(crate::bus::EmbeddedBus),
    #[cfg(all(feature = "sns", feature = "sqs"))]
    Aws(aws::AwsTransport),
}

impl Transport {
    /// The embedded bus: topics and subscriptions in its SQLite file.
    #[cfg(feature = "sqlite")]
    pub fn embedded(bus: crate::bus::EmbeddedBus) -> Self {
        Self {
            backend: Backend::Embedded(bus),
            aws_name_prefix: String::new(),
        }
    }

    /// SNS topics and SQS queues, through these clients (configured with their region,
    /// credentials and endpoints by the caller).
    #[cfg(all(feature = "sns", feature = "sqs"))]
    pub fn aws(sns: aws_sdk_sns::Client, sqs: aws_sdk_sqs::Client) -> Self {
        Self {
            backend: Backend::Aws(aws::AwsTransport { sns, sqs }),
            aws_name_prefix: String::new(),
        }
    }

    /// The same transport, with `prefix` before every topic and queue name on AWS (such
    /// as `staging-`), so several environments can share an account. The embedded bus
    /// lives in a file of its environment already and keeps names as they are.
    #[must_use]
    pub fn with_aws_name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.aws_name_prefix = prefix.into();
        self
    }

    /// The embedded bus, when that is the transport (for its dead letters and backlog).
    #[cfg(feature = "sqlite")]
    pub fn embedded_bus(&self) -> Option<&crate::bus::EmbeddedBus> {
        match &self.backend {
            Backend::Embedded(bus) => Some(bus),
            #[cfg(all(feature = "sns", feature = "sqs"))]
            Backend::Aws(_) => None,
        }
    }

    /// Whether this is the SNS/SQS transport.
    pub fn is_aws(&self) -> bool {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Embedded(_) => false,
            #[cfg(all(feature = "sns", feature = "sqs"))]
            Backend::Aws(_) => true,
        }
    }

    /// The name `name` (a topic or queue) has on this transport: prefixed on AWS.
    pub fn name_of(&self, name: &str) -> String {
        if self.is_aws() {
            format!("{}{name}", self.aws_name_prefix)
        } else {
            name.to_owned()
        }
    }

    /// The publisher to `topic`, creating the topic when missing (on SNS a name ending
    /// in `.fifo` makes a FIFO topic). Safe to call on every start.
    ///
    /// # Errors
    /// [`TransportError`] when the topic cannot be created; the source says why.
    pub async fn publisher(&self, topic: &str) -> Result<TopicPublisher, TransportError> {
        let topic = self.name_of(topic);
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Embedded(bus) => {
                bus.create_topic(&topic)
                    .await
                    .map_err(TransportError::bus(format!("creating topic {topic}")))?;
                Ok(TopicPublisher(PublisherKind::Bus(bus.publisher(&topic))))
            }
            #[cfg(all(feature = "sns", feature = "sqs"))]
            Backend::Aws(aws) => Ok(TopicPublisher(PublisherKind::Sns(
                aws.publisher(&topic).await?,
            ))),
        }
    }

    /// Brings the resources `subscription` describes to that state on this transport
    /// (see [`Subscription`] for their names), creating the topics when missing, and
    /// answers the source its consumer runs on. Safe to call on every start, from several
    /// processes at once: only what differs is changed.
    ///
    /// # Errors
    /// [`TransportError::InvalidSubscription`] for a subscription to no topic,
    /// [`TransportError::InvalidName`] for a name the backend cannot use, and the
    /// backend's refusals.
    pub async fn subscribe(
        &self,
        subscription: &Subscription,
    ) -> Result<EventSource, TransportError> {
        if subscription.topics.is_empty() {
            return Err(TransportError::InvalidSubscription {
                consumer: subscription.consumer.clone(),
                reason: "it reads no topic: add one with Subscription::to_topic".to_owned(),
            });
        }
        let mut named = subscription.clone();
        for part in &mut named.topics {
            part.topic = self.name_of(&part.topic);
        }
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Embedded(bus) => subscribe_bus(bus, subscription, &named).await,
            #[cfg(all(feature = "sns", feature = "sqs"))]
            Backend::Aws(aws) => {
                let queue = self.name_of(&subscription.queue_name());
                aws.subscribe(&queue, &named).await
            }
        }
    }
}

/// The embedded bus's default receive limit (its redeliveries back off in milliseconds).
#[cfg(feature = "sqlite")]
const BUS_DEFAULT_MAX_RECEIVES: u32 = 10;

#[cfg(feature = "sqlite")]
async fn subscribe_bus(
    bus: &crate::bus::EmbeddedBus,
    subscription: &Subscription,
    named: &Subscription,
) -> Result<EventSource, TransportError> {
    use crate::bus::{BusConsumerConfig, BusSubscription, SubscriptionFilter};

    let mut parts = Vec::with_capacity(named.topics.len());
    for (logical, part) in subscription.topics.iter().zip(&named.topics) {
        let name = subscription.bus_subscription_name(&logical.topic);
        bus.create_topic(&part.topic)
            .await
            .map_err(TransportError::bus(format!(
                "creating topic {}",
                part.topic
            )))?;
        let filter = match part.filter.filter_policy() {
            None => SubscriptionFilter::all(),
            Some(policy) => SubscriptionFilter::from_json(&policy).map_err(|error| {
                TransportError::InvalidSubscription {
                    consumer: subscription.consumer.clone(),
                    reason: format!("its filter on {} is not usable: {error}", part.topic),
                }
            })?,
        };
        bus.subscribe(BusSubscription {
            name: name.clone(),
            topic: part.topic.clone(),
            filter,
            max_receives: subscription
                .max_receives
                .unwrap_or(BUS_DEFAULT_MAX_RECEIVES)
                .max(1),
        })
        .await
        .map_err(TransportError::bus(format!(
            "subscribing {name} to {}",
            part.topic
        )))?;
        let mut config = BusConsumerConfig::new(name);
        config.visibility_timeout = subscription.visibility_timeout;
        config.heartbeat_every = subscription.visibility_timeout / 3;
        if let Some(max_in_flight) = subscription.max_in_flight {
            config.max_in_flight = max_in_flight;
        }
        parts.push(source::Part::Bus {
            bus: bus.clone(),
            config,
        });
    }
    Ok(EventSource::new(subscription.consumer.clone(), parts))
}

/// The publisher of one topic, on whichever transport made it.
#[derive(Debug, Clone)]
pub struct TopicPublisher(PublisherKind);

#[derive(Debug, Clone)]
enum PublisherKind {
    #[cfg(feature = "sqlite")]
    Bus(crate::bus::BusPublisher),
    #[cfg(all(feature = "sns", feature = "sqs"))]
    Sns(crate::publish::SnsPublisher),
}

impl Publisher for TopicPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        match &self.0 {
            #[cfg(feature = "sqlite")]
            PublisherKind::Bus(publisher) => publisher.publish_batch(envelopes).await,
            #[cfg(all(feature = "sns", feature = "sqs"))]
            PublisherKind::Sns(publisher) => publisher.publish_batch(envelopes).await,
        }
    }
}
