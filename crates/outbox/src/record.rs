//! What an outbox holds: committed events with their place in commit order, and what the
//! relay reports back about them.

use std::time::{Duration, SystemTime};

use dovetail_events::envelope::Envelope;

/// A record's place in its outbox: commit order. Unique among the records present, and
/// higher for a newer record than for every older one still there.
pub type Position = u64;

/// A committed event waiting for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRecord {
    /// Its place in commit order.
    pub position: Position,
    /// The event, stamped with its aggregate's sequence.
    pub envelope: Envelope,
    /// How many times publishing it failed so far.
    pub attempts: u32,
}

impl OutboxRecord {
    /// A record at `position` holding `envelope`, never attempted.
    pub fn new(position: Position, envelope: Envelope) -> Self {
        Self {
            position,
            envelope,
            attempts: 0,
        }
    }
}

/// A publish that failed, as the relay reports it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The record.
    pub position: Position,
    /// Why, kept with the record for operators.
    pub reason: String,
    /// When to try again; `None` parks the record: it is not retried until an operator
    /// releases it, and it holds back its aggregate's later events meanwhile.
    pub retry_at: Option<SystemTime>,
}

/// The version an aggregate must have for a unit of work to append to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpectedVersion {
    /// The aggregate must have no events yet (it is being created).
    New,
    /// The aggregate must have exactly this many events (its last sequence).
    Exactly(u64),
    /// Whatever the aggregate's version is: append after it. For events that do not
    /// depend on the aggregate's state; the sequence still orders them.
    Any,
}

/// How far behind the relay is: the lag metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxBacklog {
    /// Committed events not yet published (parked ones included).
    pub pending: u64,
    /// Events parked after failing too often.
    pub parked: u64,
    /// Age of the oldest pending event.
    pub oldest_pending: Option<Duration>,
}
