//! What a process was configured with for its events ([`Transport`]: the embedded bus, or
//! AWS clients with feature `aws`), and the type of a service's outbox relay.
//!
//! Publishing and subscribing are dovetail-events' [`Transport`](dovetail_events::transport::Transport),
//! which [`Transport::events`] hands out with the service's name prefix; the relay is
//! dovetail-outbox's, over [`AnyOutboxStore`].

use dovetail_events::bus::EmbeddedBus;
pub use dovetail_events::transport::{EventSource, Subscription, TypeFilter};
use dovetail_outbox::AnyOutboxStore;
use dovetail_outbox::relay::Relay;

use crate::config::EventsConfig;

/// The publisher of a service's events: dovetail-events' publisher of its topic.
pub type EventsPublisher = dovetail_events::transport::TopicPublisher;

/// A service's outbox relay: over the store of whichever backend the service keeps its
/// data in, publishing to its topic.
pub type OutboxRelay = Relay<AnyOutboxStore, EventsPublisher>;

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
    pub fn aws_clients(&self) -> Result<&crate::aws::AwsClients, crate::StartError> {
        match self {
            Self::Aws(clients) => Ok(clients),
            Self::Embedded(_) => Err(crate::StartError::DynamoDbWithoutAws),
        }
    }
}
