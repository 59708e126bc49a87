//! How a service reaches its events transport, whichever it was configured with: the
//! embedded bus (default) or SNS topics fanned out to SQS queues (feature `aws`).
//!
//! [`EventsPublisher`] is what a service's relay publishes through; [`EventSource`] is
//! what its consumers read from; [`run_relay`] and [`EventSource::run`] run them until
//! the service shuts down.

use dovetail_events::bus::{BusConsumer, BusConsumerConfig, BusPublisher, EmbeddedBus};
use dovetail_events::consumer::{ConsumerReport, Delivery, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishResult, Publisher};
use dovetail_outbox::OutboxStore;
use dovetail_outbox::relay::{Relay, RelayConfig, RelayReport};
use tower::Service;

use crate::Shutdown;

/// The publisher of a service's events.
#[derive(Debug, Clone)]
pub enum EventsPublisher {
    /// To a topic of the embedded bus.
    Bus(BusPublisher),
    /// To an SNS topic.
    #[cfg(feature = "aws")]
    Sns(dovetail_events::publish::SnsPublisher),
}

impl Publisher for EventsPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        match self {
            Self::Bus(publisher) => publisher.publish_batch(envelopes).await,
            #[cfg(feature = "aws")]
            Self::Sns(publisher) => publisher.publish_batch(envelopes).await,
        }
    }
}

/// The outbox store a service's relay reads, on whichever backend the service keeps its
/// data in.
#[derive(Debug, Clone)]
pub enum RelayStore {
    /// The service's SQLite file.
    Sqlite(dovetail_outbox::sqlite::SqliteOutboxStore),
    /// The service's DynamoDB table.
    #[cfg(feature = "aws")]
    DynamoDb(dovetail_outbox::dynamodb::DynamoDbOutboxStore),
}

/// A service's outbox relay, ready to run: its store, publisher and configuration.
#[derive(Debug)]
pub struct OutboxRelay {
    /// Where the committed events are.
    pub store: RelayStore,
    /// Where they go.
    pub publisher: EventsPublisher,
    /// How the relay works.
    pub config: RelayConfig,
}

impl OutboxRelay {
    /// Runs the relay until `shutdown`.
    ///
    /// # Errors
    /// When the relay stops on an error it cannot carry on from.
    pub async fn run(
        self,
        shutdown: Shutdown,
    ) -> Result<RelayReport, dovetail_outbox::OutboxError> {
        match self.store {
            RelayStore::Sqlite(store) => {
                run_relay(store, self.publisher, self.config, shutdown).await
            }
            // The DynamoDB relay's future is large (SDK request state): on the heap.
            #[cfg(feature = "aws")]
            RelayStore::DynamoDb(store) => {
                Box::pin(run_relay(store, self.publisher, self.config, shutdown)).await
            }
        }
    }
}

/// Runs a relay over `store` until `shutdown`, logging its report.
///
/// # Errors
/// When the relay stops on an error it cannot carry on from (its configuration).
pub async fn run_relay<S>(
    store: S,
    publisher: EventsPublisher,
    config: RelayConfig,
    shutdown: Shutdown,
) -> Result<RelayReport, dovetail_outbox::OutboxError>
where
    S: OutboxStore + Send + Sync + 'static,
{
    let name = config.name.clone();
    let report = Relay::new(store, publisher, config)
        .run(async move { shutdown.cancelled().await })
        .await?;
    tracing::info!(relay = %name, ?report, "relay stopped");
    Ok(report)
}

/// Where a consumer reads events from.
#[derive(Debug, Clone)]
pub enum EventSource {
    /// A subscription of the embedded bus.
    Bus {
        /// The bus.
        bus: EmbeddedBus,
        /// The subscription's name.
        subscription: String,
    },
    /// An SQS queue subscribed to SNS topics.
    #[cfg(feature = "aws")]
    Sqs {
        /// The client.
        client: aws_sdk_sqs::Client,
        /// The consumer's configuration (queue URL, DLQ, concurrency).
        config: Box<dovetail_events::consumer::sqs::SqsConsumerConfig>,
    },
}

impl EventSource {
    /// The subscription or queue name, for logs.
    pub fn name(&self) -> &str {
        match self {
            Self::Bus { subscription, .. } => subscription,
            #[cfg(feature = "aws")]
            Self::Sqs { config, .. } => config.queue_name(),
        }
    }

    /// Runs `handler` over the source's deliveries until `shutdown`, then drains.
    ///
    /// # Errors
    /// When the consumer cannot start (the subscription or queue does not exist).
    pub async fn run<H>(self, handler: H, shutdown: Shutdown) -> Result<ConsumerReport, String>
    where
        H: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        H::Future: Send + 'static,
    {
        let stopped = async move { shutdown.cancelled().await };
        let name = self.name().to_owned();
        let report = match self {
            Self::Bus { bus, subscription } => {
                BusConsumer::new(bus, BusConsumerConfig::new(subscription))
                    .run(handler, stopped)
                    .await
                    .map_err(|error| error.to_string())?
            }
            #[cfg(feature = "aws")]
            Self::Sqs { client, config } => {
                dovetail_events::consumer::sqs::SqsConsumer::new(client, *config)
                    .run(handler, stopped)
                    .await
                    .map_err(|error| error.to_string())?
            }
        };
        tracing::info!(consumer = %name, ?report, "consumer stopped");
        Ok(report)
    }
}

/// The events transport a process was configured with, shared by its services.
#[derive(Debug, Clone)]
pub enum Transport {
    /// The embedded bus (one SQLite file shared by the services of a stack).
    Embedded(EmbeddedBus),
    /// SNS and SQS.
    #[cfg(feature = "aws")]
    Aws(crate::aws::AwsClients),
}

impl Transport {
    /// The publisher to the topic `topic`, creating the topic when missing.
    ///
    /// # Errors
    /// When the topic cannot be created.
    pub async fn publisher(&self, topic: &str) -> Result<EventsPublisher, String> {
        match self {
            Self::Embedded(bus) => {
                bus.create_topic(topic).await.map_err(|error| {
                    format!("creating topic {topic} on the embedded bus: {error}")
                })?;
                Ok(EventsPublisher::Bus(bus.publisher(topic)))
            }
            #[cfg(feature = "aws")]
            Self::Aws(clients) => clients.publisher(topic).await,
        }
    }

    /// The AWS clients, for a service that keeps its data in DynamoDB.
    ///
    /// # Errors
    /// On the embedded bus: DynamoDB storage goes with the AWS transport (the message
    /// says which settings to change).
    #[cfg(feature = "aws")]
    pub fn aws_clients(&self) -> anyhow::Result<&crate::aws::AwsClients> {
        match self {
            Self::Aws(clients) => Ok(clients),
            Self::Embedded(_) => anyhow::bail!(
                "storage.backend = dynamodb needs AWS clients: set events.backend = aws too \
                 (the stack's --aws switch sets both)"
            ),
        }
    }
}
