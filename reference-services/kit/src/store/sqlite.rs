//! [`write()`]: a service's change, its event and its request record in one SQLite
//! transaction, through the outbox's unit of work; [`open_service`]: a service's file with
//! its store and its relay's.

use std::path::Path;

use dovetail_events::envelope::Source;
use dovetail_events::idempotency::{
    IdempotencyError, IdempotencyKey, MarkOutcome, SqliteIdempotencyStore, StoredOutcome,
};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore, SqliteUnitOfWork};
use rusqlite::Connection;

use super::{IDEMPOTENCY_RETENTION, OpenedStore, RequestRecord, StoreError, WriteOutcome};
use crate::{RecordedResponse, StartError};

/// Opens the service's SQLite file at `path`, creating its directory when missing: the
/// store `open` makes over an outbox of the events of `source` (its commits wake the
/// relay), and the relay's store on the same file, leased as `<source>.relay`.
///
/// # Errors
/// When the directory cannot be created (the message names it) or `open` or the relay's
/// store fails.
pub fn open_service<S>(
    path: &Path,
    source: Source,
    open: impl FnOnce(&Path, SqliteOutbox) -> Result<S, StoreError>,
) -> Result<OpenedStore<S>, StartError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StartError::DataDirectory {
            path: dir.to_owned(),
            source,
        })?;
    }
    let relay_name = format!("{}.relay", source.as_str());
    let outbox = SqliteOutbox::new(OutboxConfig::new(source));
    let commits = outbox.commits();
    let store = open(path, outbox)?;
    let relay_store = SqliteOutboxStore::open(path, relay_name)?;
    Ok(OpenedStore {
        store,
        relay_store: relay_store.into(),
        commits,
    })
}

/// Opens a service's SQLite database at `path` for its outbox and its request records,
/// then runs `schema` (the service's own `CREATE TABLE IF NOT EXISTS ...`).
///
/// # Errors
/// [`StoreError::Backend`] naming the file when it cannot be opened or set up.
pub fn open(path: &Path, schema: &str) -> Result<Connection, StoreError> {
    let opening = || format!("opening {}", path.display());
    let connection = Connection::open(path).map_err(|e| StoreError::backend(opening(), e))?;
    SqliteOutbox::prepare_connection(&connection).map_err(|e| StoreError::backend(opening(), e))?;
    SqliteIdempotencyStore::create_schema(&connection)
        .map_err(|e| StoreError::backend(opening(), e))?;
    connection
        .execute_batch(schema)
        .map_err(|e| StoreError::backend(opening(), e))?;
    Ok(connection)
}

/// Begins a unit of work; when `request` is given, records it first (or answers with the
/// recorded response of an earlier request with the same key); then runs `apply` (the
/// service's writes and `append`s) and commits. Any error rolls everything back.
///
/// # Errors
/// [`StoreError::KeyReused`], [`StoreError::KeyInProgress`], whatever `apply` returns,
/// and [`StoreError::Backend`].
pub fn write(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    request: Option<&RequestRecord>,
    apply: impl FnOnce(&mut SqliteUnitOfWork<'_>) -> Result<(), StoreError>,
) -> Result<WriteOutcome, StoreError> {
    let mut unit = outbox.begin(connection)?;
    if let Some(request) = request {
        match mark(&unit, request)? {
            MarkOutcome::Marked => {}
            MarkOutcome::Duplicate(outcome) => {
                unit.rollback()?;
                let response = RecordedResponse::from_bytes(outcome.as_bytes())
                    .map_err(|error| StoreError::backend("reading a recorded response", error))?;
                return Ok(WriteOutcome::Replayed(response));
            }
            _ => {
                unit.rollback()?;
                return Err(StoreError::KeyInProgress {
                    key: request.client_key().to_owned(),
                });
            }
        }
    }
    apply(&mut unit)?;
    unit.commit()?;
    Ok(WriteOutcome::Written)
}

fn mark(unit: &SqliteUnitOfWork<'_>, request: &RequestRecord) -> Result<MarkOutcome, StoreError> {
    let key = IdempotencyKey::new(&request.key)
        .map_err(|error| StoreError::backend("recording an Idempotency-Key", error))?;
    SqliteIdempotencyStore::mark_processed_in(
        unit.transaction(),
        &key,
        &request.fingerprint,
        &StoredOutcome::new(request.response.to_bytes()),
        IDEMPOTENCY_RETENTION,
    )
    .map_err(|error| match error {
        IdempotencyError::PayloadMismatch { .. } => StoreError::KeyReused {
            key: request.client_key().to_owned(),
        },
        other => StoreError::backend("recording an Idempotency-Key", other),
    })
}

/// Converts a stored version to SQLite's integer.
pub fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// The version a conditional write found instead of the expected one, for
/// [`StoreError::VersionConflict`]: `SELECT version FROM <table> WHERE <key_column> = ?`.
///
/// # Errors
/// [`StoreError::Backend`] when the query fails.
pub fn current_version(
    connection: &Connection,
    table: &str,
    key_column: &str,
    id: &str,
) -> Result<Option<u64>, StoreError> {
    use rusqlite::OptionalExtension;
    let version: Option<i64> = connection
        .query_row(
            &format!("SELECT version FROM {table} WHERE {key_column} = ?1"),
            [id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(version.and_then(|v| u64::try_from(v).ok()))
}

/// A service's SQLite connection, shared by its requests and run on the blocking pool one
/// unit of work at a time (SQLite has one writer anyway).
#[derive(Debug, Clone)]
pub struct SharedConnection(std::sync::Arc<std::sync::Mutex<Connection>>);

impl SharedConnection {
    /// Shares `connection`.
    pub fn new(connection: Connection) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(connection)))
    }

    /// Runs `work` on the connection on the blocking pool.
    ///
    /// # Errors
    /// What `work` returns, or [`StoreError::Backend`] when its task failed.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let connection = std::sync::Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|error| StoreError::backend("running the database task", error))?
    }
}
