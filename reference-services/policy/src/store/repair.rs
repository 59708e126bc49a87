//! Repairing the policy service's replicas: each policy a consistency check found drifted
//! gets its current snapshot republished through the outbox, so the replicas' ordinary
//! consumers fix their copies. Nothing writes a replica directly; the owner only sends
//! its state again.
//!
//! # Which event is republished
//! `policy.updated` ([`PolicyUpdated`]), carrying the policy's whole stored snapshot at
//! its current version. Every policy event carries the full snapshot and every consumer
//! (the claim service's replica, the search index) reads only that, so any of them would
//! repair; `policy.updated` is the one whose meaning fits a snapshot sent again. The type
//! of the policy's last change would be better still, but the store does not keep it
//! (its row holds the snapshot only, and the outbox deletes records once published), and
//! guessing it from the status would be wrong for an active policy (issued, or updated
//! since?) and for a cancelled one would drop the cancellation's reason, which is not
//! stored either. The envelope's causation id (the check run's id) says why it exists.

use dovetail_contracts::policy::{AGGREGATE_TYPE, PolicySnapshot, PolicyUpdated};
use dovetail_events::envelope::{AggregateRef, EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_outbox::sqlite::SqliteOutbox;
use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// The most policies one [`repair`](super::PolicyStore::repair) call republishes: the
/// first this many distinct keys it is given. The rest come back in
/// [`RepairReport::deferred`], for the next call. One call is one transaction, holding
/// SQLite's write lock while it reads and republishes, and its records reach the relay
/// together; the cap keeps both short so repairing a badly drifted replica does not
/// stall the service's own writes or flood the relay. The caller paces the calls. (On
/// DynamoDB, a call's policies go in transactions of 25: each republish is two of the
/// 100 actions a transaction may hold.)
pub const REPAIR_BATCH: usize = 100;

/// What one [`repair`](super::PolicyStore::repair) call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The policies republished, in the order of the keys given.
    pub republished: Vec<Republished>,
    /// The keys not republished, each with why; the others went ahead regardless.
    pub skipped: Vec<Skipped>,
    /// The keys beyond [`REPAIR_BATCH`], untouched: pass them to the next call.
    pub deferred: Vec<String>,
}

/// One policy whose snapshot was republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    /// The policy's id.
    pub policy_id: String,
    /// The version republished: the policy's current one, not raised by the repair.
    pub version: u64,
    /// The republished event's id (new; the event at this version first published had
    /// another).
    pub event_id: EventId,
}

/// A key the repair did not republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key as given.
    pub policy_id: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a key was not republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// This service has no such policy: a replica holding it got an event of another
    /// policy service (a subscription to the wrong topic, say). Republishing cannot fix
    /// that; the replica's row is the replica's operators' to remove.
    NotFound,
    /// The outbox refused to republish it (the message says why, such as a policy row
    /// whose version is not the outbox's); run the check again before retrying.
    Refused(String),
}

/// Republishes the current snapshot of each of the first [`REPAIR_BATCH`] distinct
/// `keys` in one unit of work of `outbox` on `connection`, each with `run` as its
/// causation id. See [`PolicyStore::repair`](super::PolicyStore::repair).
pub(super) fn republish(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    let (batch, deferred) = take_batch(keys);
    let mut report = RepairReport {
        deferred,
        ..RepairReport::default()
    };
    let mut unit = outbox.begin(connection)?;
    let mut pending = Vec::new();
    for policy_id in batch {
        // Read in the unit of work's transaction, which holds the write lock until
        // commit: no write can come between this version and the republish.
        let row: Option<(i64, String)> = unit
            .transaction()
            .prepare_cached("SELECT version, snapshot FROM policies WHERE policy_id = ?1")?
            .query_row([&policy_id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((version, json)) = row else {
            report.skipped.push(Skipped {
                policy_id,
                reason: SkipReason::NotFound,
            });
            continue;
        };
        let policy: PolicySnapshot = serde_json::from_str(&json)
            .map_err(|error| StoreError::backend(format!("reading policy {policy_id}"), error))?;
        let version = u64::try_from(version).unwrap_or(0);
        let aggregate =
            AggregateRef::parse(AGGREGATE_TYPE, &policy_id).map_err(OutboxError::invalid_event)?;
        let metadata = EventMetadata {
            causation_id: Some(run),
            ..EventMetadata::default()
        };
        // The policy service's events go through `append`: the outbox keeps the version.
        match unit.republish(aggregate, version, &PolicyUpdated { policy }, metadata) {
            Ok(()) => pending.push((policy_id, version)),
            Err(error @ (OutboxError::InvalidEvent { .. } | OutboxError::Conflict { .. })) => {
                report.skipped.push(Skipped {
                    policy_id,
                    reason: SkipReason::Refused(with_sources(&error)),
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    let committed = unit.commit()?;
    // One envelope per republished policy, in the order of the republishes.
    report.republished = pending
        .into_iter()
        .zip(committed.envelopes())
        .map(|((policy_id, version), envelope)| Republished {
            policy_id,
            version,
            event_id: envelope.id(),
        })
        .collect();
    Ok(report)
}

/// The first [`REPAIR_BATCH`] distinct `keys`, in order, and the distinct rest (deferred).
pub(super) fn take_batch(keys: Vec<String>) -> (Vec<String>, Vec<String>) {
    let (mut batch, mut deferred): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for key in keys {
        if batch.contains(&key) || deferred.contains(&key) {
            continue;
        }
        if batch.len() < REPAIR_BATCH {
            batch.push(key);
        } else {
            deferred.push(key);
        }
    }
    (batch, deferred)
}

/// `error`'s message followed by its sources', which say what the outbox refused and why.
pub(super) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use dovetail_events::envelope::{EventId, Source};
    use dovetail_outbox::ExpectedVersion;
    use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};

    use super::SkipReason;
    use crate::domain::{Policy, PolicyTerms};
    use crate::store::PolicyWrite;
    use crate::store::sqlite::SqlitePolicyStore;

    async fn draft(store: &SqlitePolicyStore, id: &str) {
        let terms: PolicyTerms = serde_json::from_value(serde_json::json!({
            "customer_id": "cust-1",
            "product_line": "home",
            "coverage_limit": "10000.00",
            "deductible": "250.00",
            "premium": "120.00",
            "effective_date": "2026-01-01",
            "expiry_date": "2099-12-31"
        }))
        .unwrap();
        let (policy, change) = Policy::draft(id.to_owned(), terms).unwrap();
        store
            .write(PolicyWrite {
                policy,
                change,
                expected: ExpectedVersion::New,
                request: None,
            })
            .await
            .unwrap();
    }

    /// A policy row whose version is not the outbox's (a row edited behind the store's
    /// back) is refused by the outbox and reported; the other policies are republished.
    #[tokio::test]
    async fn a_policy_the_outbox_refuses_is_reported_and_the_others_go_ahead() {
        let path = std::env::temp_dir()
            .join(format!(
                "dovetail-policy-repair-{}",
                uuid::Uuid::new_v4().simple()
            ))
            .with_extension("db");
        let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service").unwrap()));
        let store = SqlitePolicyStore::open(&path, outbox).unwrap();
        draft(&store, "pol-1").await;
        draft(&store, "pol-2").await;
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE policies SET version = 5 WHERE policy_id = 'pol-1'",
                [],
            )
            .unwrap();

        let report = store
            .repair(vec!["pol-1".into(), "pol-2".into()], EventId::generate())
            .await
            .unwrap();
        assert_eq!(report.republished.len(), 1, "{report:?}");
        assert_eq!(
            (
                report.republished[0].policy_id.as_str(),
                report.republished[0].version
            ),
            ("pol-2", 1)
        );
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert_eq!(report.skipped[0].policy_id, "pol-1");
        assert!(
            matches!(&report.skipped[0].reason, SkipReason::Refused(why) if why.contains("never stamped")),
            "{report:?}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
