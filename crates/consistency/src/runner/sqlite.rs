//! [`SqliteRunStore`]: run records and the runners' lease in a SQLite file, shared by
//! every runner that opens it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::BoxError;
use crate::runner::record::{RunId, RunRecord, Trigger};
use crate::runner::store::{RunLease, RunStore};
use crate::sqlite::now_ms;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS consistency_runs (
    run_id        TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    scheduled     INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    record        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consistency_runs_by_status ON consistency_runs (status, run_id);
CREATE TABLE IF NOT EXISTS consistency_lease (
    name          TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    token         INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

/// Run records and the lease in the tables `consistency_runs` (one row per run, the
/// record as JSON) and `consistency_lease` of a SQLite file. Runners in several processes
/// that open the same file share the lease: one runs at a time. The lease is measured
/// on the wall clock of the machine holding the file's processes.
///
/// ```
/// use dovetail_consistency::SqliteRunStore;
///
/// let store = SqliteRunStore::open_in_memory().unwrap();
/// # let _ = store;
/// ```
#[derive(Debug, Clone)]
pub struct SqliteRunStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteRunStore {
    /// Opens (creating when missing) the file at `path` and its tables.
    ///
    /// # Errors
    /// When the file cannot be opened or the tables created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, rusqlite::Error> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        Self::with_connection(connection)
    }

    /// A store in memory (for tests: nothing is shared or kept).
    ///
    /// # Errors
    /// When the tables cannot be created.
    pub fn open_in_memory() -> Result<Self, rusqlite::Error> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(connection: Connection) -> Result<Self, rusqlite::Error> {
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Runs `work` on the connection on a blocking thread.
    fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T, BoxError> + Send + 'static,
    ) -> BoxFuture<'static, Result<T, BoxError>> {
        let connection = Arc::clone(&self.connection);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut connection = connection
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                work(&mut connection)
            })
            .await
            .map_err(|error| format!("{what}: the blocking task failed: {error}"))?
            .map_err(|error| format!("{what} in the SQLite run store: {error}").into())
        })
    }
}

fn parse(json: &str) -> Result<RunRecord, BoxError> {
    serde_json::from_str(json)
        .map_err(|error| format!("a stored run record is not valid: {error}").into())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl RunStore for SqliteRunStore {
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>> {
        let owner = owner.to_owned();
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.run("taking the runners' lease", move |connection| {
            let now = now_ms();
            let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held: Option<(String, i64, i64)> = transaction
                .query_row(
                    "SELECT owner, token, expires_at_ms FROM consistency_lease WHERE name = 'runner'",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let token = match held {
                Some((holder, token, _)) if holder == owner => token,
                Some((_, token, expires)) if expires <= now => token + 1,
                Some(_) => return Ok(None),
                None => 1,
            };
            transaction.execute(
                "INSERT INTO consistency_lease (name, owner, token, expires_at_ms) VALUES ('runner', ?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET owner = ?1, token = ?2, expires_at_ms = ?3",
                params![owner, token, now.saturating_add(ttl_ms)],
            )?;
            transaction.commit()?;
            Ok(Some(RunLease {
                token: u64::try_from(token).unwrap_or(0),
            }))
        })
    }

    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>> {
        let owner = owner.to_owned();
        self.run("giving up the runners' lease", move |connection| {
            connection.execute(
                "UPDATE consistency_lease SET expires_at_ms = 0 WHERE name = 'runner' AND owner = ?1",
                [owner],
            )?;
            Ok(())
        })
    }

    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        let record = record.clone();
        self.run("saving a run record", move |connection| {
            let json = serde_json::to_string(&record)?;
            connection.execute(
                "INSERT INTO consistency_runs (run_id, status, scheduled, created_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (run_id) DO UPDATE SET status = ?2, record = ?5",
                params![
                    record.id.to_string(),
                    record.status.as_str(),
                    record.trigger == Trigger::Scheduled,
                    to_i64(record.created_at_ms),
                    json
                ],
            )?;
            Ok(())
        })
    }

    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>> {
        self.run("reading a run record", move |connection| {
            let json: Option<String> = connection
                .query_row(
                    "SELECT record FROM consistency_runs WHERE run_id = ?1",
                    [id.to_string()],
                    |row| row.get(0),
                )
                .optional()?;
            json.as_deref().map(parse).transpose()
        })
    }

    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("listing run records", move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT record FROM consistency_runs ORDER BY run_id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| row.get::<_, String>(0))?;
            rows.map(|json| parse(&json?)).collect()
        })
    }

    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        self.run("listing queued runs", move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT record FROM consistency_runs WHERE status = 'queued' ORDER BY run_id",
            )?;
            let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
            rows.map(|json| parse(&json?)).collect()
        })
    }

    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        self.run("reading the last scheduled run", move |connection| {
            let last: Option<i64> = connection.query_row(
                "SELECT MAX(created_at_ms) FROM consistency_runs WHERE scheduled = 1",
                [],
                |row| row.get(0),
            )?;
            Ok(last.map(|ms| u64::try_from(ms).unwrap_or(0)))
        })
    }
}
