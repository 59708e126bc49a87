//! What a process was configured with for its events ([`Transport`]: the embedded bus, or
//! AWS clients with feature `aws`), and a service's outbox relay over its store.
//!
//! Publishing and subscribing are dovetail-events' [`Transport`](dovetail_events::transport::Transport),
//! which [`Transport::events`] hands out with the service's name prefix; [`run_relay`] runs
//! a relay until the service shuts down.

use dovetail_events::bus::EmbeddedBus;
pub use dovetail_events::transport::{EventSource, Subscription, TypeFilter};
use dovetail_outbox::OutboxStore;
use dovetail_outbox::relay::{Relay, RelayConfig, RelayReport};

use crate::Shutdown;
use crate::config::EventsConfig;

/// The publisher of a service's events: dovetail-events' publisher of its topic.
pub type EventsPublisher = dovetail_events::transport::TopicPublisher;

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
    /// The events transport of a service configured with `events`: the embedded bus, or
    /// SNS/SQS with `events.aws_name_prefix` before every topic and queue name.
    #[cfg_attr(not(feature = "aws"), allow(unused_variables))]
    pub fn events(&self, events: &EventsConfig) -> dovetail_events::transport::Transport {
        match self {
            Self::Embedded(bus) => dovetail_events::transport::Transport::embedded(bus.clone()),
            #[cfg(feature = "aws")]
            Self::Aws(clients) => clients.transport(&events.aws_name_prefix),
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
