//! [`SqliteSessionStore`]: families, refresh-token digests and failure counters in their
//! own SQLite file (default `data/auth-sessions.db`), each operation one transaction.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SessionStoreError;
use super::store::{
    FamilyInfo, NewFamily, Rotation, SessionStore, Window, epoch_millis, from_epoch_millis,
};
use super::token::{CredentialStamp, TokenDigest};

const BACKEND: &str = "SQLite";

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS session_families (
    family_id  TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    credential TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS session_families_user ON session_families (user_id);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    digest     BLOB PRIMARY KEY,
    family_id  TEXT NOT NULL,
    used       INTEGER NOT NULL DEFAULT 0,
    expires_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_expiry ON refresh_tokens (expires_ms);
CREATE INDEX IF NOT EXISTS session_families_expiry ON session_families (expires_ms);
CREATE TABLE IF NOT EXISTS login_failures (
    key        TEXT PRIMARY KEY,
    failures   INTEGER NOT NULL,
    ends_ms    INTEGER NOT NULL
);
";

/// Sessions in a SQLite file of their own: tables `session_families`, `refresh_tokens`
/// (digest, family, used flag, expiry) and `login_failures` (key, count, window end).
/// Rotation is one `IMMEDIATE` transaction whose compare-and-set on the used flag makes
/// it atomic even across processes sharing the file. Expired rows are deleted when a
/// family starts, so the file does not grow without bound.
#[derive(Clone)]
pub struct SqliteSessionStore {
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSessionStore").finish_non_exhaustive()
    }
}

impl SqliteSessionStore {
    /// Opens (creating it and its directory) the file at `path`.
    ///
    /// # Errors
    /// [`SessionStoreError::Backend`] when it cannot be created or opened.
    pub fn open(path: &Path) -> Result<Self, SessionStoreError> {
        let fail = |error: rusqlite::Error| SessionStoreError::backend(BACKEND, "opening", error);
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|error| SessionStoreError::backend(BACKEND, "opening", error))?;
        }
        let connection = Connection::open(path).map_err(fail)?;
        connection
            .busy_timeout(Duration::from_secs(5))
            .map_err(fail)?;
        connection.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, SessionStoreError> {
        let connection = Arc::clone(&self.connection);
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut connection)
        })
        .await
        .map_err(|error| SessionStoreError::backend(BACKEND, operation, error))?
        .map_err(|error| SessionStoreError::backend(BACKEND, operation, error))
    }
}

/// What a rotation read of a token and its family.
struct Found {
    family: FamilyInfo,
    used: bool,
    token_expires_ms: i64,
    family_expires_ms: i64,
    revoked: bool,
}

fn find(connection: &Connection, digest: &[u8]) -> rusqlite::Result<Option<Found>> {
    connection
        .query_row(
            "SELECT t.family_id, t.used, t.expires_ms, f.user_id, f.credential, f.expires_ms, f.revoked
             FROM refresh_tokens t JOIN session_families f ON f.family_id = t.family_id
             WHERE t.digest = ?1",
            params![digest],
            |row| {
                Ok(Found {
                    family: FamilyInfo {
                        family_id: row.get(0)?,
                        user_id: row.get(3)?,
                        credential: CredentialStamp::from_stored(row.get(4)?),
                        expires: from_epoch_millis(row.get(5)?),
                    },
                    used: row.get(1)?,
                    token_expires_ms: row.get(2)?,
                    family_expires_ms: row.get(5)?,
                    revoked: row.get(6)?,
                })
            },
        )
        .optional()
}

impl SessionStore for SqliteSessionStore {
    async fn start(&self, family: NewFamily) -> Result<(), SessionStoreError> {
        self.run("starting a session", move |connection| {
            let now = epoch_millis(SystemTime::now());
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM refresh_tokens WHERE expires_ms <= ?1", [now])?;
            tx.execute("DELETE FROM session_families WHERE expires_ms <= ?1", [now])?;
            tx.execute("DELETE FROM login_failures WHERE ends_ms <= ?1", [now])?;
            tx.execute(
                "INSERT INTO session_families (family_id, user_id, credential, expires_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    family.family_id,
                    family.user_id,
                    family.credential.as_str(),
                    epoch_millis(family.family_expires)
                ],
            )?;
            tx.execute(
                "INSERT INTO refresh_tokens (digest, family_id, expires_ms) VALUES (?1, ?2, ?3)",
                params![
                    family.first.as_bytes().as_slice(),
                    family.family_id,
                    epoch_millis(family.token_expires.min(family.family_expires))
                ],
            )?;
            tx.commit()
        })
        .await
    }

    async fn family_of(
        &self,
        presented: TokenDigest,
    ) -> Result<Option<FamilyInfo>, SessionStoreError> {
        self.run("reading a session", move |connection| {
            Ok(find(connection, presented.as_bytes())?.map(|found| found.family))
        })
        .await
    }

    async fn rotate(
        &self,
        presented: TokenDigest,
        next: TokenDigest,
        next_expires: SystemTime,
        now: SystemTime,
    ) -> Result<Rotation, SessionStoreError> {
        self.run("rotating a refresh token", move |connection| {
            let now = epoch_millis(now);
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(found) = find(&tx, presented.as_bytes())? else {
                return Ok(Rotation::Unknown);
            };
            if found.revoked {
                return Ok(Rotation::Revoked);
            }
            if found.used {
                tx.execute(
                    "UPDATE session_families SET revoked = 1 WHERE family_id = ?1",
                    [&found.family.family_id],
                )?;
                tx.commit()?;
                return Ok(Rotation::Reused(found.family));
            }
            if found.token_expires_ms <= now || found.family_expires_ms <= now {
                return Ok(Rotation::Expired);
            }
            let marked = tx.execute(
                "UPDATE refresh_tokens SET used = 1 WHERE digest = ?1 AND used = 0",
                [presented.as_bytes().as_slice()],
            )?;
            if marked != 1 {
                // Unreachable under the IMMEDIATE lock; kept as the compare-and-set.
                return Ok(Rotation::Revoked);
            }
            tx.execute(
                "INSERT INTO refresh_tokens (digest, family_id, expires_ms) VALUES (?1, ?2, ?3)",
                params![
                    next.as_bytes().as_slice(),
                    found.family.family_id,
                    epoch_millis(next_expires).min(found.family_expires_ms)
                ],
            )?;
            tx.commit()?;
            Ok(Rotation::Rotated(found.family))
        })
        .await
    }

    async fn revoke_family_of(&self, presented: TokenDigest) -> Result<bool, SessionStoreError> {
        self.run("revoking a session", move |connection| {
            let revoked = connection.execute(
                "UPDATE session_families SET revoked = 1 WHERE family_id =
                 (SELECT family_id FROM refresh_tokens WHERE digest = ?1)",
                [presented.as_bytes().as_slice()],
            )?;
            Ok(revoked > 0)
        })
        .await
    }

    async fn revoke_family(&self, family_id: &str) -> Result<(), SessionStoreError> {
        let family_id = family_id.to_owned();
        self.run("revoking a session", move |connection| {
            connection.execute(
                "UPDATE session_families SET revoked = 1 WHERE family_id = ?1",
                [family_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoke_user(&self, user_id: &str) -> Result<u64, SessionStoreError> {
        let user_id = user_id.to_owned();
        self.run("revoking a user's sessions", move |connection| {
            let revoked = connection.execute(
                "UPDATE session_families SET revoked = 1
                 WHERE user_id = ?1 AND revoked = 0 AND expires_ms > ?2",
                params![user_id, epoch_millis(SystemTime::now())],
            )?;
            Ok(u64::try_from(revoked).unwrap_or(u64::MAX))
        })
        .await
    }

    async fn failures(
        &self,
        key: &str,
        now: SystemTime,
    ) -> Result<Option<Window>, SessionStoreError> {
        let key = key.to_owned();
        self.run("reading a failure counter", move |connection| {
            let now = epoch_millis(now);
            let row: Option<(u32, i64)> = connection
                .query_row(
                    "SELECT failures, ends_ms FROM login_failures WHERE key = ?1 AND ends_ms > ?2",
                    params![key, now],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            Ok(row.map(|(failures, ends)| window(failures, ends, now)))
        })
        .await
    }

    async fn record_failure(
        &self,
        key: &str,
        window_length: Duration,
        now: SystemTime,
    ) -> Result<Window, SessionStoreError> {
        let key = key.to_owned();
        self.run("counting a failure", move |connection| {
            let now = epoch_millis(now);
            let ends =
                now.saturating_add(i64::try_from(window_length.as_millis()).unwrap_or(i64::MAX));
            let (failures, ends): (u32, i64) = connection.query_row(
                "INSERT INTO login_failures (key, failures, ends_ms) VALUES (?1, 1, ?3)
                 ON CONFLICT (key) DO UPDATE SET
                   failures = CASE WHEN ends_ms > ?2 THEN failures + 1 ELSE 1 END,
                   ends_ms  = CASE WHEN ends_ms > ?2 THEN ends_ms ELSE ?3 END
                 RETURNING failures, ends_ms",
                params![key, now, ends],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok(window(failures, ends, now))
        })
        .await
    }

    async fn forgive_failure(&self, key: &str) -> Result<(), SessionStoreError> {
        let key = key.to_owned();
        self.run("forgiving a failure", move |connection| {
            connection.execute(
                "UPDATE login_failures SET failures = failures - 1 WHERE key = ?1 AND failures > 0",
                [key],
            )?;
            Ok(())
        })
        .await
    }

    async fn clear_failures(&self, key: &str) -> Result<(), SessionStoreError> {
        let key = key.to_owned();
        self.run("clearing a failure counter", move |connection| {
            connection.execute("DELETE FROM login_failures WHERE key = ?1", [key])?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), SessionStoreError> {
        self.run("answering a ping", |connection| {
            connection.query_row("SELECT 1", [], |_| Ok(()))
        })
        .await
    }
}

fn window(failures: u32, ends_ms: i64, now_ms: i64) -> Window {
    Window {
        failures,
        resets_in: Duration::from_millis(
            u64::try_from(ends_ms.saturating_sub(now_ms)).unwrap_or(0),
        ),
    }
}
