//! The embedded bus: durable topics and subscriptions in a SQLite file, for services that
//! run without a broker (the default backend of the local stack).
//!
//! It offers what the services need of SNS + SQS, with the same [`Publisher`] port and the
//! same handler contract as the SQS consumer:
//! - topics fan out to subscriptions, each with an SNS-style [`SubscriptionFilter`];
//! - a received message is hidden for a visibility timeout and redelivered unless settled;
//! - each aggregate is a message group, delivered strictly in order, one message at a
//!   time, while different aggregates are handled in parallel;
//! - a message received more than `max_receives` times, or rejected by its handler, moves
//!   to the subscription's dead letters with its reason, where [`EmbeddedBus::redrive`]
//!   can return it;
//! - a publish wakes idle consumers at once (polling is only the fallback);
//! - an accepted event survives a crash of the process: every publish is one SQLite
//!   transaction in WAL mode, committed before `publish_batch` returns `Ok`.
//!
//! # Example
//! ```
//! use dovetail_events::bus::{BusSubscription, EmbeddedBus, SubscriptionFilter};
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("bus-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let bus = EmbeddedBus::open(dir.join("bus.db"))?;
//! bus.create_topic("policy-events").await?;
//! bus.subscribe(BusSubscription {
//!     name: "claim-service.policies".into(),
//!     topic: "policy-events".into(),
//!     filter: SubscriptionFilter::all(),
//!     max_receives: 5,
//! })
//! .await?;
//! let publisher = bus.publisher("policy-events");
//! # Ok(())
//! # }
//! ```

mod consumer;
mod error;
mod filter;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

pub use consumer::{BusConsumer, BusConsumerConfig};
pub use error::BusError;
pub use filter::{FilterError, SubscriptionFilter};
pub use store::DeadLetter;

use crate::envelope::{Envelope, TransportLimit, check_size};
use crate::publish::rounds::publish_in_rounds;
use crate::publish::{PublishError, PublishResult, Publisher};
use store::{Received, Settle, SubscriptionRow};

/// The largest message the embedded bus accepts: 1 MiB of body and attributes.
pub const EMBEDDED_BUS_LIMIT: TransportLimit = TransportLimit {
    name: "embedded bus",
    max_bytes: 1_048_576,
};

/// A subscription of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusSubscription {
    /// Its name, unique in the bus; consumers receive by this name.
    pub name: String,
    /// The topic it receives from.
    pub topic: String,
    /// Which messages it receives.
    pub filter: SubscriptionFilter,
    /// Receives after which an unsettled message is dead-lettered (at least 1).
    pub max_receives: u32,
}

/// Pending work of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backlog {
    /// Messages not yet handled (dead letters excluded).
    pub pending: u64,
    /// Age of the oldest of them.
    pub oldest: Option<Duration>,
    /// Messages dead-lettered and waiting for an operator ([`EmbeddedBus::redrive`]).
    pub dead_letters: u64,
}

/// A durable bus in one SQLite file; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connection: Mutex<Connection>,
    published: Notify,
}

impl EmbeddedBus {
    /// Opens (or creates) the bus stored at `path`.
    ///
    /// # Errors
    /// [`BusError::Storage`] when the file cannot be opened or is not a bus database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BusError> {
        let connection = Connection::open(path.as_ref()).map_err(|error| {
            BusError::storage(format!("opening {}", path.as_ref().display()), error)
        })?;
        Self::with_connection(connection)
    }

    /// A bus in memory: gone with the process. For tests of logic only.
    ///
    /// # Errors
    /// [`BusError::Storage`] when SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<Self, BusError> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(connection: Connection) -> Result<Self, BusError> {
        store::open(&connection)?;
        Ok(Self {
            inner: Arc::new(Inner {
                connection: Mutex::new(connection),
                published: Notify::new(),
            }),
        })
    }

    /// Creates `topic` unless it exists.
    ///
    /// # Errors
    /// [`BusError::Storage`].
    pub async fn create_topic(&self, topic: &str) -> Result<(), BusError> {
        let topic = topic.to_owned();
        self.run(move |connection| store::create_topic(connection, &topic))
            .await
    }

    /// Creates `subscription` unless the same one exists.
    ///
    /// # Errors
    /// [`BusError::UnknownTopic`], [`BusError::SubscriptionConflict`] when one of the same
    /// name has other settings, [`BusError::Storage`].
    pub async fn subscribe(&self, subscription: BusSubscription) -> Result<(), BusError> {
        let row = SubscriptionRow {
            topic: subscription.topic,
            filter: subscription.filter,
            max_receives: subscription.max_receives.max(1),
        };
        self.run(move |connection| store::subscribe(connection, &subscription.name, &row))
            .await
    }

    /// A [`Publisher`] to `topic`.
    pub fn publisher(&self, topic: &str) -> BusPublisher {
        BusPublisher {
            bus: self.clone(),
            topic: topic.to_owned(),
        }
    }

    /// The dead letters of `subscription`, oldest first.
    ///
    /// # Errors
    /// [`BusError::Storage`].
    pub async fn dead_letters(&self, subscription: &str) -> Result<Vec<DeadLetter>, BusError> {
        let subscription = subscription.to_owned();
        self.run(move |connection| store::dead_letters(connection, &subscription))
            .await
    }

    /// Returns every dead letter of `subscription` to it, receive counts reset; returns
    /// how many.
    ///
    /// # Errors
    /// [`BusError::Storage`].
    pub async fn redrive(&self, subscription: &str) -> Result<usize, BusError> {
        let subscription = subscription.to_owned();
        let moved = self
            .run(move |connection| store::redrive(connection, &subscription))
            .await?;
        self.inner.published.notify_waiters();
        Ok(moved)
    }

    /// How much `subscription` has left to do: the consumer-lag metric, and its dead
    /// letters (the `dovetail_consumer_dead_letters` gauge).
    ///
    /// # Errors
    /// [`BusError::Storage`].
    pub async fn backlog(&self, subscription: &str) -> Result<Backlog, BusError> {
        let subscription = subscription.to_owned();
        let (pending, oldest, dead_letters) = self
            .run(move |connection| store::backlog(connection, &subscription))
            .await?;
        Ok(Backlog {
            pending,
            oldest,
            dead_letters,
        })
    }

    pub(crate) async fn receive(
        &self,
        subscription: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Received>, BusError> {
        let subscription = subscription.to_owned();
        self.run(move |connection| store::receive(connection, &subscription, max, visibility))
            .await
    }

    pub(crate) async fn settle(&self, message: Received, settle: Settle) -> Result<(), BusError> {
        let wake = !matches!(settle, Settle::HideFor(_));
        self.run(move |connection| store::settle(connection, &message, &settle))
            .await?;
        if wake {
            // The next message of the group may be receivable now.
            self.inner.published.notify_waiters();
        }
        Ok(())
    }

    pub(crate) fn published(&self) -> &Notify {
        &self.inner.published
    }

    async fn run<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut connection = inner
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            operation(&mut connection)
        })
        .await
        .map_err(|error| BusError::storage("running the bus's storage task", error))?
    }
}

/// Publishes to one topic of an [`EmbeddedBus`].
#[derive(Debug, Clone)]
pub struct BusPublisher {
    bus: EmbeddedBus,
    topic: String,
}

impl BusPublisher {
    async fn send_round(&self, round: Vec<&Envelope>) -> Vec<PublishResult> {
        let mut results: Vec<Option<PublishResult>> = round.iter().map(|_| None).collect();
        let mut accepted = Vec::with_capacity(round.len());
        for (index, envelope) in round.iter().enumerate() {
            match check_size(envelope, EMBEDDED_BUS_LIMIT) {
                Ok(()) => accepted.push(index),
                Err(too_large) => results[index] = Some(Err(PublishError::TooLarge(too_large))),
            }
        }
        let envelopes: Vec<Envelope> = accepted.iter().map(|&index| round[index].clone()).collect();
        let topic = self.topic.clone();
        let outcome = self
            .bus
            .run(move |connection| {
                let refs: Vec<&Envelope> = envelopes.iter().collect();
                store::publish(connection, &topic, &refs)
            })
            .await;
        if outcome.is_ok() {
            self.bus.inner.published.notify_waiters();
        }
        for index in accepted {
            results[index] = Some(match &outcome {
                Ok(()) => Ok(()),
                Err(BusError::UnknownTopic(topic)) => Err(PublishError::Rejected {
                    event_id: round[index].id(),
                    code: "UnknownTopic".to_owned(),
                    message: format!("the embedded bus has no topic `{topic}`"),
                }),
                Err(error) => Err(PublishError::Unavailable {
                    reason: error.to_string(),
                }),
            });
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(PublishError::Unavailable {
                        reason: "no result was recorded".to_owned(),
                    })
                })
            })
            .collect()
    }
}

impl Publisher for BusPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        publish_in_rounds(envelopes, |round| self.send_round(round)).await
    }
}
