//! The index checked against its owners: the policy service's and the claim service's
//! real SQLite stores, whose events the index is fed through the service's own consumer
//! (`consumer::apply`). Drift made by what the index is fed (all of one aggregate's
//! events lost, the last of another's lost, a tombstone where the owner has the item
//! live, a document of an aggregate the owner never had) is found and classified by
//! `Check`, and repaired through the owner: its `repair` republishes the drifted
//! snapshots through its outbox, the consumer applies them, and the index agrees again
//! but for the document the owner has never had, which it reports as not found.
//!
//! Run on tantivy here (`tantivy_views`) and on OpenSearch in
//! `needs_servers::opensearch_views`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dovetail_claim::domain::{Claim, ClaimChange, ClaimRequest};
use dovetail_claim::store::{ClaimStore, ClaimWrite};
use dovetail_consistency::{Check, CheckConfig, CheckReport, Drift, View};
use dovetail_contracts::claim::ClaimStatus;
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{Envelope, EventId, Source};
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_policy::domain::{Policy, PolicyChange, PolicyTerms};
use dovetail_policy::store::{PolicyStore, PolicyWrite};
use dovetail_search::document::{DocumentType, SearchDocument, Tombstone};
use dovetail_search::index::{ConsistencyIndex, IndexView, SearchIndex};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;
use time::macros::date;

use crate::support::{claim, lineage, policy, temp_dir};

/// How many aggregates each owner writes.
const ITEMS: usize = 30;

fn storage(path: &Path) -> (StorageConfig, Transport) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(path.to_owned());
    (
        storage,
        Transport::Embedded(EmbeddedBus::open_in_memory().unwrap()),
    )
}

/// The events `outbox` holds, per aggregate in version order.
async fn events_by_key(outbox: &AnyOutboxStore) -> BTreeMap<String, Vec<Envelope>> {
    let mut events: BTreeMap<String, Vec<Envelope>> = BTreeMap::new();
    for record in outbox.fetch_ready(10_000).await.unwrap() {
        let envelope = record.envelope;
        events
            .entry(envelope.aggregate_id().as_str().to_owned())
            .or_default()
            .push(envelope);
    }
    for list in events.values_mut() {
        list.sort_by_key(|envelope| envelope.sequence().get());
    }
    events
}

/// The events `outbox` holds that the repair run `run` republished.
async fn republished(outbox: &AnyOutboxStore, run: EventId) -> Vec<Envelope> {
    outbox
        .fetch_ready(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.envelope)
        .filter(|envelope| envelope.causation_id() == Some(run))
        .collect()
}

async fn feed<I: SearchIndex>(index: &I, envelope: &Envelope) {
    dovetail_search::consumer::apply(index, envelope.clone())
        .await
        .unwrap();
}

async fn check<O: View, R: View>(owner: O, replica: R) -> CheckReport {
    // No lag allowed: every write here is done before the check, none is in flight.
    let config = CheckConfig {
        expected_lag: Duration::ZERO,
        ..CheckConfig::default()
    };
    Check::new(owner, replica, config).run().await.unwrap()
}

fn found(report: &CheckReport) -> Vec<(String, Drift)> {
    let mut found: Vec<_> = report
        .differences
        .iter()
        .map(|difference| (difference.key.clone(), difference.drift))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The drift the scenario makes, by key.
struct Lost {
    /// Every event of this aggregate lost: missing in the index.
    missing: String,
    /// The last of this aggregate's three events lost: the index is behind.
    behind: String,
    /// Only the first of this aggregate's three events applied, then a tombstone at
    /// version 2: the index holds it deleted where the owner has it live at 3.
    tombstoned: String,
    /// A document of an aggregate the owner never had.
    stray: String,
}

/// The drift the scenario makes on `events`: keys 1 (missing), 4 (behind) and 8
/// (tombstoned), whose event counts it checks.
fn drift_keys(events: &BTreeMap<String, Vec<Envelope>>, prefix: &str) -> Lost {
    let key = |i: usize| format!("{prefix}-{i:03}");
    let lost = Lost {
        missing: key(1),
        behind: key(4),
        tombstoned: key(8),
        stray: format!("{prefix}-stray"),
    };
    assert_eq!(events[&lost.behind].len(), 3);
    assert_eq!(events[&lost.tombstoned].len(), 3);
    lost
}

/// Feeds `index` every event of `events` but those `lost` says, then makes the rest of
/// its drift: the tombstone, and the stray document `stray`.
async fn feed_with_drift<I: SearchIndex>(
    index: &I,
    doc_type: DocumentType,
    events: &BTreeMap<String, Vec<Envelope>>,
    lost: &Lost,
    stray: SearchDocument,
) {
    for (key, list) in events {
        let applied = if *key == lost.missing {
            0
        } else if *key == lost.behind {
            list.len() - 1
        } else if *key == lost.tombstoned {
            1
        } else {
            list.len()
        };
        for envelope in &list[..applied] {
            feed(index, envelope).await;
        }
    }
    let tombstone = Tombstone {
        id: doc_type.document_id(&lost.tombstoned),
        version: 2,
        lineage: lineage("operator", "deleted.by.hand", 2),
    };
    index.delete(tombstone).await.unwrap();
    index.upsert(stray).await.unwrap();
    index.refresh().await.unwrap();
}

/// What the check must find for `lost`.
fn expected_drift(lost: &Lost) -> Vec<(String, Drift)> {
    let mut expected = vec![
        (
            lost.missing.clone(),
            Drift::MissingInReplica { source_version: 2 },
        ),
        (
            lost.behind.clone(),
            Drift::ReplicaBehind {
                source_version: 3,
                replica_version: 2,
            },
        ),
        (
            lost.tombstoned.clone(),
            Drift::ReplicaBehind {
                source_version: 3,
                replica_version: 2,
            },
        ),
        (
            lost.stray.clone(),
            Drift::ExtraInReplica { replica_version: 1 },
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    expected
}

fn keys(report: &CheckReport) -> Vec<String> {
    report.differences.iter().map(|d| d.key.clone()).collect()
}

/// Writes [`ITEMS`] policies: all drafted, two in three issued, every fourth of those
/// cancelled.
async fn write_policies(store: &PolicyStore) {
    let commit = |(policy, change): (Policy, PolicyChange), expected| async move {
        store
            .write(PolicyWrite {
                policy: policy.clone(),
                change,
                expected,
                request: None,
            })
            .await
            .unwrap();
        policy
    };
    for i in 0..ITEMS {
        let terms: PolicyTerms = serde_json::from_value(serde_json::json!({
            "customer_id": format!("cust-{}", i % 5),
            "product_line": "home",
            "coverage_limit": "10000.00",
            "deductible": "250.00",
            "premium": "120.00",
            "effective_date": "2026-01-01",
            "expiry_date": "2099-12-31"
        }))
        .unwrap();
        let drafted = Policy::draft(format!("pol-{i:03}"), terms).unwrap();
        let policy = commit(drafted, ExpectedVersion::New).await;
        if i % 3 != 0 {
            let issued = commit(policy.issue().unwrap(), ExpectedVersion::Exactly(1)).await;
            if i % 4 == 0 {
                commit(issued.cancel(None).unwrap(), ExpectedVersion::Exactly(2)).await;
            }
        }
    }
}

/// Drift in the index's policies is found against the policy service's view and
/// repaired through `PolicyStore::repair`.
pub(crate) async fn drift_in_policies_is_found_and_repaired_through_the_owner<I>(index: I)
where
    I: SearchIndex + ConsistencyIndex + Clone,
{
    let (storage, transport) = storage(&temp_dir("search-drift-policies").join("policy.db"));
    let opened = PolicyStore::open(
        &storage,
        &transport,
        Source::parse("policy-service").unwrap(),
    )
    .await
    .unwrap();
    let (owner, outbox) = (opened.store, opened.relay_store);
    write_policies(&owner).await;
    let events = events_by_key(&outbox).await;
    let lost = drift_keys(&events, "pol");
    let stray = policy(&lost.stray, "cust-1", 1, PolicyStatus::Active);
    feed_with_drift(&index, DocumentType::Policy, &events, &lost, stray).await;

    let replica = IndexView::new(index.clone(), DocumentType::Policy);
    let owner_view = owner.consistency_view().unwrap();
    let report = check(&owner_view, &replica).await;
    assert_eq!(found(&report), expected_drift(&lost), "{report:?}");

    let run = EventId::generate();
    let repair = owner.repair(keys(&report), run).await.unwrap();
    let mut repaired: Vec<_> = repair.republished.iter().map(|r| r.key.clone()).collect();
    repaired.sort();
    let mut drifted = vec![
        lost.missing.clone(),
        lost.behind.clone(),
        lost.tombstoned.clone(),
    ];
    drifted.sort();
    assert_eq!(repaired, drifted, "{repair:?}");
    let skipped: Vec<_> = repair.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(skipped, [lost.stray.as_str()], "the owner never had it");

    for envelope in republished(&outbox, run).await {
        feed(&index, &envelope).await;
    }
    index.refresh().await.unwrap();
    let report = check(&owner_view, &replica).await;
    assert_eq!(
        found(&report),
        [(
            lost.stray.clone(),
            Drift::ExtraInReplica { replica_version: 1 }
        )],
        "all repaired but the stray, which is the index operators' to remove: {report:?}"
    );
}

/// The policy every claim is filed against.
fn covering_policy() -> PolicySnapshot {
    PolicySnapshot {
        policy_id: "pol-1".into(),
        customer_id: "cust-1".into(),
        product_line: "home".into(),
        coverage_limit: "10000.00".parse().unwrap(),
        deductible: "250.00".parse().unwrap(),
        premium: "120.00".parse().unwrap(),
        effective_date: date!(2026 - 01 - 01),
        expiry_date: date!(2099 - 12 - 31),
        status: PolicyStatus::Active,
        version: 2,
    }
}

/// Writes [`ITEMS`] claims: all filed, two in three taken for review, every fourth of
/// those approved.
async fn write_claims(store: &ClaimStore) {
    let commit = |(claim, change): (Claim, ClaimChange), expected| async move {
        store
            .write(ClaimWrite {
                claim: claim.clone(),
                change,
                expected,
                request: None,
            })
            .await
            .unwrap();
        claim
    };
    for i in 0..ITEMS {
        let request: ClaimRequest = serde_json::from_value(serde_json::json!({
            "policy_id": "pol-1",
            "incident_date": "2026-03-01",
            "amount": "500.00",
            "description": "burst pipe in the kitchen"
        }))
        .unwrap();
        let filed = Claim::file(
            format!("clm-{i:03}"),
            request,
            Some(&covering_policy()),
            date!(2026 - 06 - 01),
        )
        .unwrap();
        let claim = commit(filed, ExpectedVersion::New).await;
        if i % 3 != 0 {
            let reviewed = commit(claim.start_review().unwrap(), ExpectedVersion::Exactly(1)).await;
            if i % 4 == 0 {
                commit(reviewed.approve().unwrap(), ExpectedVersion::Exactly(2)).await;
            }
        }
    }
}

/// Drift in the index's claims is found against the claim service's view and repaired
/// through `ClaimStore::repair`, which republishes each claim as the event of its
/// status.
pub(crate) async fn drift_in_claims_is_found_and_repaired_through_the_owner<I>(index: I)
where
    I: SearchIndex + ConsistencyIndex + Clone,
{
    let (storage, transport) = storage(&temp_dir("search-drift-claims").join("claim.db"));
    let opened = ClaimStore::open(
        &storage,
        &transport,
        Source::parse("claim-service").unwrap(),
    )
    .await
    .unwrap();
    let (owner, outbox) = (opened.store, opened.relay_store);
    write_claims(&owner).await;
    let events = events_by_key(&outbox).await;
    let lost = drift_keys(&events, "clm");
    let stray = claim(
        &lost.stray,
        "cust-1",
        "a burst pipe",
        1,
        ClaimStatus::Submitted,
    );
    feed_with_drift(&index, DocumentType::Claim, &events, &lost, stray).await;

    let replica = IndexView::new(index.clone(), DocumentType::Claim);
    let owner_view = owner.consistency_view().unwrap();
    let report = check(&owner_view, &replica).await;
    assert_eq!(found(&report), expected_drift(&lost), "{report:?}");

    let run = EventId::generate();
    let repair = owner.repair(keys(&report), run).await.unwrap();
    let mut repaired: Vec<_> = repair
        .republished
        .iter()
        .map(|r| (r.key.clone(), r.event_type))
        .collect();
    repaired.sort();
    let mut drifted = vec![
        (lost.missing.clone(), "claim.review_started"),
        (lost.behind.clone(), "claim.approved"),
        (lost.tombstoned.clone(), "claim.approved"),
    ];
    drifted.sort();
    assert_eq!(repaired, drifted, "{repair:?}");
    let skipped: Vec<_> = repair.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(skipped, [lost.stray.as_str()], "the owner never had it");

    for envelope in republished(&outbox, run).await {
        feed(&index, &envelope).await;
    }
    index.refresh().await.unwrap();
    let report = check(&owner_view, &replica).await;
    assert_eq!(
        found(&report),
        [(
            lost.stray.clone(),
            Drift::ExtraInReplica { replica_version: 1 }
        )],
        "all repaired but the stray, which is the index operators' to remove: {report:?}"
    );
    let held = index.get("claim:clm-004").await.unwrap().unwrap();
    assert_eq!(
        held.version(),
        3,
        "the behind claim is at its owner's version again"
    );
}

/// Both drift scenarios for the index `$open` makes.
macro_rules! drift_suite {
    ($open:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn drift_in_policies_is_found_and_repaired_through_the_owner() {
            crate::drift::drift_in_policies_is_found_and_repaired_through_the_owner($open.await)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn drift_in_claims_is_found_and_repaired_through_the_owner() {
            crate::drift::drift_in_claims_is_found_and_repaired_through_the_owner($open.await)
                .await;
        }
    };
}
