//! The transactional outbox: a service's write and the events about it commit together,
//! and a relay publishes every committed event to the broker, in order per aggregate.
//!
//! - A **unit of work** ([`sqlite::SqliteUnitOfWork`], feature `sqlite`) runs the service's own
//!   writes and appends events in one database transaction. It stamps each event with its
//!   aggregate's next sequence under optimistic concurrency on the aggregate's version: a
//!   lost race is [`OutboxError::Conflict`], and nothing of the transaction is kept.
//! - Both units of work implement one append port, [`AppendEvents`], so code that turns
//!   a domain change into events works on either database.
//! - An **outbox store** ([`OutboxStore`]) is what a relay sees of the committed events:
//!   the ready ones in commit order, with per-aggregate order, plus leases with fencing
//!   tokens so that several relay instances can run and a dead one's work is taken over.
//! - A **relay** ([`relay::Relay`]) takes the lease, publishes ready events through any
//!   `dovetail_events::publish::Publisher`, marks them published, backs off and finally
//!   parks events that keep failing, and wakes at once when a commit in its process
//!   signals it (polling is the fallback).
//!
//! Guarantees (each tested by trying to break it):
//! - a business write and its events commit atomically, or neither does;
//! - every committed event is published at least once, even when relays are killed at
//!   any point; no event of a rolled-back write is ever published;
//! - the broker never accepts sequence `n + 1` of an aggregate before `n`;
//! - lag is observable ([`OutboxBacklog`]): pending count, oldest pending age, parked;
//! - published records are deleted, so the outbox does not grow without bound.
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `sqlite` (default) | `sqlite::SqliteOutbox`: unit of work and store on SQLite |
//! | `dynamodb` | `dynamodb::DynamoDbOutbox`: unit of work and store on DynamoDB; `dynamodb::StreamsRelay`, a relay fed by the table's stream |
//! | `metrics` | relay metrics through the `metrics` facade |

#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
mod any_store;
mod append;
mod committed;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
mod error;
mod memory;
mod record;
pub mod relay;
mod republish;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod store;

#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
pub use any_store::AnyOutboxStore;
pub use append::AppendEvents;
pub use committed::Committed;
pub use error::OutboxError;
pub use memory::MemoryOutboxStore;
pub use record::{ExpectedVersion, Failure, OutboxBacklog, OutboxRecord, Position};
pub use store::{OutboxStore, RelayLease};

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
