//! [`SqlitePolicyStore`]: policies in the service's SQLite file, beside its outbox.

use std::path::Path;

use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::EventId;
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::sqlite::SqliteOutbox;
use dovetail_service_kit::store::sqlite::{SharedConnection, current_version, sql_version};
use rusqlite::{OptionalExtension, params};

use super::view::{POLICIES, PolicyConsistencyView};
use super::{PolicyWrite, RepairReport, StoreError, WriteOutcome};
use crate::domain::Policy;
use dovetail_consistency::sqlite::now_ms;

// `bucket` is the policy id's consistency bucket, `changed_at_ms` when this service last
// wrote the row (NULL in rows older than the column): `view::POLICIES`'s migration adds
// both to a file made before they existed, with the index on (bucket, policy_id) and the
// table `consistency_buckets`. No SQL comment inside CREATE TABLE: SQLite keeps its text
// and edits it on ALTER TABLE ... DROP COLUMN, which a comment can break.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policies (
    policy_id     TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    version       INTEGER NOT NULL,
    snapshot      TEXT NOT NULL,
    bucket        INTEGER,
    changed_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS policies_by_customer ON policies (customer_id, policy_id);
";

/// Policies in a SQLite file: table `policies` (one row per policy: id, customer, version,
/// the JSON snapshot, its consistency bucket and when it last changed), the digest of
/// each bucket (`consistency_buckets`), the outbox's tables and the idempotency records
/// of requests, all written in one transaction per change.
#[derive(Debug, Clone)]
pub struct SqlitePolicyStore {
    connection: SharedConnection,
    outbox: SqliteOutbox,
}

impl SqlitePolicyStore {
    /// Opens (creating if missing) the database at `path` for `outbox`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or its tables created.
    pub fn open(path: &Path, outbox: SqliteOutbox) -> Result<Self, StoreError> {
        let mut connection = dovetail_service_kit::store::sqlite::open(path, SCHEMA)?;
        POLICIES
            .migrate(&mut connection)
            .map_err(|error| StoreError::backend("adding the consistency digests", error))?;
        Ok(Self {
            connection: SharedConnection::new(connection),
            outbox,
        })
    }

    /// See [`PolicyStore::write`](super::PolicyStore::write).
    pub(super) async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        let outbox = self.outbox.clone();
        self.connection.run(move |connection| {
            dovetail_service_kit::store::sqlite::write(connection, &outbox, write.request.as_ref(), |unit| {
                let snapshot = write.policy.snapshot();
                let json = serde_json::to_string(snapshot).map_err(|error| StoreError::backend("serializing a policy", error))?;
                let version = sql_version(snapshot.version);
                let id = &snapshot.policy_id;
                // The version this write replaces, for the bucket's digest.
                let old = current_version(unit.transaction(), "policies", "policy_id", id)?;
                let now = now_ms();
                let written = match write.expected {
                    ExpectedVersion::New => unit.transaction().execute(
                        "INSERT INTO policies (policy_id, customer_id, version, snapshot, bucket, changed_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (policy_id) DO NOTHING",
                        params![id, snapshot.customer_id, version, json, dovetail_consistency::bucket(id), now],
                    )?,
                    ExpectedVersion::Exactly(expected) => unit.transaction().execute(
                        "UPDATE policies SET version = ?2, snapshot = ?3, changed_at_ms = ?5 WHERE policy_id = ?1 AND version = ?4",
                        params![id, version, json, sql_version(expected), now],
                    )?,
                    ExpectedVersion::Any => unit.transaction().execute(
                        "UPDATE policies SET version = ?2, snapshot = ?3, changed_at_ms = ?4 WHERE policy_id = ?1",
                        params![id, version, json, now],
                    )?,
                };
                if written == 0 {
                    return Err(StoreError::VersionConflict {
                        id: snapshot.policy_id.clone(),
                        current: current_version(unit.transaction(), "policies", "policy_id", &snapshot.policy_id)?,
                    });
                }
                POLICIES.record(unit.transaction(), id, old, snapshot.version)?;
                write.change.append_to(unit, write.expected)?;
                Ok(())
            })
        })
        .await
    }

    /// The consistency view of the policies in this file.
    pub fn consistency_view(&self) -> PolicyConsistencyView {
        dovetail_service_kit::store::SqliteTableView::new(self.connection.clone(), POLICIES).into()
    }

    /// See [`PolicyStore::repair`](super::PolicyStore::repair).
    pub(super) async fn repair(
        &self,
        keys: Vec<String>,
        run: EventId,
    ) -> Result<RepairReport, StoreError> {
        let outbox = self.outbox.clone();
        self.connection
            .run(move |connection| super::repair::republish(connection, &outbox, keys, run))
            .await
    }

    /// See [`PolicyStore::get`](super::PolicyStore::get).
    pub(super) async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        let policy_id = policy_id.to_owned();
        self.connection
            .run(move |connection| {
                let snapshot: Option<String> = connection
                    .prepare_cached("SELECT snapshot FROM policies WHERE policy_id = ?1")?
                    .query_row([&policy_id], |row| row.get(0))
                    .optional()?;
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
        self.connection
            .run(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT snapshot FROM policies WHERE customer_id = ?1 AND policy_id > ?2
                 ORDER BY policy_id LIMIT ?3",
                )?;
                let rows = statement.query_map(params![customer_id, after, limit], |row| {
                    row.get::<_, String>(0)
                })?;
                rows.map(|row| parse_snapshot(&row?)).collect()
            })
            .await
    }

    /// See [`PolicyStore::ping`](super::PolicyStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.connection
            .run(|connection| {
                connection.query_row("SELECT count(*) FROM policies LIMIT 1", [], |_| Ok(()))?;
                Ok(())
            })
            .await
    }
}

fn parse_snapshot(json: &str) -> Result<Policy, StoreError> {
    serde_json::from_str::<PolicySnapshot>(json)
        .map(Policy::from_snapshot)
        .map_err(|error| StoreError::backend("reading a stored policy", error))
}
