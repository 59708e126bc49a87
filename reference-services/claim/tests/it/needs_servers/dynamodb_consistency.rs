//! The claim service's policy replica checked against the policy service's policies, both
//! on fresh DynamoDB tables of the emulator: drift made by hand in the replica's table is
//! found and classified by `dovetail_consistency::Check` between the two services' views,
//! and the policy service repairs it through its outbox (the republished events applied
//! by the replica's own handler); a check while both sides are being written finds no
//! drift that is not there.
//!
//! A drift by hand edits the replica's item together with its consistency digest and
//! entry, in one transaction, as a replica that really diverged would hold them: an edit
//! of the item alone would change nothing a check reads (see `dovetail_consistency`'s
//! notes on rows edited behind a store's back). Policies are never deleted, so the
//! owner has no tombstones and `MissedDelete` cannot arise between these two; the
//! "missed tombstone" here is the other way round, a tombstone the replica holds for a
//! policy its owner has live (`ReplicaBehind`). `MissedDelete` on DynamoDB is covered by
//! `dovetail-consistency`'s own emulator test.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use dovetail_claim::store::{ClaimStore, ReplicaOutcome};
use dovetail_consistency::dynamodb::DynamoDbDigests;
use dovetail_consistency::{Check, CheckConfig, CheckReport, Drift, Entry};
use dovetail_events::envelope::{Envelope, EventId, Source};
use dovetail_outbox::{AnyOutboxStore, OutboxStore};
use dovetail_policy::store::{PolicyStore, SkipReason, Skipped};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::consistency_view::write_policies;

/// The set the claim store keeps its replica's digests under (its `view` module).
const REPLICA_SET: &str = "policy-replica";

fn storage(table: &str) -> StorageConfig {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(table.to_owned());
    storage
}

async fn open_policies() -> (PolicyStore, AnyOutboxStore) {
    let table = dovetail_testkit::unique_name("policy-view");
    let transport = Transport::Aws(super::clients().await);
    let opened = PolicyStore::open(
        &storage(&table),
        &transport,
        Source::parse("policy-service").unwrap(),
    )
    .await
    .unwrap();
    (opened.store, opened.relay_store)
}

/// The claim store on the table `table`, opened as the service opens it.
async fn open_claims_on(table: &str) -> ClaimStore {
    let transport = Transport::Aws(super::clients().await);
    ClaimStore::open(
        &storage(table),
        &transport,
        Source::parse("claim-service").unwrap(),
    )
    .await
    .unwrap()
    .store
}

/// The claim store on a fresh table, and the table's name.
async fn open_claims() -> (ClaimStore, String) {
    let table = dovetail_testkit::unique_name("claim-view");
    (open_claims_on(&table).await, table)
}

/// Feeds the replica, through its own handler, every event of the owner's outbox it was
/// not fed before (in each policy's order, as the outbox hands them out); answers them.
async fn feed_new(
    outbox: &AnyOutboxStore,
    replica: &ClaimStore,
    fed: &mut HashSet<EventId>,
) -> Vec<Envelope> {
    let mut added = Vec::new();
    for record in outbox.fetch_ready(10_000).await.unwrap() {
        if fed.insert(record.envelope.id()) {
            dovetail_claim::replica::apply(replica, record.envelope.clone())
                .await
                .unwrap();
            added.push(record.envelope);
        }
    }
    added
}

async fn check(owner: &PolicyStore, replica: &ClaimStore, lag: Duration) -> CheckReport {
    let config = CheckConfig {
        expected_lag: lag,
        ..CheckConfig::default()
    };
    Check::new(
        owner.consistency_view().unwrap(),
        replica.policy_replica_view().unwrap(),
        config,
    )
    .run()
    .await
    .unwrap()
}

/// Edits the replica's table by hand: the replica item of `policy_id` and its
/// consistency entry and digest, together.
struct HandEdits {
    client: aws_sdk_dynamodb::Client,
    table: String,
    digests: DynamoDbDigests,
}

impl HandEdits {
    async fn new(table: &str) -> Self {
        Self {
            client: super::clients().await.dynamodb().clone(),
            table: table.to_owned(),
            digests: DynamoDbDigests::new(table, REPLICA_SET),
        }
    }

    fn key(policy_id: &str) -> [(String, AttributeValue); 2] {
        [
            (
                "pk".to_owned(),
                AttributeValue::S(format!("policy#{policy_id}")),
            ),
            ("sk".to_owned(), AttributeValue::S("replica".to_owned())),
        ]
    }

    async fn item(&self, policy_id: &str) -> std::collections::HashMap<String, AttributeValue> {
        self.client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(policy_id).into_iter().collect()))
            .consistent_read(true)
            .send()
            .await
            .unwrap()
            .item()
            .cloned()
            .unwrap_or_else(|| panic!("the replica has {policy_id}"))
    }

    async fn send(&self, actions: Vec<TransactWriteItem>) {
        self.client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .unwrap();
    }

    fn put(&self, item: std::collections::HashMap<String, AttributeValue>) -> TransactWriteItem {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    fn delete(&self, policy_id: &str) -> TransactWriteItem {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(policy_id).into_iter().collect()))
            .build()
            .unwrap();
        TransactWriteItem::builder().delete(delete).build()
    }

    /// The replica's item as a build before the digests left it: no entry, in no
    /// digest, and no backfill done.
    async fn before_the_digests(&self, policy_id: &str, version: u64) {
        self.send(
            self.digests
                .forget(&Entry::live(policy_id, version))
                .unwrap()
                .to_vec(),
        )
        .await;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(
                "pk",
                AttributeValue::S(format!("consistency#{REPLICA_SET}#backfill")),
            )
            .key("sk", AttributeValue::S("done".into()))
            .send()
            .await
            .unwrap();
    }

    /// The replica lost the policy's item.
    async fn lose(&self, policy_id: &str, version: u64) {
        let mut actions = vec![self.delete(policy_id)];
        actions.extend(
            self.digests
                .forget(&Entry::live(policy_id, version))
                .unwrap(),
        );
        self.send(actions).await;
    }

    /// The replica's item went back from `version` to `older`.
    async fn set_back(&self, policy_id: &str, version: u64, older: u64) {
        let mut item = self.item(policy_id).await;
        item.insert("version".to_owned(), AttributeValue::N(older.to_string()));
        let mut actions = vec![self.put(item)];
        actions.extend(
            self.digests
                .record(
                    Some(&Entry::live(policy_id, version)),
                    &Entry::live(policy_id, older),
                )
                .unwrap(),
        );
        self.send(actions).await;
    }

    /// The replica holds `extra_id`, a copy of `like`'s item, which its owner never had.
    async fn add_extra(&self, like: &str, extra_id: &str) {
        let mut item = self.item(like).await;
        item.extend(Self::key(extra_id));
        item.insert("version".to_owned(), AttributeValue::N("1".to_owned()));
        let mut actions = vec![self.put(item)];
        actions.extend(
            self.digests
                .record(None, &Entry::live(extra_id, 1))
                .unwrap(),
        );
        self.send(actions).await;
    }

    /// The replica holds a tombstone at `older` for the policy (at `version` there).
    async fn tombstone(&self, policy_id: &str, version: u64, older: u64) {
        let mut actions = vec![self.delete(policy_id)];
        actions.extend(
            self.digests
                .record(
                    Some(&Entry::live(policy_id, version)),
                    &Entry::tombstone(policy_id, older),
                )
                .unwrap(),
        );
        self.send(actions).await;
    }
}

#[tokio::test]
async fn drift_made_by_hand_in_the_replica_is_found_and_repaired_through_the_owner() {
    let (owner, outbox) = open_policies().await;
    let (replica, replica_table) = open_claims().await;
    let ids = write_policies(&owner, "pol", 12).await;
    let mut fed = HashSet::new();
    feed_new(&outbox, &replica, &mut fed).await;
    let report = check(&owner, &replica, Duration::ZERO).await;
    assert!(report.is_consistent(), "{report:?}");

    // pol-001 at 2: lost; pol-004 at 3: set back to 2; pol-005 at 2: a tombstone at 1;
    // and pol-extra, which the owner never had.
    let (lost, behind, buried) = (ids[1].clone(), ids[4].clone(), ids[5].clone());
    let edits = HandEdits::new(&replica_table).await;
    edits.lose(&lost, 2).await;
    edits.set_back(&behind, 3, 2).await;
    edits.tombstone(&buried, 2, 1).await;
    edits.add_extra(&ids[0], "pol-extra").await;

    let report = check(&owner, &replica, Duration::ZERO).await;
    let mut found: Vec<(String, Drift)> = report
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.drift))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            (lost.clone(), Drift::MissingInReplica { source_version: 2 }),
            (
                behind.clone(),
                Drift::ReplicaBehind {
                    source_version: 3,
                    replica_version: 2
                }
            ),
            (
                buried.clone(),
                Drift::ReplicaBehind {
                    source_version: 2,
                    replica_version: 1
                }
            ),
            (
                "pol-extra".to_owned(),
                Drift::ExtraInReplica { replica_version: 1 }
            ),
        ],
        "{report:?}"
    );

    let run = EventId::generate();
    let keys = found.into_iter().map(|(key, _)| key).collect();
    let repair = owner.repair(keys, run).await.unwrap();
    let republished: Vec<_> = repair
        .republished
        .iter()
        .map(|r| (r.key.clone(), r.version))
        .collect();
    assert_eq!(
        republished,
        [(lost.clone(), 2), (behind.clone(), 3), (buried.clone(), 2)]
    );
    assert_eq!(
        repair.skipped,
        [Skipped {
            key: "pol-extra".into(),
            reason: SkipReason::NotFound
        }]
    );

    // The republished events reach the replica through its handler, like any other.
    let added = feed_new(&outbox, &replica, &mut fed).await;
    let mut added_ids: Vec<EventId> = added.iter().map(Envelope::id).collect();
    let mut expected: Vec<EventId> = repair.republished.iter().map(|r| r.event_id).collect();
    added_ids.sort();
    expected.sort();
    assert_eq!(added_ids, expected);
    assert!(added.iter().all(|e| e.causation_id() == Some(run)));
    for (policy_id, version) in [(&lost, 2), (&behind, 3), (&buried, 2)] {
        let copy = replica.replicated_policy(policy_id).await.unwrap().unwrap();
        assert_eq!(copy.policy.version, version, "{policy_id}");
    }

    // Only the item the owner cannot vouch for is left: the replica's operators' to remove.
    let report = check(&owner, &replica, Duration::ZERO).await;
    let left: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.drift))
        .collect();
    assert_eq!(
        left,
        [("pol-extra", Drift::ExtraInReplica { replica_version: 1 })]
    );

    // A redelivered republish changes nothing.
    assert_eq!(
        dovetail_claim::replica::apply(&replica, added[0].clone())
            .await
            .unwrap(),
        ReplicaOutcome::Duplicate
    );
}

#[tokio::test]
async fn a_check_while_both_sides_are_written_reports_no_false_drift() {
    let (owner, outbox) = open_policies().await;
    let (replica, _) = open_claims().await;
    write_policies(&owner, "base", 6).await;

    // Both sides are written until the checks are done: the owner by a writer, the
    // replica by a feeder behind it, as a consumer is.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (owner, writing) = (owner.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let mut round = 0;
            // At most 60, so that the checks stay short.
            while writing.load(Ordering::SeqCst) && round < 60 {
                write_policies(&owner, &format!("live{round:03}"), 1).await;
                round += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            round
        })
    };
    let feeder = {
        let (outbox, replica, writing) = (outbox.clone(), replica.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let mut fed = HashSet::new();
            while writing.load(Ordering::SeqCst) {
                feed_new(&outbox, &replica, &mut fed).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            fed
        })
    };
    let mut rechecked = 0;
    for _ in 0..3 {
        let report = check(&owner, &replica, Duration::from_secs(30)).await;
        assert!(
            report.differences.is_empty(),
            "a write in flight reported as drift: {report:?}"
        );
        rechecked += report.recheck.len();
    }
    writing.store(false, Ordering::SeqCst);
    let rounds = writer.await.unwrap();
    assert!(
        rounds >= 3,
        "only {rounds} policies were written during the checks"
    );

    // Once the replica has caught up, the check finds the two sides equal.
    let mut fed = feeder.await.unwrap();
    feed_new(&outbox, &replica, &mut fed).await;
    let report = check(&owner, &replica, Duration::ZERO).await;
    assert!(report.is_consistent(), "{report:?}");
    println!("{rounds} policies written during 3 checks, {rechecked} keys left for a recheck");
}

/// A replica table made before the digests: a check against the owner reports its
/// policies missing, until the claim store's next open backfills them, once.
#[tokio::test]
async fn a_replica_made_before_the_digests_is_backfilled_on_open() {
    let (owner, outbox) = open_policies().await;
    let (replica, replica_table) = open_claims().await;
    let ids = write_policies(&owner, "old", 9).await;
    let mut fed = HashSet::new();
    feed_new(&outbox, &replica, &mut fed).await;
    let edits = HandEdits::new(&replica_table).await;
    for id in &ids[..5] {
        let version = replica
            .replicated_policy(id)
            .await
            .unwrap()
            .unwrap()
            .policy
            .version;
        edits.before_the_digests(id, version).await;
    }
    let report = check(&owner, &replica, Duration::ZERO).await;
    assert_eq!(report.differences.len(), 5, "{report:?}");
    assert!(
        report
            .differences
            .iter()
            .all(|d| matches!(d.drift, Drift::MissingInReplica { .. })),
        "{report:?}"
    );

    for _ in 0..2 {
        let replica = open_claims_on(&replica_table).await;
        let report = check(&owner, &replica, Duration::ZERO).await;
        assert!(report.is_consistent(), "{report:?}");
    }
}
