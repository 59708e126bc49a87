//! [`SqliteIdempotencyStore`]: records in a table of the service's SQLite database, and
//! "processed" markers written in the caller's own transaction.

mod group_commit;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use self::group_commit::GroupCommit;

use super::clock::{duration_millis, epoch_micros, epoch_millis, from_epoch_millis};
use super::record::{
    ClaimDecision, LeaseCheck, RELEASED_HELD_UNTIL_MS, RecordState, StoredRecord, check_lease,
    decide_claim, in_progress_expiry, next_fencing_token,
};
use super::{
    ClaimOutcome, Clock, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, MarkOutcome, StoreOperation, StoredOutcome, SystemClock,
};

const STORE: &str = "SQLite";

/// How often a claim also removes expired records, at most.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// How many expired records one opportunistic purge removes, at most.
const PURGE_BATCH: u32 = 1_000;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dovetail_idempotency (
    key           TEXT    NOT NULL PRIMARY KEY,
    fingerprint   BLOB    NOT NULL,
    owner         TEXT,
    fencing_token INTEGER NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('in_progress', 'processed')),
    held_until_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    outcome       BLOB
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dovetail_idempotency_expires_at
    ON dovetail_idempotency (expires_at_ms);
";

const SELECT_RECORD: &str = "
SELECT fingerprint, owner, fencing_token, state, held_until_ms, expires_at_ms, outcome
FROM dovetail_idempotency WHERE key = ?1";

/// An [`IdempotencyStore`] in a SQLite table, `dovetail_idempotency`, one row per key.
///
/// The table lives in the service's own database, so the records survive restarts, and
/// [`mark_processed_in`](Self::mark_processed_in) can commit the "processed" marker in the
/// same transaction as the handler's writes. Each operation runs in a savepoint of a short
/// `BEGIN IMMEDIATE` transaction, so several processes may share the database file. The
/// connection runs on tokio's blocking pool, and commits in groups: the operations that
/// arrive while one transaction runs (the claims and completions of the other handlers
/// in flight) share the next one, and each answers only once its transaction committed.
///
/// Expired rows are ignored on read and removed by [`purge_expired`](Self::purge_expired)
/// and, in batches, by a claim at most once a minute.
///
/// | column | content |
/// |---|---|
/// | `key` | the idempotency key (primary key) |
/// | `fingerprint` | SHA-256 of the payload, 32 bytes |
/// | `owner`, `fencing_token` | the lease last granted (`owner` is NULL for transactional markers) |
/// | `state` | `in_progress` or `processed` |
/// | `held_until_ms` | end of the lease, Unix milliseconds |
/// | `expires_at_ms` | when the row stops counting, Unix milliseconds |
/// | `outcome` | the stored outcome of a processed key |
///
/// # Example
/// ```
/// use std::time::Duration;
/// use dovetail_events::idempotency::{
///     ClaimOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner,
///     SqliteIdempotencyStore, StoredOutcome,
/// };
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let store = SqliteIdempotencyStore::open_in_memory()?; // or ::open("data/claims.db")
/// let key = IdempotencyKey::new("evt-1")?;
/// let fingerprint = Fingerprint::of(b"{}");
/// let me = LeaseOwner::random();
/// if let ClaimOutcome::Claimed { lease, .. } =
///     store.try_claim(&key, &fingerprint, &me, Duration::from_secs(30)).await?
/// {
///     store.complete(&lease, StoredOutcome::from("done"), Duration::from_secs(3600)).await?;
/// }
/// let duplicate = store.try_claim(&key, &fingerprint, &me, Duration::from_secs(30)).await?;
/// assert_eq!(duplicate, ClaimOutcome::Processed(StoredOutcome::from("done")));
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_multi_thread().build().unwrap().block_on(example()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct SqliteIdempotencyStore {
    connection: Arc<GroupCommit>,
    clock: Arc<dyn Clock>,
    /// When a claim last purged expired rows, Unix milliseconds.
    last_purge_ms: Arc<AtomicU64>,
}

impl SqliteIdempotencyStore {
    /// Opens (or creates) the database at `path`, in WAL mode with `synchronous = NORMAL`,
    /// and creates the table if it is missing. Blocks while it does.
    ///
    /// `NORMAL` does not sync the log on every commit: a record survives a crash of the
    /// process, and the last few may be lost if the machine loses power. Losing a record
    /// can only let a duplicate through once, which the at-least-once design already
    /// tolerates, and it makes each claim and completion several times cheaper.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when the file cannot be opened or the table created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, IdempotencyError> {
        let connection = Connection::open(path).map_err(open_failed)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_failed)?;
        connection
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_failed)?;
        Self::from_connection(connection)
    }

    /// A store in a private in-memory database, for tests.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self, IdempotencyError> {
        Self::from_connection(Connection::open_in_memory().map_err(open_failed)?)
    }

    /// A store on an open connection, e.g. to the service's own database; creates the
    /// table if it is missing and sets a busy timeout of 5 s.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when the table cannot be created.
    pub fn from_connection(connection: Connection) -> Result<Self, IdempotencyError> {
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_failed)?;
        Self::create_schema(&connection)?;
        Ok(Self {
            connection: Arc::new(GroupCommit::new(connection)),
            clock: Arc::new(SystemClock),
            last_purge_ms: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same store reading the time from `clock`, e.g. a
    /// [`ManualClock`](super::ManualClock) in tests.
    #[must_use]
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            ..self
        }
    }

    /// Creates the `dovetail_idempotency` table and its index if they are missing; for
    /// callers that only use [`mark_processed_in`](Self::mark_processed_in) on their own
    /// connection.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when SQLite refuses the statements.
    pub fn create_schema(connection: &Connection) -> Result<(), IdempotencyError> {
        connection.execute_batch(SCHEMA).map_err(open_failed)
    }

    /// Removes every expired row now, returning how many.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when the delete fails.
    pub async fn purge_expired(&self) -> Result<usize, IdempotencyError> {
        let now_ms = self.now_ms();
        self.run(StoreOperation::Purge, move |connection| {
            connection.execute_cached(
                "DELETE FROM dovetail_idempotency WHERE expires_at_ms <= ?1",
                params![sql_millis(now_ms)],
            )
        })
        .await
    }

    /// Writes the "processed" marker of `key` inside the caller's transaction, with one
    /// conditional statement, so that the handler's writes and the marker commit together
    /// (or neither does). A first delivery costs one write and no lease.
    ///
    /// The marker is written when the key has no live record, or only an expired lease
    /// with the same fingerprint (which it takes over). Otherwise nothing is written and
    /// the result says why: roll the transaction back on [`MarkOutcome::Duplicate`] (and
    /// answer with its outcome) or [`MarkOutcome::InProgress`] (leave the message for
    /// redelivery). Commit only on [`MarkOutcome::Marked`]. The table must exist (see
    /// [`create_schema`](Self::create_schema)).
    ///
    /// The transaction is best begun `IMMEDIATE`, so concurrent deliveries queue on the
    /// write lock instead of failing with `SQLITE_BUSY` at commit.
    ///
    /// # Errors
    /// [`IdempotencyError::PayloadMismatch`] when the key's record has another
    /// fingerprint; [`IdempotencyError::Backend`] when a statement fails;
    /// [`IdempotencyError::CorruptRecord`] when the record cannot be read.
    ///
    /// # Example
    /// ```
    /// use std::time::Duration;
    /// use dovetail_events::idempotency::{
    ///     Fingerprint, IdempotencyKey, MarkOutcome, SqliteIdempotencyStore, StoredOutcome,
    /// };
    /// use rusqlite::{Connection, TransactionBehavior};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut db = Connection::open_in_memory()?;
    /// db.execute_batch("CREATE TABLE claims (id TEXT PRIMARY KEY, amount TEXT)")?;
    /// SqliteIdempotencyStore::create_schema(&db)?;
    ///
    /// let key = IdempotencyKey::new("evt-1")?;
    /// let payload = br#"{"id":"c-1","amount":"120.00"}"#;
    /// for delivery in 0..2 {
    ///     let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    ///     tx.execute("INSERT OR REPLACE INTO claims VALUES ('c-1', '120.00')", [])?;
    ///     let marked = SqliteIdempotencyStore::mark_processed_in(
    ///         &tx,
    ///         &key,
    ///         &Fingerprint::of(payload),
    ///         &StoredOutcome::from("created"),
    ///         Duration::from_secs(24 * 3600),
    ///     )?;
    ///     match marked {
    ///         MarkOutcome::Marked => tx.commit()?,
    ///         MarkOutcome::Duplicate(outcome) => {
    ///             assert_eq!(delivery, 1);
    ///             assert_eq!(outcome, StoredOutcome::from("created"));
    ///             tx.rollback()?;
    ///         }
    ///         _ => tx.rollback()?,
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn mark_processed_in(
        tx: &Transaction<'_>,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &StoredOutcome,
        retain: Duration,
    ) -> Result<MarkOutcome, IdempotencyError> {
        let failed = |error| backend(StoreOperation::MarkProcessed, error);
        let now = SystemClock.now();
        let now_ms = epoch_millis(now);
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let written = tx
            .execute_cached(
                "INSERT INTO dovetail_idempotency
                     (key, fingerprint, owner, fencing_token, state, held_until_ms,
                      expires_at_ms, outcome)
                 VALUES (?1, ?2, NULL, ?3, 'processed', ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET
                     fingerprint = excluded.fingerprint,
                     owner = NULL,
                     fencing_token = max(fencing_token + 1, excluded.fencing_token),
                     state = 'processed',
                     held_until_ms = excluded.held_until_ms,
                     expires_at_ms = excluded.expires_at_ms,
                     outcome = excluded.outcome
                 WHERE expires_at_ms <= ?4
                    OR (state = 'in_progress' AND held_until_ms <= ?4
                        AND fingerprint = excluded.fingerprint)",
                params![
                    key.as_str(),
                    fingerprint.as_bytes().as_slice(),
                    sql_millis(next_fencing_token(None, epoch_micros(now))),
                    sql_millis(now_ms),
                    sql_millis(expires_at_ms),
                    outcome.as_bytes(),
                ],
            )
            .map_err(failed)?;
        if written == 1 {
            return Ok(MarkOutcome::Marked);
        }
        let record = read_record(tx, key).map_err(failed)?;
        let record = record.map(|row| row.parse(key)).transpose()?;
        match decide_claim(record.as_ref(), fingerprint, now) {
            ClaimDecision::Answer(ClaimOutcome::Processed(outcome)) => {
                Ok(MarkOutcome::Duplicate(outcome))
            }
            ClaimDecision::Answer(ClaimOutcome::InProgress { held_until }) => {
                Ok(MarkOutcome::InProgress { held_until })
            }
            ClaimDecision::Mismatch { stored } => Err(IdempotencyError::PayloadMismatch {
                key: key.clone(),
                stored,
                presented: *fingerprint,
            }),
            // The conditional write refuses only live records of another fingerprint,
            // processed ones and live leases, which are all handled above.
            ClaimDecision::Answer(ClaimOutcome::Claimed { .. }) | ClaimDecision::Grant { .. } => {
                Err(IdempotencyError::CorruptRecord {
                    key: key.clone(),
                    reason: "the marker was refused although the record is free".to_owned(),
                })
            }
        }
    }

    fn now_ms(&self) -> u64 {
        epoch_millis(self.clock.now())
    }

    /// Runs `work` on the connection on the blocking pool.
    async fn run<T, F>(&self, operation: StoreOperation, work: F) -> Result<T, IdempotencyError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run_checked(operation, move |connection| {
            work(connection).map_err(|error| backend(operation, error))
        })
        .await
    }

    /// Runs `work` on the connection on the blocking pool, in the next group of
    /// operations ([`GroupCommit`]); `work` maps its own errors.
    async fn run_checked<T, F>(
        &self,
        operation: StoreOperation,
        work: F,
    ) -> Result<T, IdempotencyError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, IdempotencyError> + Send + 'static,
    {
        self.connection.run(operation, work).await
    }

    /// Whether this claim should also purge expired rows (at most once a minute).
    fn purge_due(&self, now_ms: u64) -> bool {
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        now_ms.saturating_sub(last) >= duration_millis(PURGE_INTERVAL)
            && self
                .last_purge_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl IdempotencyStore for SqliteIdempotencyStore {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        let now = self.clock.now();
        let now_ms = epoch_millis(now);
        let purge = self.purge_due(now_ms);
        let (key, fingerprint, owner) = (key.clone(), *fingerprint, owner.clone());
        self.run_checked(StoreOperation::Claim, move |connection| {
            // In a savepoint of its group's `BEGIN IMMEDIATE` transaction: the read and
            // the write see no other writer in between.
            let failed = |error| backend(StoreOperation::Claim, error);
            let tx = connection;
            let record = read_record(tx, &key).map_err(failed)?;
            let record = record.map(|row| row.parse(&key)).transpose()?;
            let outcome = match decide_claim(record.as_ref(), &fingerprint, now) {
                ClaimDecision::Grant {
                    fencing_token,
                    taken_over_from,
                } => {
                    let held_until_ms = now_ms.saturating_add(duration_millis(lease));
                    tx.execute_cached(
                        "INSERT OR REPLACE INTO dovetail_idempotency
                             (key, fingerprint, owner, fencing_token, state, held_until_ms,
                              expires_at_ms, outcome)
                         VALUES (?1, ?2, ?3, ?4, 'in_progress', ?5, ?6, NULL)",
                        params![
                            key.as_str(),
                            fingerprint.as_bytes().as_slice(),
                            owner.as_str(),
                            sql_millis(fencing_token),
                            sql_millis(held_until_ms),
                            sql_millis(in_progress_expiry(held_until_ms)),
                        ],
                    )
                    .map_err(failed)?;
                    ClaimOutcome::Claimed {
                        lease: Lease::new(
                            key.clone(),
                            owner,
                            fencing_token,
                            from_epoch_millis(held_until_ms),
                        ),
                        taken_over_from,
                    }
                }
                ClaimDecision::Answer(outcome) => outcome,
                ClaimDecision::Mismatch { stored } => {
                    return Err(IdempotencyError::PayloadMismatch {
                        key,
                        stored,
                        presented: fingerprint,
                    });
                }
            };
            if purge {
                // Best effort: a failed purge is retried by a later claim or purge_expired.
                let purged = connection.execute_cached(
                    "DELETE FROM dovetail_idempotency WHERE key IN (
                         SELECT key FROM dovetail_idempotency WHERE expires_at_ms <= ?1 LIMIT ?2)",
                    params![sql_millis(now_ms), PURGE_BATCH],
                );
                if let Err(error) = purged {
                    tracing::warn!(%error, "purging expired idempotency records failed");
                }
            }
            Ok(outcome)
        })
        .await
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        let now_ms = self.now_ms();
        let held_until_ms = now_ms.saturating_add(duration_millis(extend));
        let (key, owner, token) = lease_columns(lease);
        let updated = self
            .run(StoreOperation::Heartbeat, move |connection| {
                connection.execute_cached(
                    "UPDATE dovetail_idempotency SET held_until_ms = ?1, expires_at_ms = ?2
                     WHERE key = ?3 AND owner = ?4 AND fencing_token = ?5
                       AND state = 'in_progress' AND expires_at_ms > ?6",
                    params![
                        sql_millis(held_until_ms),
                        sql_millis(in_progress_expiry(held_until_ms)),
                        key,
                        owner,
                        token,
                        sql_millis(now_ms),
                    ],
                )
            })
            .await?;
        if updated == 1 {
            Ok(Lease::new(
                lease.key().clone(),
                lease.owner().clone(),
                lease.fencing_token(),
                from_epoch_millis(held_until_ms),
            ))
        } else {
            Err(lost(lease))
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        let now_ms = self.now_ms();
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let (key, owner, token) = lease_columns(lease);
        let check_lease_of = lease.clone();
        let held = self
            .run_checked(StoreOperation::Complete, move |connection| {
                let failed = |error| backend(StoreOperation::Complete, error);
                let updated = connection
                    .execute_cached(
                        "UPDATE dovetail_idempotency
                         SET state = 'processed', outcome = ?1, held_until_ms = ?2,
                             expires_at_ms = ?3
                         WHERE key = ?4 AND owner = ?5 AND fencing_token = ?6
                           AND state = 'in_progress' AND expires_at_ms > ?2",
                        params![
                            outcome.as_bytes(),
                            sql_millis(now_ms),
                            sql_millis(expires_at_ms),
                            key,
                            owner,
                            token,
                        ],
                    )
                    .map_err(failed)?;
                if updated == 1 {
                    return Ok(true);
                }
                // Completed already by this very lease (a retried call) is a success.
                let record = read_record(connection, check_lease_of.key()).map_err(failed)?;
                let record = record
                    .map(|row| row.parse(check_lease_of.key()))
                    .transpose()?;
                Ok(check_lease(record.as_ref(), &check_lease_of, now_ms)
                    == LeaseCheck::CompletedByIt)
            })
            .await?;
        if held { Ok(()) } else { Err(lost(lease)) }
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        let now_ms = self.now_ms();
        let (key, owner, token) = lease_columns(lease);
        // The row stays, ownerless and expired, so the next claim raises its token.
        let released = self
            .run(StoreOperation::Release, move |connection| {
                connection.execute_cached(
                    "UPDATE dovetail_idempotency SET owner = NULL, held_until_ms = ?1
                     WHERE key = ?2 AND owner = ?3 AND fencing_token = ?4
                       AND state = 'in_progress' AND expires_at_ms > ?5",
                    params![
                        sql_millis(RELEASED_HELD_UNTIL_MS),
                        key,
                        owner,
                        token,
                        sql_millis(now_ms)
                    ],
                )
            })
            .await?;
        if released == 1 {
            Ok(())
        } else {
            Err(lost(lease))
        }
    }
}

/// A row as read, before its columns are checked.
struct Row {
    fingerprint: Vec<u8>,
    owner: Option<String>,
    fencing_token: i64,
    state: String,
    held_until_ms: i64,
    expires_at_ms: i64,
    outcome: Option<Vec<u8>>,
}

impl Row {
    fn parse(self, key: &IdempotencyKey) -> Result<StoredRecord, IdempotencyError> {
        let corrupt = |reason: &str| IdempotencyError::CorruptRecord {
            key: key.clone(),
            reason: reason.to_owned(),
        };
        let fingerprint = Fingerprint::from_slice(&self.fingerprint)
            .map_err(|_| corrupt("the fingerprint is not 32 bytes"))?;
        let owner = self
            .owner
            .map(LeaseOwner::new)
            .transpose()
            .map_err(|_| corrupt("the owner is not a valid lease owner"))?;
        let state = match self.state.as_str() {
            "in_progress" => RecordState::InProgress {
                held_until_ms: u64_millis(self.held_until_ms),
            },
            "processed" => RecordState::Processed {
                outcome: StoredOutcome::new(self.outcome.unwrap_or_default()),
            },
            _ => return Err(corrupt("the state is neither in_progress nor processed")),
        };
        Ok(StoredRecord {
            fingerprint,
            owner,
            fencing_token: u64_millis(self.fencing_token),
            state,
            expires_at_ms: u64_millis(self.expires_at_ms),
        })
    }
}

fn read_record(connection: &Connection, key: &IdempotencyKey) -> rusqlite::Result<Option<Row>> {
    connection
        .prepare_cached(SELECT_RECORD)?
        .query_row(params![key.as_str()], |row| {
            Ok(Row {
                fingerprint: row.get(0)?,
                owner: row.get(1)?,
                fencing_token: row.get(2)?,
                state: row.get(3)?,
                held_until_ms: row.get(4)?,
                expires_at_ms: row.get(5)?,
                outcome: row.get(6)?,
            })
        })
        .optional()
}

fn lease_columns(lease: &Lease) -> (String, String, i64) {
    (
        lease.key().as_str().to_owned(),
        lease.owner().as_str().to_owned(),
        sql_millis(lease.fencing_token()),
    )
}

/// A u64 (milliseconds or a token) as SQLite's i64, saturating.
fn sql_millis(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An i64 from SQLite as u64, negative values as 0.
fn u64_millis(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn lost(lease: &Lease) -> IdempotencyError {
    IdempotencyError::LeaseLost {
        key: lease.key().clone(),
    }
}

fn backend(
    operation: StoreOperation,
    error: impl std::error::Error + Send + Sync + 'static,
) -> IdempotencyError {
    IdempotencyError::backend(STORE, operation, error)
}

fn open_failed(error: rusqlite::Error) -> IdempotencyError {
    backend(StoreOperation::Open, error)
}

/// `execute` through SQLite's statement cache: the store runs the same few statements for
/// every message, and compiling them each time cost as much as running them.
trait ExecuteCached {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl ExecuteCached for Connection {
    fn execute_cached<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}
