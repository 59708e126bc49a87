//! The policy service's consistency view on SQLite: its bucket digests follow every
//! write (drafts, issues, cancels, a refused stale write) and agree with a
//! `MemoryView` of the same policies, survive reopening the file, and are filled once
//! from the rows of a file made before they existed.

use std::path::Path;
use std::time::Duration;

use dovetail_consistency::{BucketRange, Check, CheckConfig, Entry, MemoryView, View};
use dovetail_events::bus::EmbeddedBus;
use dovetail_outbox::ExpectedVersion;
use dovetail_policy::domain::Policy;
use dovetail_policy::store::{PolicyConsistencyView, PolicyStore, PolicyWrite};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::store_promises::{new_policy, open_with};

async fn open_file(path: &Path) -> PolicyStore {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(path.to_owned());
    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    open_with(&storage, &transport).await.0
}

async fn commit(
    store: &PolicyStore,
    (policy, change): (Policy, dovetail_policy::domain::PolicyChange),
    expected: u64,
) -> Policy {
    store
        .write(PolicyWrite {
            policy: policy.clone(),
            change,
            expected: ExpectedVersion::Exactly(expected),
            request: None,
        })
        .await
        .unwrap();
    policy
}

/// Writes `count` policies: all drafted, two in three issued, every fourth of those
/// cancelled, every fifth draft cancelled as a draft; returns them as they end.
pub(crate) async fn write_policies(store: &PolicyStore, count: usize) -> Vec<Policy> {
    let mut policies = Vec::new();
    for i in 0..count {
        let write = new_policy(&format!("cust-{}", i % 7));
        store.write(write.clone()).await.unwrap();
        let mut policy = write.policy;
        if i % 3 != 0 {
            policy = commit(store, policy.issue().unwrap(), 1).await;
            if i % 4 == 0 {
                policy = commit(store, policy.cancel(Some("moved".into())).unwrap(), 2).await;
            }
        } else if i % 5 == 0 {
            policy = commit(store, policy.cancel(None).unwrap(), 1).await;
        }
        policies.push(policy);
    }
    policies
}

pub(crate) fn memory_of(policies: &[Policy]) -> MemoryView {
    let memory = MemoryView::new();
    for policy in policies {
        memory.put(policy.id(), policy.version());
    }
    memory
}

/// The full range, its halves, a few odd ranges and single buckets.
pub(crate) fn ranges() -> Vec<BucketRange> {
    let (left, right) = BucketRange::FULL.split().unwrap();
    let mut ranges = vec![BucketRange::FULL, left, right];
    ranges.extend(
        [
            (0, 1),
            (3, 700),
            (1_000, 1_001),
            (2_047, 2_049),
            (4_000, 4_096),
            (17, 3_333),
        ]
        .map(|(start, end)| BucketRange::new(start, end).unwrap()),
    );
    ranges
}

async fn assert_agrees(view: &PolicyConsistencyView, memory: &MemoryView) {
    assert_agrees_up_to(view, memory, u32::MAX).await;
}

/// `view` and `memory` hold the same: digests on every range, entries on the ranges of at
/// most `entry_buckets` buckets (a check reads entries of small ranges only, and on
/// DynamoDB each bucket is a query), and a check between them finds nothing.
pub(crate) async fn assert_agrees_up_to(
    view: &PolicyConsistencyView,
    memory: &MemoryView,
    entry_buckets: u32,
) {
    for range in ranges() {
        assert_eq!(
            view.digest(range).await.unwrap(),
            memory.digest_of(range),
            "{range}"
        );
        if range.len() <= entry_buckets {
            let entries: Vec<Entry> = view
                .entries(range)
                .await
                .unwrap()
                .into_iter()
                .map(|entry| Entry {
                    changed_at_ms: None,
                    ..entry
                })
                .collect();
            assert_eq!(entries, memory.entries_of(range), "{range}");
        }
    }
    let config = CheckConfig {
        expected_lag: Duration::ZERO,
        ..CheckConfig::default()
    };
    let report = Check::new(view, memory, config).run().await.unwrap();
    assert!(report.is_consistent(), "{report:?}");
}

#[tokio::test]
async fn the_policy_view_follows_every_write_and_survives_reopening() {
    let path = crate::support::temp_dir().join("policy.db");
    let store = open_file(&path).await;
    let view = store.consistency_view().expect("SQLite has a view");
    let empty = MemoryView::new();
    assert_agrees(&view, &empty).await;

    let mut policies = write_policies(&store, 120).await;
    // A stale write is refused and changes no digest.
    let stale = policies[1].clone(); // issued at 2
    let (again, change) = Policy::from_snapshot(stale.snapshot().clone())
        .update(serde_json::from_value(serde_json::json!({ "premium": "99.00" })).unwrap())
        .unwrap();
    let refused = store
        .write(PolicyWrite {
            policy: again.clone(),
            change: change.clone(),
            expected: ExpectedVersion::Exactly(1),
            request: None,
        })
        .await;
    assert!(refused.is_err());
    // A write at any version replaces the old entry in its bucket.
    store
        .write(PolicyWrite {
            policy: again.clone(),
            change,
            expected: ExpectedVersion::Any,
            request: None,
        })
        .await
        .unwrap();
    policies[1] = again;

    let memory = memory_of(&policies);
    assert_eq!(memory.digest_of(BucketRange::FULL).count, 120);
    assert_agrees(&view, &memory).await;
    // The owner says when each policy changed.
    let entries = view.entries(BucketRange::FULL).await.unwrap();
    assert!(
        entries
            .iter()
            .all(|entry| entry.changed_at_ms.is_some() && !entry.deleted)
    );

    drop((view, store));
    let store = open_file(&path).await;
    assert_agrees(&store.consistency_view().unwrap(), &memory).await;
}

#[tokio::test]
async fn a_file_made_before_the_digests_gets_them_filled_once() {
    let path = crate::support::temp_dir().join("policy.db");
    let store = open_file(&path).await;
    let policies = write_policies(&store, 80).await;
    drop(store);
    // Take the file back to the schema of the build before the digests.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch(
        "DROP TABLE consistency_buckets;
         DROP INDEX policies_by_bucket;
         ALTER TABLE policies DROP COLUMN bucket;
         ALTER TABLE policies DROP COLUMN changed_at_ms;",
    )
    .unwrap();
    drop(raw);

    let memory = memory_of(&policies);
    let store = open_file(&path).await;
    let view = store.consistency_view().unwrap();
    assert_agrees(&view, &memory).await;
    // Rows older than the change times have none.
    let entries = view.entries(BucketRange::FULL).await.unwrap();
    assert!(entries.iter().all(|entry| entry.changed_at_ms.is_none()));

    // Opening again does not fill them twice, and new writes add to what was filled.
    drop((view, store));
    let store = open_file(&path).await;
    let mut more = write_policies(&store, 10).await;
    more.extend(policies);
    assert_agrees(&store.consistency_view().unwrap(), &memory_of(&more)).await;
}

/// The policies of a fresh store, written by drafting and issuing policies (on DynamoDB
/// too, in `needs_servers::dynamodb_view`).
pub(crate) struct Policies {
    pub(crate) store: PolicyStore,
    pub(crate) view: PolicyConsistencyView,
}

impl dovetail_testkit::consistency_contract::ViewFixture for Policies {
    type View = PolicyConsistencyView;

    fn view(&self) -> &PolicyConsistencyView {
        &self.view
    }

    async fn create(&self, n: u32) -> Entry {
        let write = new_policy(&format!("cust-{}", n % 3));
        let entry = Entry::live(write.policy.id(), write.policy.version());
        self.store.write(write).await.unwrap();
        entry
    }

    async fn update(&self, key: &str) -> Entry {
        let policy = self.store.get(key).await.unwrap().expect("drafted before");
        let version = policy.version();
        let issued = commit(&self.store, policy.issue().unwrap(), version).await;
        Entry::live(key, issued.version())
    }
}

mod policies_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open_file(&crate::support::temp_dir().join("policy.db")).await;
        let view = store.consistency_view().expect("a view on SQLite");
        super::Policies { store, view }
    });
}
