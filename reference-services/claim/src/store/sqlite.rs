//! [`SqliteClaimStore`]: claims and the replica of policies in the service's SQLite file,
//! beside its outbox.

use std::path::Path;
use std::time::Duration;

use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::EventId;
use dovetail_events::idempotency::{
    Fingerprint, IdempotencyError, IdempotencyKey, MarkOutcome, SqliteIdempotencyStore,
    StoredOutcome,
};
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::sqlite::SqliteOutbox;
use dovetail_service_kit::store::sqlite::{SharedConnection, current_version, sql_version};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::view::{CLAIMS, ClaimConsistencyView, POLICY_REPLICA, PolicyReplicaView};
use super::{
    ClaimFilter, ClaimWrite, RepairReport, ReplicaOutcome, ReplicatedPolicy, StoreError,
    WriteOutcome, replica_key,
};
use crate::domain::Claim;
use dovetail_consistency::sqlite::now_ms;

// `policy_replica.bucket` is the policy id's consistency bucket: `view::POLICY_REPLICA`'s
// migration adds it to a file made before it existed, with the index on (bucket,
// policy_id) and the table `policy_replica_buckets`. Likewise `claims.bucket` (the claim
// id's) and `claims.changed_at_ms` (when this service last wrote the row, NULL in rows
// older than the column), with `claim_buckets`, by `view::CLAIMS`. No SQL comment inside CREATE TABLE:
// SQLite keeps its text and edits it on ALTER TABLE ... DROP COLUMN, which a comment can
// break.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS claims (
    claim_id    TEXT PRIMARY KEY,
    policy_id   TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    version       INTEGER NOT NULL,
    snapshot      TEXT NOT NULL,
    bucket        INTEGER,
    changed_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS claims_by_policy ON claims (policy_id, claim_id);
CREATE INDEX IF NOT EXISTS claims_by_customer ON claims (customer_id, claim_id);
CREATE TABLE IF NOT EXISTS policy_replica (
    policy_id         TEXT PRIMARY KEY,
    version           INTEGER NOT NULL,
    snapshot          TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    replicated_at_ms  INTEGER NOT NULL,
    bucket            INTEGER
);
";

/// How long a policy event's "processed" marker is kept: longer than any redelivery.
const REPLICA_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Claims and the policy replica in a SQLite file: tables `claims` and `policy_replica`
/// (with the digest of each of their buckets in `claim_buckets` and
/// `policy_replica_buckets`), the outbox's
/// tables, and the idempotency records of requests and of policy events.
#[derive(Debug, Clone)]
pub struct SqliteClaimStore {
    connection: SharedConnection,
    outbox: SqliteOutbox,
}

impl SqliteClaimStore {
    /// Opens (creating if missing) the database at `path` for `outbox`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or its tables created.
    pub fn open(path: &Path, outbox: SqliteOutbox) -> Result<Self, StoreError> {
        let mut connection = dovetail_service_kit::store::sqlite::open(path, SCHEMA)?;
        for table in [POLICY_REPLICA, CLAIMS] {
            table
                .migrate(&mut connection)
                .map_err(|error| StoreError::backend("adding the consistency digests", error))?;
        }
        Ok(Self {
            connection: SharedConnection::new(connection),
            outbox,
        })
    }

    /// See [`ClaimStore::write`](super::ClaimStore::write).
    pub(super) async fn write(&self, write: ClaimWrite) -> Result<WriteOutcome, StoreError> {
        let outbox = self.outbox.clone();
        self.connection.run(move |connection| {
            dovetail_service_kit::store::sqlite::write(connection, &outbox, write.request.as_ref(), |unit| {
                let snapshot = write.claim.snapshot();
                let json = serde_json::to_string(snapshot).map_err(|error| StoreError::backend("serializing a claim", error))?;
                let version = sql_version(snapshot.version);
                let id = &snapshot.claim_id;
                // The version this write replaces, for the bucket's digest.
                let old = current_version(unit.transaction(), "claims", "claim_id", id)?;
                let now = now_ms();
                let written = match write.expected {
                    ExpectedVersion::New => unit.transaction().execute(
                        "INSERT INTO claims (claim_id, policy_id, customer_id, version, snapshot, bucket, changed_at_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (claim_id) DO NOTHING",
                        params![id, snapshot.policy_id, snapshot.customer_id, version, json, dovetail_consistency::bucket(id), now],
                    )?,
                    ExpectedVersion::Exactly(expected) => unit.transaction().execute(
                        "UPDATE claims SET version = ?2, snapshot = ?3, changed_at_ms = ?5 WHERE claim_id = ?1 AND version = ?4",
                        params![id, version, json, sql_version(expected), now],
                    )?,
                    ExpectedVersion::Any => unit.transaction().execute(
                        "UPDATE claims SET version = ?2, snapshot = ?3, changed_at_ms = ?4 WHERE claim_id = ?1",
                        params![id, version, json, now],
                    )?,
                };
                if written == 0 {
                    return Err(StoreError::VersionConflict {
                        id: id.clone(),
                        current: current_version(unit.transaction(), "claims", "claim_id", id)?,
                    });
                }
                CLAIMS.record(unit.transaction(), id, old, snapshot.version)?;
                write.change.append_to(unit, write.expected)?;
                Ok(())
            })
        })
        .await
    }

    /// See [`ClaimStore::get`](super::ClaimStore::get).
    pub(super) async fn get(&self, claim_id: &str) -> Result<Option<Claim>, StoreError> {
        let claim_id = claim_id.to_owned();
        self.connection
            .run(move |connection| {
                let snapshot: Option<String> = connection
                    .prepare_cached("SELECT snapshot FROM claims WHERE claim_id = ?1")?
                    .query_row([&claim_id], |row| row.get(0))
                    .optional()?;
                snapshot.map(|json| parse_claim(&json)).transpose()
            })
            .await
    }

    /// See [`ClaimStore::list`](super::ClaimStore::list).
    pub(super) async fn list(
        &self,
        filter: &ClaimFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let (sql, value) = match filter {
            ClaimFilter::Policy(id) => (
                "SELECT snapshot FROM claims WHERE policy_id = ?1 AND claim_id > ?2 ORDER BY claim_id LIMIT ?3",
                id.clone(),
            ),
            ClaimFilter::Customer(id) => (
                "SELECT snapshot FROM claims WHERE customer_id = ?1 AND claim_id > ?2 ORDER BY claim_id LIMIT ?3",
                id.clone(),
            ),
        };
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.connection
            .run(move |connection| {
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement
                    .query_map(params![value, after, limit], |row| row.get::<_, String>(0))?;
                rows.map(|row| parse_claim(&row?)).collect()
            })
            .await
    }

    /// See [`ClaimStore::replicated_policy`](super::ClaimStore::replicated_policy).
    pub(super) async fn replicated_policy(
        &self,
        policy_id: &str,
    ) -> Result<Option<ReplicatedPolicy>, StoreError> {
        let policy_id = policy_id.to_owned();
        self.connection.run(move |connection| {
            let row: Option<(String, String, i64)> = connection
                .prepare_cached(
                    "SELECT snapshot, event_id, replicated_at_ms FROM policy_replica WHERE policy_id = ?1",
                )?
                .query_row([&policy_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()?;
            row.map(|(json, event_id, at)| {
                Ok(ReplicatedPolicy {
                    policy: serde_json::from_str(&json).map_err(|error| {
                        StoreError::backend("reading a replicated policy", error)
                    })?,
                    event_id,
                    replicated_at_ms: u64::try_from(at).unwrap_or(0),
                })
            })
            .transpose()
        })
        .await
    }

    /// See [`ClaimStore::claims_with_policies`](super::ClaimStore::claims_with_policies).
    pub(super) async fn claims_with_policies(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(ClaimSnapshot, Option<PolicySnapshot>)>, StoreError> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.connection
            .run(move |connection| {
                let mut statement = connection.prepare_cached(
                    "SELECT c.snapshot, r.snapshot FROM claims c
                     LEFT JOIN policy_replica r ON r.policy_id = c.policy_id
                     WHERE c.claim_id > ?1 ORDER BY c.claim_id LIMIT ?2",
                )?;
                let rows = statement.query_map(params![after, limit], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })?;
                rows.map(|row| {
                    let (claim, policy) = row?;
                    let claim = serde_json::from_str(&claim)
                        .map_err(|error| StoreError::backend("reading a stored claim", error))?;
                    let policy = policy
                        .map(|json| serde_json::from_str(&json))
                        .transpose()
                        .map_err(|error| {
                            StoreError::backend("reading a replicated policy", error)
                        })?;
                    Ok((claim, policy))
                })
                .collect()
            })
            .await
    }

    /// See [`ClaimStore::apply_policy`](super::ClaimStore::apply_policy).
    pub(super) async fn apply_policy(
        &self,
        event_id: EventId,
        fingerprint: Fingerprint,
        policy: PolicySnapshot,
    ) -> Result<ReplicaOutcome, StoreError> {
        self.connection.run(move |connection| {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let key = IdempotencyKey::new(replica_key(event_id))
                .map_err(|error| StoreError::backend("recording an applied event", error))?;
            let marked = SqliteIdempotencyStore::mark_processed_in(
                &tx,
                &key,
                &fingerprint,
                &StoredOutcome::empty(),
                REPLICA_RETENTION,
            )
            .map_err(|error| match error {
                IdempotencyError::PayloadMismatch { .. } => StoreError::KeyReused {
                    key: event_id.to_string(),
                },
                other => StoreError::backend("recording an applied event", other),
            })?;
            if !matches!(marked, MarkOutcome::Marked) {
                tx.rollback()?;
                return Ok(ReplicaOutcome::Duplicate);
            }
            let json = serde_json::to_string(&policy).map_err(|error| StoreError::backend("serializing a replicated policy", error))?;
            let now_ms = now_ms();
            // The version this event replaces, for the bucket's digest.
            let old = current_version(&tx, "policy_replica", "policy_id", &policy.policy_id)?;
            let written = tx.execute(
                "INSERT INTO policy_replica (policy_id, version, snapshot, event_id, replicated_at_ms, bucket)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (policy_id) DO UPDATE SET
                     version = excluded.version, snapshot = excluded.snapshot,
                     event_id = excluded.event_id, replicated_at_ms = excluded.replicated_at_ms
                 WHERE excluded.version > policy_replica.version",
                params![
                    policy.policy_id,
                    sql_version(policy.version),
                    json,
                    event_id.to_string(),
                    now_ms,
                    dovetail_consistency::bucket(&policy.policy_id)
                ],
            )?;
            if written == 1 {
                POLICY_REPLICA.record(&tx, &policy.policy_id, old, policy.version)?;
            }
            tx.commit()?;
            Ok(if written == 1 { ReplicaOutcome::Applied } else { ReplicaOutcome::Stale })
        })
        .await
    }

    /// The consistency view of the claims in this file.
    pub fn consistency_view(&self) -> ClaimConsistencyView {
        dovetail_service_kit::store::SqliteTableView::new(self.connection.clone(), CLAIMS).into()
    }

    /// See [`ClaimStore::repair`](super::ClaimStore::repair).
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

    /// The consistency view of the policy replica in this file.
    pub fn policy_replica_view(&self) -> PolicyReplicaView {
        dovetail_service_kit::store::SqliteTableView::new(self.connection.clone(), POLICY_REPLICA)
            .into()
    }

    /// See [`ClaimStore::ping`](super::ClaimStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.connection
            .run(|connection| {
                connection.query_row("SELECT count(*) FROM claims LIMIT 1", [], |_| Ok(()))?;
                Ok(())
            })
            .await
    }
}

fn parse_claim(json: &str) -> Result<Claim, StoreError> {
    serde_json::from_str::<ClaimSnapshot>(json)
        .map(Claim::from_snapshot)
        .map_err(|error| StoreError::backend("reading a stored claim", error))
}
