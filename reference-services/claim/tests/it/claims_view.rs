//! The claim service's SQLite views against the consistency contract (its claims, the
//! owner's view; its replica of policies), and the repair of claim replicas: each
//! drifted claim's snapshot republished through the outbox as the event of its status.
//! The search index's claims checked against this view and repaired through it are in
//! the search service's tests.

use std::path::PathBuf;

use dovetail_claim::domain::{Claim, ClaimChange, ClaimRequest};
use dovetail_claim::store::{
    ClaimConsistencyView, ClaimStore, ClaimWrite, PolicyReplicaView, REPAIR_BATCH, SkipReason,
};
use dovetail_consistency::Entry;
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{EventId, Source};
use dovetail_events::idempotency::Fingerprint;
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;
use dovetail_testkit::consistency_contract::ViewFixture;
use time::macros::date;

use crate::support::{claim_body, policy};

/// A fresh SQLite store, its relay's store, and its file.
async fn open_at() -> (ClaimStore, AnyOutboxStore, PathBuf) {
    let path = std::env::temp_dir()
        .join(format!(
            "dovetail-claim-views-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .join("claim.db");
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(path.clone());
    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    let opened = ClaimStore::open(
        &storage,
        &transport,
        Source::parse("claim-service").unwrap(),
    )
    .await
    .unwrap();
    (opened.store, opened.relay_store, path)
}

async fn open() -> (ClaimStore, AnyOutboxStore) {
    let (store, outbox, _) = open_at().await;
    (store, outbox)
}

pub(crate) fn active_policy() -> PolicySnapshot {
    policy("pol-1", PolicyStatus::Active, 2)
}

pub(crate) async fn commit(
    store: &ClaimStore,
    (claim, change): (Claim, ClaimChange),
    expected: ExpectedVersion,
) -> Claim {
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
}

/// Files the claim `claim_id` against [`active_policy`].
pub(crate) async fn file(store: &ClaimStore, claim_id: &str) -> Claim {
    let request: ClaimRequest = serde_json::from_value(claim_body("pol-1", "500.00")).unwrap();
    let filed = Claim::file(
        claim_id.to_owned(),
        request,
        Some(&active_policy()),
        date!(2026 - 06 - 01),
    )
    .unwrap();
    commit(store, filed, ExpectedVersion::New).await
}

/// The claims of a fresh store, written by filing and reviewing claims (on DynamoDB
/// too, in `needs_servers::dynamodb_claims`).
pub(crate) struct Claims {
    pub(crate) store: ClaimStore,
    pub(crate) view: ClaimConsistencyView,
}

impl ViewFixture for Claims {
    type View = ClaimConsistencyView;

    fn view(&self) -> &ClaimConsistencyView {
        &self.view
    }

    async fn create(&self, n: u32) -> Entry {
        let claim = file(&self.store, &format!("clm-{n:03}")).await;
        Entry::live(claim.id(), claim.version())
    }

    async fn update(&self, key: &str) -> Entry {
        let claim = self.store.get(key).await.unwrap().expect("filed before");
        let expected = ExpectedVersion::Exactly(claim.version());
        let reviewed = commit(&self.store, claim.start_review().unwrap(), expected).await;
        Entry::live(key, reviewed.version())
    }
}

mod claims_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open().await.0;
        let view = store.consistency_view().expect("a view on SQLite");
        super::Claims { store, view }
    });
}

/// The replica of policies of a fresh store, written by applying policy snapshots (on
/// DynamoDB too, in `needs_servers::dynamodb_claims`).
pub(crate) struct Replica {
    pub(crate) store: ClaimStore,
    pub(crate) view: PolicyReplicaView,
}

impl Replica {
    async fn apply(&self, snapshot: PolicySnapshot) {
        let fingerprint = Fingerprint::of(serde_json::to_string(&snapshot).unwrap().as_bytes());
        self.store
            .apply_policy(EventId::generate(), fingerprint, snapshot)
            .await
            .unwrap();
    }
}

impl ViewFixture for Replica {
    type View = PolicyReplicaView;

    fn view(&self) -> &PolicyReplicaView {
        &self.view
    }

    async fn create(&self, n: u32) -> Entry {
        // Versions of their own per key, as events reach a replica.
        let snapshot = policy(
            &format!("pol-{n:03}"),
            PolicyStatus::Active,
            u64::from(n % 4) + 1,
        );
        let entry = Entry::live(&snapshot.policy_id, snapshot.version);
        self.apply(snapshot).await;
        entry
    }

    async fn update(&self, key: &str) -> Entry {
        let held = self
            .store
            .replicated_policy(key)
            .await
            .unwrap()
            .expect("applied before");
        let snapshot = policy(key, PolicyStatus::Cancelled, held.policy.version + 1);
        let entry = Entry::live(key, snapshot.version);
        self.apply(snapshot).await;
        entry
    }
}

mod policy_replica_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open().await.0;
        let view = store.policy_replica_view().expect("a view on SQLite");
        super::Replica { store, view }
    });
}

/// Each claim is republished as the event of its status at its current version, with
/// the run as causation; an unknown key is skipped and the others go ahead.
#[tokio::test]
async fn repair_republishes_each_claim_as_the_event_of_its_status() {
    let (store, outbox) = open().await;
    let submitted = file(&store, "clm-submitted").await;
    let reviewed = file(&store, "clm-reviewed").await;
    let reviewed = commit(
        &store,
        reviewed.start_review().unwrap(),
        ExpectedVersion::Exactly(1),
    )
    .await;
    let rejected = file(&store, "clm-rejected").await;
    let rejected = commit(
        &store,
        rejected.reject("not covered".into()).unwrap(),
        ExpectedVersion::Exactly(1),
    )
    .await;
    let paid = file(&store, "clm-paid").await;
    let paid = commit(
        &store,
        paid.start_review().unwrap(),
        ExpectedVersion::Exactly(1),
    )
    .await;
    let paid = commit(&store, paid.approve().unwrap(), ExpectedVersion::Exactly(2)).await;
    let paid = commit(&store, paid.pay().unwrap(), ExpectedVersion::Exactly(3)).await;

    let run = EventId::generate();
    let keys = [
        "clm-paid",
        "clm-unknown",
        "clm-submitted",
        "clm-rejected",
        "clm-reviewed",
        "clm-paid",
    ];
    let report = store
        .repair(keys.iter().map(|key| (*key).to_owned()).collect(), run)
        .await
        .unwrap();

    let republished: Vec<_> = report
        .republished
        .iter()
        .map(|r| (r.key.as_str(), r.version, r.event_type))
        .collect();
    assert_eq!(
        republished,
        [
            ("clm-paid", paid.version(), "claim.paid"),
            ("clm-submitted", submitted.version(), "claim.filed"),
            ("clm-rejected", rejected.version(), "claim.rejected"),
            ("clm-reviewed", reviewed.version(), "claim.review_started"),
        ],
        "in the order given, each once, as the event of its status"
    );
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert_eq!(report.skipped[0].key, "clm-unknown");
    assert_eq!(report.skipped[0].reason, SkipReason::NotFound);
    assert!(report.deferred.is_empty());

    let mut sent: Vec<_> = outbox
        .fetch_ready(100)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.envelope)
        .filter(|envelope| envelope.causation_id() == Some(run))
        .collect();
    sent.sort_by_key(|envelope| envelope.aggregate_id().as_str().to_owned());
    let sent_facts: Vec<_> = sent
        .iter()
        .map(|e| {
            (
                e.aggregate_id().as_str().to_owned(),
                e.sequence().get(),
                e.event_type().as_str().to_owned(),
                e.causation_id(),
            )
        })
        .collect();
    assert_eq!(
        sent_facts,
        [
            ("clm-paid".to_owned(), 4, "claim.paid".to_owned(), Some(run)),
            (
                "clm-rejected".to_owned(),
                2,
                "claim.rejected".to_owned(),
                Some(run)
            ),
            (
                "clm-reviewed".to_owned(),
                2,
                "claim.review_started".to_owned(),
                Some(run)
            ),
            (
                "clm-submitted".to_owned(),
                1,
                "claim.filed".to_owned(),
                Some(run)
            ),
        ]
    );
    let rejected_again: serde_json::Value = sent[1].payload().clone();
    assert_eq!(
        rejected_again["claim"]["rejection_reason"], "not covered",
        "the whole snapshot, the rejection's reason with it"
    );
    assert_eq!(
        store.get("clm-paid").await.unwrap().unwrap().version(),
        4,
        "a repair raises no version"
    );
}

/// Keys past [`REPAIR_BATCH`] distinct ones come back deferred, untouched; a claim row
/// whose version is not the outbox's (edited behind the store's back) is refused and
/// reported, and the others go ahead.
#[tokio::test]
async fn repair_defers_past_its_batch_and_reports_what_the_outbox_refuses() {
    let (store, _outbox, path) = open_at().await;
    file(&store, "clm-edited").await;
    file(&store, "clm-fine").await;
    file(&store, "clm-late").await;
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE claims SET version = 5 WHERE claim_id = 'clm-edited'",
            [],
        )
        .unwrap();
    let mut keys: Vec<String> = vec!["clm-edited".into(), "clm-fine".into()];
    keys.extend((2..REPAIR_BATCH).map(|i| format!("clm-none-{i}")));
    keys.push("clm-none-2".into()); // a duplicate takes no place in the batch
    keys.push("clm-late".into());
    let report = store.repair(keys, EventId::generate()).await.unwrap();

    assert_eq!(report.deferred, ["clm-late"], "the key past the batch");
    let republished: Vec<_> = report.republished.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(republished, ["clm-fine"]);
    assert_eq!(report.skipped.len(), REPAIR_BATCH - 1, "{report:?}");
    assert_eq!(report.skipped[0].key, "clm-edited");
    assert!(
        matches!(&report.skipped[0].reason, SkipReason::Refused(why) if why.contains("never stamped")),
        "{report:?}"
    );
    assert!(
        report.skipped[1..]
            .iter()
            .all(|s| s.reason == SkipReason::NotFound)
    );
}

/// A file made before the claims had digests gets its buckets, change-time column and
/// digests on open, filled from its rows; rows older than the column have no change
/// time, and writes after the migration keep the digests true.
#[tokio::test]
async fn a_file_made_before_the_claim_digests_gets_them_filled() {
    use dovetail_consistency::{BucketRange, Digest, View};

    let (store, _outbox, path) = open_at().await;
    let mut claims = Vec::new();
    for n in 0..30 {
        claims.push(file(&store, &format!("clm-{n:03}")).await);
    }
    drop(store);
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE claim_buckets;
         DROP INDEX claims_by_bucket;
         ALTER TABLE claims DROP COLUMN bucket;
         ALTER TABLE claims DROP COLUMN changed_at_ms;",
    )
    .unwrap();
    drop(raw);

    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(path);
    let store = ClaimStore::open(
        &storage,
        &transport,
        Source::parse("claim-service").unwrap(),
    )
    .await
    .unwrap()
    .store;
    let view = store.consistency_view().unwrap();
    let entries = view.entries(BucketRange::FULL).await.unwrap();
    assert_eq!(entries.len(), 30);
    assert!(
        entries.iter().all(|entry| entry.changed_at_ms.is_none()),
        "{entries:?}"
    );
    let expected: Vec<Entry> = claims.iter().map(|c| Entry::live(c.id(), 1)).collect();
    assert_eq!(
        view.digest(BucketRange::FULL).await.unwrap(),
        Digest::of(&expected)
    );

    let claim = store.get("clm-007").await.unwrap().unwrap();
    let reviewed = commit(
        &store,
        claim.start_review().unwrap(),
        ExpectedVersion::Exactly(1),
    )
    .await;
    let entries = view.entries(BucketRange::FULL).await.unwrap();
    let after = entries.iter().find(|entry| entry.key == "clm-007").unwrap();
    assert_eq!(after.version, reviewed.version());
    assert!(
        after.changed_at_ms.is_some(),
        "a write after the migration has a change time"
    );
    assert_eq!(
        view.digest(BucketRange::FULL).await.unwrap(),
        Digest::of(&entries)
    );
}
