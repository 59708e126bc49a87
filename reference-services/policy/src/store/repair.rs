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
//!
//! The report, the batch and the loops on each backend are the kit's
//! ([`dovetail_service_kit::store::republish_rows`], `republish_items`); this module
//! says which event a policy is republished as.

use dovetail_contracts::policy::{AGGREGATE_TYPE, PolicySnapshot, PolicyUpdated};
use dovetail_events::envelope::{AggregateRef, Event, EventId};
use dovetail_outbox::OutboxError;
use dovetail_outbox::sqlite::SqliteOutbox;
use dovetail_service_kit::store::{RepairReport, SnapshotRows, republish_rows};
use rusqlite::Connection;

use super::StoreError;

/// The policies' rows: `policies`, keyed by `policy_id`.
const POLICY_ROWS: SnapshotRows = SnapshotRows {
    table: "policies",
    key: "policy_id",
};

/// Republishes the current snapshot of each of the first
/// [`REPAIR_BATCH`](super::REPAIR_BATCH) distinct `keys` in one unit of work of `outbox`
/// on `connection`, each with `run` as its causation id. See
/// [`PolicyStore::repair`](super::PolicyStore::repair).
pub(super) fn republish(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    republish_rows(
        connection,
        outbox,
        POLICY_ROWS,
        keys,
        run,
        |unit, policy: PolicySnapshot, version, metadata| {
            let aggregate = aggregate(&policy)?;
            // The policy service's events go through `append`: the outbox keeps the version.
            unit.republish(aggregate, version, &PolicyUpdated { policy }, metadata)
                .map(|()| PolicyUpdated::TYPE)
        },
    )
}

/// The same on DynamoDB: see [`republish_items`](dovetail_service_kit::store::republish_items).
#[cfg(feature = "aws")]
pub(super) async fn republish_on_dynamodb(
    table: &dovetail_service_kit::store::dynamodb::ServiceTable,
    keys: Vec<String>,
    run: EventId,
) -> Result<RepairReport, StoreError> {
    dovetail_service_kit::store::republish_items(
        table,
        &super::dynamodb::POLICIES,
        keys,
        run,
        |unit, policy, version, metadata| {
            Box::pin(async move {
                let event = PolicyUpdated {
                    policy: policy.clone(),
                };
                unit.republish(aggregate(policy)?, version, &event, metadata)
                    .await?;
                Ok(PolicyUpdated::TYPE)
            })
        },
    )
    .await
}

fn aggregate(policy: &PolicySnapshot) -> Result<AggregateRef, OutboxError> {
    AggregateRef::parse(AGGREGATE_TYPE, &policy.policy_id).map_err(OutboxError::invalid_event)
}

#[cfg(test)]
mod tests {
    use dovetail_events::envelope::{EventId, Source};
    use dovetail_outbox::ExpectedVersion;
    use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};

    use crate::domain::{Policy, PolicyTerms};
    use crate::store::PolicyWrite;
    use crate::store::sqlite::SqlitePolicyStore;
    use dovetail_service_kit::store::SkipReason;

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
                report.republished[0].key.as_str(),
                report.republished[0].version
            ),
            ("pol-2", 1)
        );
        assert_eq!(report.skipped.len(), 1, "{report:?}");
        assert_eq!(report.skipped[0].key, "pol-1");
        assert!(
            matches!(&report.skipped[0].reason, SkipReason::Refused(why) if why.contains("never stamped")),
            "{report:?}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
