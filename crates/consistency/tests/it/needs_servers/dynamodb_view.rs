//! `DynamoDbDigests` and `DynamoDbView` against the AWS emulator: the testkit's contract
//! suite, deletes included; the digest items that `record`'s actions keep in each write's
//! transaction agree with the entries, across the 16 digest partitions; and a check
//! between two sets of one table finds and classifies the drift between them.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::Client;
use dovetail_consistency::dynamodb::{DynamoDbDigests, DynamoDbView};
use dovetail_consistency::{BucketRange, Check, CheckConfig, Digest, Drift, Entry, View};
use dovetail_testkit::aws::{TableSpec, fresh_table};
use dovetail_testkit::consistency_contract::{DeleteFixture, ViewFixture};

/// Writes `new` (replacing `old`) into `digests`' set in one transaction, as a store does.
async fn write(client: &Client, digests: &DynamoDbDigests, old: Option<&Entry>, new: &Entry) {
    let actions = digests.record(old, new).unwrap();
    client
        .transact_write_items()
        .set_transact_items(Some(actions.to_vec()))
        .send()
        .await
        .unwrap();
}

async fn table(prefix: &str) -> (Client, String) {
    let client = dovetail_testkit::aws().await.dynamodb();
    let table = fresh_table(&client, prefix, &TableSpec::default()).await;
    (client, table)
}

/// A set of items on a fresh table, written as a store writes them: each write's entry
/// recorded with the one it replaces.
struct Items {
    client: Client,
    digests: DynamoDbDigests,
    view: DynamoDbView,
    held: Mutex<HashMap<String, Entry>>,
}

impl Items {
    async fn new() -> Self {
        let (client, table) = table("consistency-contract").await;
        let digests = DynamoDbDigests::new(&table, "items");
        let view = DynamoDbView::new(client.clone(), digests.clone());
        Self {
            client,
            digests,
            view,
            held: Mutex::new(HashMap::new()),
        }
    }

    async fn put(&self, new: Entry) -> Entry {
        let old = self.held.lock().unwrap().get(&new.key).cloned();
        write(&self.client, &self.digests, old.as_ref(), &new).await;
        self.held
            .lock()
            .unwrap()
            .insert(new.key.clone(), new.clone());
        new
    }

    fn version_of(&self, key: &str) -> u64 {
        self.held.lock().unwrap()[key].version
    }
}

impl ViewFixture for Items {
    type View = DynamoDbView;

    fn view(&self) -> &DynamoDbView {
        &self.view
    }

    async fn create(&self, n: u32) -> Entry {
        self.put(Entry::live(format!("item-{n:03}"), u64::from(n % 3) + 1))
            .await
    }

    async fn update(&self, key: &str) -> Entry {
        let version = self.version_of(key) + 1;
        self.put(Entry::live(key, version)).await
    }
}

impl DeleteFixture for Items {
    async fn delete(&self, key: &str) -> Entry {
        let version = self.version_of(key) + 1;
        self.put(Entry {
            deleted: true,
            ..Entry::live(key, version)
        })
        .await
    }
}

mod contract {
    dovetail_testkit::consistency_contract_tests!(|| async { super::Items::new().await });
    dovetail_testkit::consistency_contract_delete_tests!(|| async { super::Items::new().await });
}

#[tokio::test]
async fn digests_kept_by_record_agree_with_the_entries() {
    let (client, table) = table("consistency-view").await;
    let digests = DynamoDbDigests::new(&table, "policies");
    let view = DynamoDbView::new(client.clone(), digests.clone());
    let mut expected = Vec::new();
    for i in 0..60 {
        let entry = Entry::live(format!("policy-{i}"), 1).changed_at(1_000 + i);
        write(&client, &digests, None, &entry).await;
        expected.push(entry);
    }
    // Updates, and a tombstone, which counts in no digest but is an entry.
    for i in 0..10_u64 {
        let old = expected[usize::try_from(i).unwrap()].clone();
        let new = Entry {
            deleted: i == 0,
            ..Entry::live(old.key.clone(), 2).changed_at(2_000 + i)
        };
        write(&client, &digests, Some(&old), &new).await;
        expected[usize::try_from(i).unwrap()] = new;
    }
    expected.sort_by(|a, b| (a.bucket(), &a.key).cmp(&(b.bucket(), &b.key)));

    assert_eq!(
        view.digest(BucketRange::FULL).await.unwrap(),
        Digest::of(&expected)
    );
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 59);
    assert_eq!(view.entries(BucketRange::FULL).await.unwrap(), expected);
    // Ranges across and within digest partitions (256 buckets each).
    for (start, end) in [(0, 300), (250, 260), (3_800, 4_096), (4_095, 4_096)] {
        let range = BucketRange::new(start, end).unwrap();
        let inside: Vec<Entry> = expected
            .iter()
            .filter(|e| range.contains(e.bucket()))
            .cloned()
            .collect();
        assert_eq!(
            view.digest(range).await.unwrap(),
            Digest::of(&inside),
            "{range}"
        );
        assert_eq!(view.entries(range).await.unwrap(), inside, "{range}");
    }
}

#[tokio::test]
async fn a_check_between_two_sets_finds_and_classifies_drift() {
    let (client, table) = table("consistency-check").await;
    let owner = DynamoDbDigests::new(&table, "owner");
    let replica = DynamoDbDigests::new(&table, "replica");
    for i in 0..40 {
        let key = format!("policy-{i}");
        write(&client, &owner, None, &Entry::live(&key, 1).changed_at(1)).await;
        if i != 3 {
            write(&client, &replica, None, &Entry::live(&key, 1)).await;
        }
    }
    // The owner moves policy-5 on; the replica misses it.
    write(
        &client,
        &owner,
        Some(&Entry::live("policy-5", 1)),
        &Entry::live("policy-5", 2).changed_at(1),
    )
    .await;
    // The replica holds one the owner never had.
    write(&client, &replica, None, &Entry::live("stray", 1)).await;
    // The owner deletes policy-7 (a tombstone); the replica misses it.
    write(
        &client,
        &owner,
        Some(&Entry::live("policy-7", 1)),
        &Entry::tombstone("policy-7", 2).changed_at(1),
    )
    .await;
    // The replica lost policy-9 for good (its entry removed, as by a purge).
    client
        .transact_write_items()
        .set_transact_items(Some(
            replica
                .forget(&Entry::live("policy-9", 1))
                .unwrap()
                .to_vec(),
        ))
        .send()
        .await
        .unwrap();

    let owner = DynamoDbView::new(client.clone(), owner);
    let replica = DynamoDbView::new(client, replica);
    let report = Check::new(&owner, &replica, CheckConfig::default())
        .run()
        .await
        .unwrap();
    let mut found: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.drift))
        .collect();
    found.sort_by_key(|(key, _)| *key);
    assert_eq!(
        found,
        [
            ("policy-3", Drift::MissingInReplica { source_version: 1 }),
            (
                "policy-5",
                Drift::ReplicaBehind {
                    source_version: 2,
                    replica_version: 1
                }
            ),
            (
                "policy-7",
                Drift::MissedDelete {
                    source_version: 2,
                    replica_version: 1
                }
            ),
            ("policy-9", Drift::MissingInReplica { source_version: 1 }),
            ("stray", Drift::ExtraInReplica { replica_version: 1 }),
        ]
    );
    assert!(report.recheck.is_empty(), "{report:?}");
}
