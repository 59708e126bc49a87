//! The outbox on SQLite (feature `sqlite`): the [`SqliteUnitOfWork`] that commits a service's
//! writes and its events in one transaction of the service's own connection, and the
//! [`SqliteOutboxStore`] a relay reads them from.
//!
//! One database file holds the service's tables and the outbox's three:
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `dovetail_outbox` | committed, unpublished event | `position` (commit order), `event_id`, `aggregate_type`, `aggregate_id`, `sequence`, `envelope` (JSON), `committed_at_ms`, `attempts`, `retry_at_ms`, `parked`, `last_error` |
//! | `dovetail_outbox_aggregates` | aggregate that has events | `aggregate_type`, `aggregate_id`, `version` (its last sequence) |
//! | `dovetail_outbox_lease` | outbox relay lease | `name`, `owner`, `fencing_token`, `held_until_ms` |
//!
//! Never delete rows of `dovetail_outbox_aggregates`: an aggregate's version is the last
//! sequence its consumers saw, and an aggregate that started again at 1 would look to
//! them like a replay of events they already handled.
//!
//! # Durability
//!
//! A unit of work commits on the connection the service opened, with that connection's
//! settings: the events are exactly as durable as the business write they belong to,
//! and atomic with it whatever the settings. For writes that must survive a power loss,
//! open it in WAL mode with `synchronous = FULL`.
//!
//! With `synchronous = NORMAL` every commit survives a crash of the process (SIGKILL
//! included: it is in the WAL file, which the kernel keeps). What a power loss can cost:
//! - the commits written to the WAL since it was last synced, business rows and their
//!   events together, never one without the other in the database. The WAL is synced by
//!   every checkpoint (SQLite's automatic one when the WAL passes `wal_autocheckpoint`
//!   pages, 1,000 by default; the relay store's idle one, at most once a second) and by
//!   any commit with `synchronous = FULL` on the same file;
//! - if the relay published some of those events before the power went (it publishes
//!   within milliseconds of a commit), consumers keep what they received: events whose
//!   business write is gone. The aggregate's version goes back with the lost commit, so
//!   its next event gets the same sequence again, with another event id, and a consumer
//!   that keeps the highest version ignores it as a replay. Where that matters, commit
//!   with `FULL`.
//!
//! The store's own connection uses WAL with `synchronous = NORMAL`: it only deletes and
//! marks records, and a lost mark only publishes an event again, which at-least-once
//! delivery allows.
//!
//! # Example
//! ```
//! use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
//! use dovetail_outbox::ExpectedVersion;
//! use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};
//! use rusqlite::Connection;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct PolicyIssued { policy_id: String }
//! impl Event for PolicyIssued {
//!     const TYPE: &'static str = "policy.issued";
//!     const VERSION: u32 = 1;
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut db = Connection::open_in_memory()?; // the service's own database
//! db.execute_batch("CREATE TABLE policies (id TEXT PRIMARY KEY, premium TEXT)")?;
//! SqliteOutbox::create_schema(&db)?;
//! let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service")?));
//!
//! let mut uow = outbox.begin(&mut db)?;
//! uow.transaction().execute("INSERT INTO policies VALUES ('pol-1', '120.00')", [])?;
//! uow.append(
//!     AggregateRef::parse("policy", "pol-1")?,
//!     ExpectedVersion::New,
//!     &PolicyIssued { policy_id: "pol-1".into() },
//!     EventMetadata::default(),
//! )?;
//! let committed = uow.commit()?;
//! assert_eq!(committed.version(&AggregateRef::parse("policy", "pol-1")?), Some(1));
//! # Ok(())
//! # }
//! ```

mod ready;
mod schema;
mod store;
mod unit_of_work;

use std::sync::Arc;

use dovetail_events::envelope::Source;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::Notify;

pub use store::SqliteOutboxStore;
pub use unit_of_work::SqliteUnitOfWork;

use crate::OutboxError;
use schema::OrStorage;

/// How a service's outbox is set up.
///
/// ```
/// use dovetail_events::envelope::Source;
/// use dovetail_outbox::sqlite::OutboxConfig;
///
/// let config = OutboxConfig::new(Source::parse("claim-service")?);
/// assert_eq!(config.source.as_str(), "claim-service");
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// The service whose events these are: the `source` of every envelope.
    pub source: Source,
}

impl OutboxConfig {
    /// The configuration of `source`'s outbox.
    pub fn new(source: Source) -> Self {
        Self { source }
    }
}

/// A service's outbox on SQLite: begins [units of work](SqliteUnitOfWork) on the service's
/// connection, and tells the relay in the same process when one commits.
///
/// Make one per service and share it (it is cheap to clone; clones share the commit
/// signal). See the [module documentation](self) for the tables and an example.
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    source: Source,
    commits: Arc<Notify>,
}

impl SqliteOutbox {
    /// The outbox of `config.source`.
    pub fn new(config: OutboxConfig) -> Self {
        Self {
            source: config.source,
            commits: Arc::new(Notify::new()),
        }
    }

    /// The service whose events these are.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The signal every commit with events gives: a relay in the same process waits on it
    /// to publish at once instead of at its next poll.
    ///
    /// A commit wakes every task waiting at that moment, and leaves one permit for a task
    /// that is not waiting yet (busy publishing), so a commit that lands between a relay's
    /// empty fetch and its wait is not missed. Commits by other processes do not signal:
    /// polling covers them.
    ///
    /// ```
    /// # use dovetail_outbox::sqlite::SqliteOutbox;
    /// # async fn relay_loop(outbox: SqliteOutbox) {
    /// let commits = outbox.commits();
    /// loop {
    ///     // ... publish what is ready, then:
    ///     tokio::select! {
    ///         () = commits.notified() => {}
    ///         () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn commits(&self) -> Arc<Notify> {
        Arc::clone(&self.commits)
    }

    /// Creates the outbox's tables and index in the service's database unless they exist.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] when SQLite refuses the statements (a read-only file, or
    /// a table of the same name with other columns).
    pub fn create_schema(connection: &Connection) -> Result<(), OutboxError> {
        connection
            .execute_batch(schema::SCHEMA)
            .or_storage("creating the outbox tables")
    }

    /// Prepares a connection to a database holding an outbox, the service's own
    /// included: WAL mode (the relay reads while the service writes), a patient busy
    /// handler ([`wait_while_busy`]), and the outbox tables.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] when WAL mode cannot be set (another connection is in a
    /// transaction) or the tables cannot be created.
    pub fn prepare_connection(connection: &Connection) -> Result<(), OutboxError> {
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .or_storage("switching the database to WAL")?;
        connection
            .busy_handler(Some(wait_while_busy))
            .or_storage("installing the busy handler")?;
        Self::create_schema(connection)
    }

    /// Begins a unit of work on the service's connection: a `BEGIN IMMEDIATE`
    /// transaction, which takes the database's write lock at once, so the versions it
    /// checks at commit cannot change under it and the commit cannot fail with
    /// `SQLITE_BUSY` halfway. Other writers (the relay's store among them) wait for it
    /// up to their busy timeout: keep units of work short.
    ///
    /// The tables must exist ([`create_schema`](Self::create_schema)).
    ///
    /// # Errors
    /// [`OutboxError::Storage`] when the transaction cannot begin (the write lock stayed
    /// taken for the whole busy timeout of `connection`, or a transaction is already open
    /// on it).
    pub fn begin<'c>(
        &self,
        connection: &'c mut Connection,
    ) -> Result<SqliteUnitOfWork<'c>, OutboxError> {
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .or_storage("beginning a unit of work")?;
        Ok(SqliteUnitOfWork::new(
            transaction,
            self.source.clone(),
            Arc::clone(&self.commits),
        ))
    }
}

/// SQLite's busy handler for connections that share an outbox: when another connection
/// holds the write lock, wait in 250 µs steps for the first 10 ms, then in 2 ms steps, for
/// about 5 s in all, then give up (`SQLITE_BUSY`).
///
/// SQLite's own `busy_timeout` sleeps in steps that grow to 100 ms, so a unit of work that
/// meets the relay's short write can wait far longer than the write took; with this
/// handler the wait follows the lock closely (it cut the relay's p99 commit-to-published
/// latency by an order of magnitude in the relay benchmark).
pub fn wait_while_busy(attempt: i32) -> bool {
    let attempt = u32::try_from(attempt).unwrap_or(u32::MAX);
    let pause = match attempt {
        0..40 => std::time::Duration::from_micros(250),
        40..2_540 => std::time::Duration::from_millis(2),
        _ => return false,
    };
    std::thread::sleep(pause);
    true
}
