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
//!   transaction in WAL mode, committed and synced to the disk before `publish_batch`
//!   returns `Ok`;
//! - a consumer receives many messages in one transaction and settles those its handlers
//!   finished in the same one, without waiting for the disk: a power loss can undo its
//!   last receives and settlements (a handled message is delivered again, as
//!   at-least-once delivery allows), never a publish.
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

mod catch_panic;
mod consumer;
mod error;
mod filter;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
use store::{Db, Durability, Receipt, Received, Settle, SubscriptionRow};

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
    db: Mutex<Db>,
    /// Woken after a publish, a redrive, or a settlement that may free a group.
    published: Notify,
    /// How many publishes and redrives committed: a consumer that saw it move while it
    /// was busy looks again instead of waiting.
    publications: AtomicU64,
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
                db: Mutex::new(Db::new(connection)),
                published: Notify::new(),
                publications: AtomicU64::new(0),
            }),
        })
    }

    /// Creates `topic` unless it exists.
    ///
    /// # Errors
    /// [`BusError::Storage`].
    pub async fn create_topic(&self, topic: &str) -> Result<(), BusError> {
        let topic = topic.to_owned();
        self.write(Durability::Synced, move |connection| {
            store::create_topic(connection, &topic)
        })
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
        self.write(Durability::Synced, move |connection| {
            store::subscribe(connection, &subscription.name, &row)
        })
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
        self.read(move |connection| store::dead_letters(connection, &subscription))
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
            .write(Durability::Synced, move |connection| {
                store::redrive(connection, &subscription)
            })
            .await?;
        self.announce();
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
            .read(move |connection| store::backlog(connection, &subscription))
            .await?;
        Ok(Backlog {
            pending,
            oldest,
            dead_letters,
        })
    }

    /// Settles `settles` and receives up to `max` messages of `subscription`, in one
    /// transaction that does not wait for the disk ([`Durability::Written`]); see
    /// [`store::settle_and_receive`].
    pub(crate) async fn settle_and_receive(
        &self,
        subscription: &str,
        settles: Vec<(Receipt, Settle)>,
        max: usize,
        visibility: Duration,
    ) -> Result<(Vec<bool>, Vec<Received>), BusError> {
        let frees = settles
            .iter()
            .any(|(_, settle)| !matches!(settle, Settle::HideFor(_)));
        let subscription = subscription.to_owned();
        let outcome = self
            .write(Durability::Written, move |connection| {
                store::settle_and_receive(connection, &subscription, &settles, max, visibility)
            })
            .await?;
        if frees {
            // The next message of a group may be receivable now, for another consumer.
            self.inner.published.notify_waiters();
        }
        Ok(outcome)
    }

    /// Settles one received message on its own (a handler's heartbeat).
    pub(crate) async fn settle(&self, receipt: Receipt, settle: Settle) -> Result<(), BusError> {
        let frees = !matches!(settle, Settle::HideFor(_));
        self.write(Durability::Written, move |connection| {
            store::settle(connection, &receipt, &settle)
        })
        .await?;
        if frees {
            self.inner.published.notify_waiters();
        }
        Ok(())
    }

    pub(crate) fn published(&self) -> &Notify {
        &self.inner.published
    }

    /// How many publishes and redrives committed so far.
    pub(crate) fn publications(&self) -> u64 {
        self.inner.publications.load(Ordering::Acquire)
    }

    /// Tells consumers that messages were added: counted first, then woken, so a consumer
    /// that missed the wake-up sees the count move.
    fn announce(&self) {
        self.inner.publications.fetch_add(1, Ordering::AcqRel);
        self.inner.published.notify_waiters();
    }

    /// Runs `operation` on the connection, on the blocking pool, its commits as durable
    /// as `durability` says.
    async fn write<T: Send + 'static>(
        &self,
        durability: Durability,
        operation: impl FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        self.on_connection(Some(durability), operation).await
    }

    /// Runs `operation`, which only reads, on the connection, on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        self.on_connection(None, operation).await
    }

    async fn on_connection<T: Send + 'static>(
        &self,
        durability: Option<Durability>,
        operation: impl FnOnce(&mut Connection) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut db = inner.db.lock().unwrap_or_else(PoisonError::into_inner);
            let connection = match durability {
                Some(durability) => db.with(durability)?,
                None => db.connection(),
            };
            operation(connection)
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
            .write(Durability::Synced, move |connection| {
                let refs: Vec<&Envelope> = envelopes.iter().collect();
                store::publish(connection, &topic, &refs)
            })
            .await;
        if outcome.is_ok() {
            self.bus.announce();
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
