//! [`SqliteUsers`]: users in the service's SQLite file, beside its outbox; the email is
//! UNIQUE, so one address is one user however many registrations race.

use std::path::Path;

use dovetail_contracts::user::{UserRole, UserSnapshot};
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::sqlite::SqliteOutbox;
use dovetail_service_kit::store::sqlite::{SharedConnection, current_version, sql_version};
use rusqlite::{OptionalExtension, params};

use super::{Registration, StoreError, StoredUser};
use crate::domain::{Email, User, UserChange};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'staff')),
    customer_id   TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0,
    version       INTEGER NOT NULL
);
";

const COLUMNS: &str = "user_id, email, role, customer_id, disabled, version, password_hash";

/// Users in a SQLite file: table `users` (id, unique normalised email, password hash,
/// role, customer id, disabled flag, version), the outbox's tables, all written in one
/// transaction per change.
#[derive(Debug, Clone)]
pub struct SqliteUsers {
    connection: SharedConnection,
    outbox: SqliteOutbox,
}

impl SqliteUsers {
    /// Opens (creating if missing) the database at `path` for `outbox`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or its tables created.
    pub fn open(path: &Path, outbox: SqliteOutbox) -> Result<Self, StoreError> {
        let connection = dovetail_service_kit::store::sqlite::open(path, SCHEMA)?;
        Ok(Self {
            connection: SharedConnection::new(connection),
            outbox,
        })
    }

    /// See [`UserStore::register`](super::UserStore::register).
    pub(super) async fn register(
        &self,
        user: User,
        password_hash: String,
        change: UserChange,
    ) -> Result<Registration, StoreError> {
        let outbox = self.outbox.clone();
        self.connection
            .run(move |connection| {
                let mut outcome = Registration::Created;
                dovetail_service_kit::store::sqlite::write(connection, &outbox, None, |unit| {
                    let snapshot = user.snapshot();
                    let inserted = unit.transaction().execute(
                        "INSERT INTO users (user_id, email, password_hash, role, customer_id, disabled, version)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (email) DO NOTHING",
                        params![
                            snapshot.user_id,
                            snapshot.email,
                            password_hash,
                            snapshot.role.as_str(),
                            snapshot.customer_id,
                            snapshot.disabled,
                            sql_version(snapshot.version),
                        ],
                    )?;
                    if inserted == 0 {
                        outcome = Registration::EmailTaken;
                        return Ok(());
                    }
                    change.append_to(unit, ExpectedVersion::New)?;
                    Ok(())
                })?;
                Ok(outcome)
            })
            .await
    }

    /// See [`UserStore::find_by_email`](super::UserStore::find_by_email).
    pub(super) async fn find_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<StoredUser>, StoreError> {
        self.find("email", email.as_str().to_owned()).await
    }

    /// See [`UserStore::get`](super::UserStore::get).
    pub(super) async fn get(&self, user_id: &str) -> Result<Option<StoredUser>, StoreError> {
        self.find("user_id", user_id.to_owned()).await
    }

    async fn find(
        &self,
        column: &'static str,
        value: String,
    ) -> Result<Option<StoredUser>, StoreError> {
        self.connection
            .run(move |connection| {
                connection
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE {column} = ?1"))?
                    .query_row([&value], read_user)
                    .optional()?
                    .transpose()
            })
            .await
    }

    /// See [`UserStore::change_password`](super::UserStore::change_password).
    pub(super) async fn change_password(
        &self,
        user_id: &str,
        old_hash: String,
        new_hash: String,
    ) -> Result<bool, StoreError> {
        let user_id = user_id.to_owned();
        self.connection
            .run(move |connection| {
                let changed = connection.execute(
                    "UPDATE users SET password_hash = ?3 WHERE user_id = ?1 AND password_hash = ?2",
                    params![user_id, old_hash, new_hash],
                )?;
                Ok(changed == 1)
            })
            .await
    }

    /// See [`UserStore::update`](super::UserStore::update): the user's role, customer
    /// id, disabled flag and version (never the email or the password hash), if the user
    /// is still at `expected`.
    pub(super) async fn update(
        &self,
        user: User,
        change: UserChange,
        expected: u64,
    ) -> Result<(), StoreError> {
        let outbox = self.outbox.clone();
        self.connection
            .run(move |connection| {
                dovetail_service_kit::store::sqlite::write(connection, &outbox, None, |unit| {
                    let snapshot = user.snapshot();
                    let updated = unit.transaction().execute(
                        "UPDATE users SET role = ?2, customer_id = ?3, disabled = ?4, version = ?5
                         WHERE user_id = ?1 AND version = ?6",
                        params![
                            snapshot.user_id,
                            snapshot.role.as_str(),
                            snapshot.customer_id,
                            snapshot.disabled,
                            sql_version(snapshot.version),
                            sql_version(expected),
                        ],
                    )?;
                    if updated == 0 {
                        return Err(StoreError::VersionConflict {
                            id: snapshot.user_id.clone(),
                            current: current_version(
                                unit.transaction(),
                                "users",
                                "user_id",
                                &snapshot.user_id,
                            )?,
                        });
                    }
                    change.append_to(unit, ExpectedVersion::Exactly(expected))?;
                    Ok(())
                })
                .map(drop)
            })
            .await
    }

    /// See [`UserStore::ping`](super::UserStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.connection
            .run(|connection| {
                connection.query_row("SELECT count(*) FROM users LIMIT 1", [], |_| Ok(()))?;
                Ok(())
            })
            .await
    }
}

fn read_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredUser, StoreError>> {
    let role: String = row.get(2)?;
    let version: i64 = row.get(5)?;
    let role = match role.as_str() {
        "customer" => UserRole::Customer,
        "staff" => UserRole::Staff,
        other => {
            return Ok(Err(StoreError::backend(
                "reading a stored user",
                format!("unknown role {other:?}"),
            )));
        }
    };
    Ok(Ok(StoredUser {
        user: User::from_snapshot(UserSnapshot {
            user_id: row.get(0)?,
            email: row.get(1)?,
            role,
            customer_id: row.get(3)?,
            disabled: row.get(4)?,
            version: u64::try_from(version).unwrap_or(0),
        }),
        password_hash: row.get(6)?,
    }))
}
