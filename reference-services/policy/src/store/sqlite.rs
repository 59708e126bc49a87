//! [`SqlitePolicyStore`]: policies in the service's SQLite file, beside its outbox.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::idempotency::{
    IdempotencyKey, MarkOutcome, SqliteIdempotencyStore, StoredOutcome,
};
use dovetail_outbox::sqlite::SqliteOutbox;
use dovetail_outbox::{ExpectedVersion, OutboxError};
use dovetail_service_kit::RecordedResponse;
use rusqlite::{Connection, OptionalExtension, params};

use super::{IDEMPOTENCY_RETENTION, PolicyWrite, StoreError, WriteOutcome};
use crate::domain::Policy;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policies (
    policy_id   TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    snapshot    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS policies_by_customer ON policies (customer_id, policy_id);
";

/// Policies in a SQLite file: table `policies` (one row per policy: id, customer, version
/// and the JSON snapshot), the outbox's tables and the idempotency records of requests,
/// all written in one transaction per change.
#[derive(Debug, Clone)]
pub struct SqlitePolicyStore {
    connection: Arc<Mutex<Connection>>,
    outbox: SqliteOutbox,
}

impl SqlitePolicyStore {
    /// Opens (creating if missing) the database at `path` for `outbox`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or its tables created.
    pub fn open(path: &Path, outbox: SqliteOutbox) -> Result<Self, StoreError> {
        let failed = |error: &dyn std::fmt::Display| {
            StoreError::Backend(format!("opening {}: {error}", path.display()))
        };
        let connection = Connection::open(path).map_err(|e| failed(&e))?;
        SqliteOutbox::prepare_connection(&connection).map_err(|e| failed(&e))?;
        SqliteIdempotencyStore::create_schema(&connection).map_err(|e| failed(&e))?;
        connection.execute_batch(SCHEMA).map_err(|e| failed(&e))?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            outbox,
        })
    }

    /// See [`PolicyStore::write`](super::PolicyStore::write).
    pub(super) async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        let outbox = self.outbox.clone();
        self.blocking(move |connection| commit(connection, &outbox, &write))
            .await
    }

    /// See [`PolicyStore::get`](super::PolicyStore::get).
    pub(super) async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        let policy_id = policy_id.to_owned();
        self.blocking(move |connection| {
            let snapshot: Option<String> = connection
                .prepare_cached("SELECT snapshot FROM policies WHERE policy_id = ?1")
                .and_then(|mut statement| {
                    statement
                        .query_row([&policy_id], |row| row.get(0))
                        .optional()
                })
                .map_err(StoreError::from)?;
            snapshot.map(|json| parse_snapshot(&json)).transpose()
        })
        .await
    }

    /// See [`PolicyStore::list_by_customer`](super::PolicyStore::list_by_customer).
    pub(super) async fn list_by_customer(
        &self,
        customer_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Policy>, StoreError> {
        let (customer_id, after) = (customer_id.to_owned(), after.unwrap_or("").to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.blocking(move |connection| {
            let mut statement = connection
                .prepare_cached(
                    "SELECT snapshot FROM policies WHERE customer_id = ?1 AND policy_id > ?2
                     ORDER BY policy_id LIMIT ?3",
                )
                .map_err(StoreError::from)?;
            let rows = statement
                .query_map(params![customer_id, after, limit], |row| {
                    row.get::<_, String>(0)
                })
                .map_err(StoreError::from)?;
            rows.map(|row| parse_snapshot(&row.map_err(StoreError::from)?))
                .collect()
        })
        .await
    }

    /// See [`PolicyStore::ping`](super::PolicyStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|connection| {
            connection
                .query_row("SELECT count(*) FROM policies LIMIT 1", [], |_| Ok(()))
                .map_err(StoreError::from)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::Backend(format!("the database task failed: {error}")))?
    }
}

/// The whole write, in one `BEGIN IMMEDIATE` transaction.
fn commit(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    write: &PolicyWrite,
) -> Result<WriteOutcome, StoreError> {
    let mut unit = outbox.begin(connection).map_err(outbox_error)?;
    if let Some(request) = &write.request {
        let key = IdempotencyKey::new(&request.key)
            .map_err(|error| StoreError::Backend(error.to_string()))?;
        let marked = SqliteIdempotencyStore::mark_processed_in(
            unit.transaction(),
            &key,
            &request.fingerprint,
            &StoredOutcome::new(request.response.to_bytes()),
            IDEMPOTENCY_RETENTION,
        )
        .map_err(|error| match error {
            dovetail_events::idempotency::IdempotencyError::PayloadMismatch { .. } => {
                StoreError::KeyReused {
                    key: request.key.clone(),
                }
            }
            other => StoreError::Backend(other.to_string()),
        })?;
        match marked {
            MarkOutcome::Marked => {}
            MarkOutcome::Duplicate(outcome) => {
                unit.rollback().map_err(outbox_error)?;
                let response =
                    RecordedResponse::from_bytes(outcome.as_bytes()).map_err(|error| {
                        StoreError::Backend(format!("a recorded response is unreadable: {error}"))
                    })?;
                return Ok(WriteOutcome::Replayed(response));
            }
            _ => {
                unit.rollback().map_err(outbox_error)?;
                return Err(StoreError::KeyInProgress {
                    key: request.key.clone(),
                });
            }
        }
    }
    let snapshot = write.policy.snapshot();
    let json =
        serde_json::to_string(snapshot).map_err(|error| StoreError::Backend(error.to_string()))?;
    let version = sql_version(snapshot.version);
    let written = match write.expected {
        ExpectedVersion::New => unit.transaction().execute(
            "INSERT INTO policies (policy_id, customer_id, version, snapshot) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (policy_id) DO NOTHING",
            params![snapshot.policy_id, snapshot.customer_id, version, json],
        ),
        ExpectedVersion::Exactly(expected) => unit.transaction().execute(
            "UPDATE policies SET version = ?2, snapshot = ?3 WHERE policy_id = ?1 AND version = ?4",
            params![snapshot.policy_id, version, json, sql_version(expected)],
        ),
        ExpectedVersion::Any => unit.transaction().execute(
            "UPDATE policies SET version = ?2, snapshot = ?3 WHERE policy_id = ?1",
            params![snapshot.policy_id, version, json],
        ),
    }
    .map_err(StoreError::from)?;
    if written == 0 {
        let current = unit
            .transaction()
            .query_row(
                "SELECT version FROM policies WHERE policy_id = ?1",
                [&snapshot.policy_id],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map_err(StoreError::from)?;
        unit.rollback().map_err(outbox_error)?;
        return Err(StoreError::VersionConflict {
            policy_id: snapshot.policy_id.clone(),
            current: current.and_then(|v| u64::try_from(v).ok()),
        });
    }
    write
        .change
        .append_to(&mut unit, write.expected)
        .map_err(outbox_error)?;
    unit.commit().map_err(outbox_error)?;
    Ok(WriteOutcome::Written)
}

pub(super) fn outbox_error(error: OutboxError) -> StoreError {
    match error {
        OutboxError::Conflict {
            aggregate_id,
            actual,
            ..
        } => StoreError::VersionConflict {
            policy_id: aggregate_id,
            current: Some(actual),
        },
        other => StoreError::Backend(other.to_string()),
    }
}

fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Backend(error.to_string())
    }
}

pub(super) fn parse_snapshot(json: &str) -> Result<Policy, StoreError> {
    serde_json::from_str::<PolicySnapshot>(json)
        .map(Policy::from_snapshot)
        .map_err(|error| StoreError::Backend(format!("a stored policy is unreadable: {error}")))
}
