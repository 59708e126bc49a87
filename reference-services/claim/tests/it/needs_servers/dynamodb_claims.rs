//! The claims' own consistency view and the replica of policies on fresh DynamoDB tables
//! of the emulator: the contract suite for both (as on SQLite in `claims_view`); drift in a replica of claims (a
//! `MemoryView` fed from the claim events, as a search index is) found by a check and
//! repaired through `ClaimStore::repair`, the republished events fed back; a table made
//! before the claims' digests backfilled on open; and the claim-policy invariant, which
//! reads `claims_with_policies`, catching a claim whose policy the replica lacks.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_claim::domain::{Claim, ClaimRequest};
use dovetail_claim::invariants::{ClaimPolicyInvariant, POLICY_MISSING};
use dovetail_claim::store::{ClaimStore, SkipReason, Skipped};
use dovetail_consistency::dynamodb::DynamoDbDigests;
use dovetail_consistency::{
    BucketRange, Check, CheckConfig, CheckReport, Digest, Drift, Entry, Invariant, MemoryView,
    Repair, RunId, View,
};
use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_events::envelope::{Envelope, EventId, Source};
use dovetail_events::idempotency::Fingerprint;
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;
use time::macros::date;

use crate::claims_view::{active_policy, commit, file};
use crate::support::{claim_body, policy};

/// The claim store and its relay's store on the table `table`, opened as the service
/// opens them.
async fn open_on(table: &str) -> (ClaimStore, AnyOutboxStore) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(table.to_owned());
    let transport = Transport::Aws(super::clients().await);
    let opened = ClaimStore::open(
        &storage,
        &transport,
        Source::parse("claim-service").unwrap(),
    )
    .await
    .unwrap();
    (opened.store, opened.relay_store)
}

/// The claim store on a fresh table, its relay's store, and the table's name.
async fn open() -> (ClaimStore, AnyOutboxStore, String) {
    let table = dovetail_testkit::unique_name("claim-claims");
    let (store, outbox) = open_on(&table).await;
    (store, outbox, table)
}

mod claims_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open().await.0;
        let view = store.consistency_view().expect("a view on DynamoDB");
        crate::claims_view::Claims { store, view }
    });
}

mod policy_replica_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open().await.0;
        let view = store.policy_replica_view().expect("a view on DynamoDB");
        crate::claims_view::Replica { store, view }
    });
}

/// A replica of claims, as a search index holds them: each claim at the highest version
/// of the claim events it was fed.
struct ClaimReplica {
    view: MemoryView,
    fed: HashSet<EventId>,
}

impl ClaimReplica {
    fn new() -> Self {
        Self {
            view: MemoryView::new(),
            fed: HashSet::new(),
        }
    }

    /// Applies every event of `outbox` not fed before; answers them.
    async fn feed_new(&mut self, outbox: &AnyOutboxStore) -> Vec<Envelope> {
        let mut added = Vec::new();
        for record in outbox.fetch_ready(10_000).await.unwrap() {
            if self.fed.insert(record.envelope.id()) {
                let claim: ClaimSnapshot =
                    serde_json::from_value(record.envelope.payload()["claim"].clone()).unwrap();
                if self
                    .view
                    .get(&claim.claim_id)
                    .is_none_or(|held| held.version < claim.version)
                {
                    self.view.put(&claim.claim_id, claim.version);
                }
                added.push(record.envelope);
            }
        }
        added
    }
}

async fn check(owner: &ClaimStore, replica: &MemoryView) -> CheckReport {
    let config = CheckConfig {
        expected_lag: Duration::ZERO,
        ..CheckConfig::default()
    };
    Check::new(owner.consistency_view().unwrap(), replica, config)
        .run()
        .await
        .unwrap()
}

/// Files `count` claims `clm-<i>`; every third is reviewed, every sixth approved too (at
/// versions 1, 2 and 3); answers them.
async fn file_claims(store: &ClaimStore, count: usize) -> Vec<Claim> {
    let mut claims = Vec::new();
    for i in 0..count {
        let mut claim = file(store, &format!("clm-{i:03}")).await;
        if i % 3 == 0 {
            claim = commit(
                store,
                claim.start_review().unwrap(),
                ExpectedVersion::Exactly(1),
            )
            .await;
            if i % 6 == 0 {
                claim = commit(store, claim.approve().unwrap(), ExpectedVersion::Exactly(2)).await;
            }
        }
        claims.push(claim);
    }
    claims
}

#[tokio::test]
async fn drift_in_a_replica_of_claims_is_found_and_repaired_through_the_claim_store() {
    let (store, outbox, _) = open().await;
    let claims = file_claims(&store, 12).await;
    let mut replica = ClaimReplica::new();
    replica.feed_new(&outbox).await;
    let report = check(&store, &replica.view).await;
    assert!(report.is_consistent(), "{report:?}");

    // clm-001 (submitted, at 1): lost; clm-006 (approved, at 3): set back to 2;
    // clm-003 (under review, at 2): set back to 1; and clm-stray, never filed here.
    let (lost, approved, reviewed) = (&claims[1], &claims[6], &claims[3]);
    replica.view.forget(lost.id());
    replica.view.put(approved.id(), 2);
    replica.view.put(reviewed.id(), 1);
    replica.view.put("clm-stray", 1);

    let report = check(&store, &replica.view).await;
    let mut found: Vec<(String, Drift)> = report
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.drift))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            (
                lost.id().to_owned(),
                Drift::MissingInReplica { source_version: 1 }
            ),
            (
                reviewed.id().to_owned(),
                Drift::ReplicaBehind {
                    source_version: 2,
                    replica_version: 1
                }
            ),
            (
                approved.id().to_owned(),
                Drift::ReplicaBehind {
                    source_version: 3,
                    replica_version: 2
                }
            ),
            (
                "clm-stray".to_owned(),
                Drift::ExtraInReplica { replica_version: 1 }
            ),
        ],
        "{report:?}"
    );

    let run = EventId::generate();
    let keys = found.into_iter().map(|(key, _)| key).collect();
    let repair = store.repair(keys, run).await.unwrap();
    let republished: Vec<_> = repair
        .republished
        .iter()
        .map(|r| (r.key.as_str(), r.version, r.event_type))
        .collect();
    assert_eq!(
        republished,
        [
            (lost.id(), 1, "claim.filed"),
            (reviewed.id(), 2, "claim.review_started"),
            (approved.id(), 3, "claim.approved"),
        ],
        "each as the event of its status, at its version"
    );
    assert_eq!(
        repair.skipped,
        [Skipped {
            key: "clm-stray".into(),
            reason: SkipReason::NotFound
        }]
    );
    assert!(repair.deferred.is_empty());

    // The republished events reach the replica like any other.
    let added = replica.feed_new(&outbox).await;
    let mut added_ids: Vec<EventId> = added.iter().map(Envelope::id).collect();
    let mut expected: Vec<EventId> = repair.republished.iter().map(|r| r.event_id).collect();
    added_ids.sort();
    expected.sort();
    assert_eq!(added_ids, expected);
    assert!(added.iter().all(|e| e.causation_id() == Some(run)));
    let report = check(&store, &replica.view).await;
    let left: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.drift))
        .collect();
    assert_eq!(
        left,
        [("clm-stray", Drift::ExtraInReplica { replica_version: 1 })],
        "only the stray is left, the replica's operators' to remove"
    );
    assert_eq!(
        store.get(approved.id()).await.unwrap().unwrap().version(),
        3,
        "a repair raises no version"
    );

    // The same through the runner's port: the stray is skipped with why.
    let outcome = Repair::repair(&store, vec!["clm-stray".into()], RunId::generate())
        .await
        .unwrap();
    assert_eq!(
        outcome.skipped,
        [(
            "clm-stray".to_owned(),
            "the claim service has no such claim: remove it at the replica".to_owned()
        )]
    );
}

/// A repair on DynamoDB goes out in transactions of 25 claims, in the order of the keys;
/// a claim item whose version is not the outbox's (edited behind the store's back) is
/// refused and reported, an unknown key is not found, and the others go ahead.
#[tokio::test]
async fn a_repair_on_dynamodb_spans_transactions_and_reports_what_it_skips() {
    let (store, outbox, table) = open().await;
    let count = dovetail_service_kit::store::PER_TRANSACTION + 5;
    let claims = file_claims(&store, count).await;
    let edited = claims[7].id().to_owned();
    super::clients()
        .await
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("claim#{edited}")))
        .key("sk", AttributeValue::S("claim".into()))
        .update_expression("SET #version = :version")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":version", AttributeValue::N("9".into()))
        .send()
        .await
        .unwrap();
    let mut keys: Vec<String> = claims.iter().rev().map(|c| c.id().to_owned()).collect();
    keys.insert(3, "clm-unknown".into());

    let run = EventId::generate();
    let repair = store.repair(keys.clone(), run).await.unwrap();
    let expected: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|key| *key != edited && *key != "clm-unknown")
        .collect();
    let republished: Vec<&str> = repair.republished.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(republished, expected, "in the order of the keys");
    let skipped: Vec<_> = repair
        .skipped
        .iter()
        .map(|s| (s.key.as_str(), matches!(s.reason, SkipReason::Refused(_))))
        .collect();
    assert_eq!(
        skipped,
        [("clm-unknown", false), (edited.as_str(), true)],
        "{:?}",
        repair.skipped
    );
    assert_eq!(repair.skipped[0].reason, SkipReason::NotFound);

    let sent: HashSet<EventId> = outbox
        .fetch_ready(10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|record| record.envelope.causation_id() == Some(run))
        .map(|record| record.envelope.id())
        .collect();
    let reported: HashSet<EventId> = repair.republished.iter().map(|r| r.event_id).collect();
    assert_eq!(
        sent, reported,
        "one event per claim republished, and no other"
    );
}

/// A table made before the claims' digests: its claims are missing from the view until
/// the store's next open backfills them, once, without a change time; a write after
/// that keeps the digests true.
#[tokio::test]
async fn a_table_made_before_the_claim_digests_is_backfilled_on_open() {
    let (store, _outbox, table) = open().await;
    let claims = file_claims(&store, 9).await;
    let client = super::clients().await.dynamodb().clone();
    let digests = DynamoDbDigests::new(&table, "claims");
    for claim in &claims[..6] {
        client
            .transact_write_items()
            .set_transact_items(Some(
                digests
                    .forget(&Entry::live(claim.id(), claim.version()))
                    .unwrap()
                    .to_vec(),
            ))
            .send()
            .await
            .unwrap();
    }
    client
        .delete_item()
        .table_name(&table)
        .key(
            "pk",
            AttributeValue::S("consistency#claims#backfill".into()),
        )
        .key("sk", AttributeValue::S("done".into()))
        .send()
        .await
        .unwrap();
    let view = store.consistency_view().unwrap();
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 3);

    let all: Vec<Entry> = claims
        .iter()
        .map(|c| Entry::live(c.id(), c.version()))
        .collect();
    for _ in 0..2 {
        let (store, _) = open_on(&table).await;
        let view = store.consistency_view().unwrap();
        assert_eq!(
            view.digest(BucketRange::FULL).await.unwrap(),
            Digest::of(&all)
        );
    }
    let backfilled = claims[0].id();
    let bucket = BucketRange::single(dovetail_consistency::bucket(backfilled)).unwrap();
    let entries = view.entries(bucket).await.unwrap();
    let entry = entries.iter().find(|e| e.key == backfilled).unwrap();
    assert_eq!(
        entry.changed_at_ms, None,
        "a backfilled entry has no change time"
    );

    // claims[1] is submitted at 1: a review after the backfill moves its entry.
    let reviewed = commit(
        &store,
        claims[1].start_review().unwrap(),
        ExpectedVersion::Exactly(1),
    )
    .await;
    let mut after = all.clone();
    after[1] = Entry::live(reviewed.id(), reviewed.version());
    assert_eq!(
        view.digest(BucketRange::FULL).await.unwrap(),
        Digest::of(&after)
    );
}

/// Files `claim_id` against `policy`, which the replica need not hold.
async fn file_against(store: &ClaimStore, claim_id: &str, policy: &PolicySnapshot) -> Claim {
    let request: ClaimRequest =
        serde_json::from_value(claim_body(&policy.policy_id, "500.00")).unwrap();
    let filed = Claim::file(
        claim_id.to_owned(),
        request,
        Some(policy),
        date!(2026 - 06 - 01),
    )
    .unwrap();
    commit(store, filed, ExpectedVersion::New).await
}

async fn replicate(store: &ClaimStore, snapshot: PolicySnapshot) {
    let fingerprint = Fingerprint::of(serde_json::to_string(&snapshot).unwrap().as_bytes());
    store
        .apply_policy(EventId::generate(), fingerprint, snapshot)
        .await
        .unwrap();
}

/// Claims come in id order, page after page, each with the replica's copy of its policy
/// (none for a policy it lacks); the invariant over them names the claim whose policy is
/// missing, and only that one.
#[tokio::test]
async fn the_claim_policy_invariant_on_dynamodb_catches_a_claim_whose_policy_is_missing() {
    let (store, _outbox, _) = open().await;
    replicate(&store, active_policy()).await;
    let unknown = policy("pol-unknown", PolicyStatus::Active, 1);
    // Filed out of id order, so the scan's order is not the answer's.
    for id in ["clm-004", "clm-001", "clm-006", "clm-002", "clm-005"] {
        file(&store, id).await;
    }
    file_against(&store, "clm-003", &unknown).await;

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .claims_with_policies(after.as_deref(), 4)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        after = Some(last.claim_id.clone());
        pages.push(
            page.iter()
                .map(|(claim, policy)| {
                    (
                        claim.claim_id.clone(),
                        policy.as_ref().map(|p| p.policy_id.clone()),
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    let with = |id: &str| (id.to_owned(), Some("pol-1".to_owned()));
    assert_eq!(
        pages,
        [
            vec![
                with("clm-001"),
                with("clm-002"),
                ("clm-003".to_owned(), None),
                with("clm-004")
            ],
            vec![with("clm-005"), with("clm-006")],
        ]
    );

    let found = ClaimPolicyInvariant::new(store.clone())
        .violations(10)
        .await
        .unwrap();
    let listed: Vec<_> = found
        .listed
        .iter()
        .map(|v| (v.key.as_str(), v.kind.as_str()))
        .collect();
    assert_eq!(listed, [("clm-003", POLICY_MISSING)]);
    assert!(
        found
            .counts
            .iter()
            .all(|(kind, count)| *count == u64::from(kind == POLICY_MISSING)),
        "{:?}",
        found.counts
    );

    // Once the replica has the policy, nothing is missing.
    replicate(&store, unknown).await;
    let found = ClaimPolicyInvariant::new(store)
        .violations(10)
        .await
        .unwrap();
    assert!(found.listed.is_empty(), "{:?}", found.listed);
}
