//! The claim service's replica of policies checked against the policy service's own
//! policies, both on real SQLite files: fed every policy event (duplicates and late
//! ones included) the replica agrees with its owner; events it lost show up as the drift
//! they cause, each classified; a file made before the digests gets them filled; and a
//! row changed behind the store's back hides until the digests are rebuilt. Drift found
//! is repaired through the owner: it republishes the drifted policies' snapshots through
//! its outbox, and the replica, fed those events, agrees again.
//!
//! The owner side is the policy service's real store (`dovetail-policy` is a
//! dev-dependency: it does not depend on this crate, so there is no cycle), and the
//! replica is fed the events its outbox holds through the service's own handler,
//! `replica::apply`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dovetail_claim::store::{ClaimStore, ReplicaOutcome};
use dovetail_consistency::{Check, CheckConfig, CheckReport, Drift, View};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{Envelope, EventId, Source};
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_policy::domain::{Policy, PolicyChange, PolicyTerms, TermsChange};
use dovetail_policy::store::{PolicyStore, PolicyWrite, REPAIR_BATCH, SkipReason, Skipped};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

fn storage(path: &Path) -> (StorageConfig, Transport) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(path.to_owned());
    (
        storage,
        Transport::Embedded(EmbeddedBus::open_in_memory().unwrap()),
    )
}

fn temp_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!(
            "dovetail-claim-view-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .join(name)
}

async fn open_policies(path: &Path) -> (PolicyStore, AnyOutboxStore) {
    let (storage, transport) = storage(path);
    let source = Source::parse("policy-service").unwrap();
    let opened = PolicyStore::open(&storage, &transport, source)
        .await
        .unwrap();
    (opened.store, opened.relay_store)
}

async fn open_claims(path: &Path) -> ClaimStore {
    let (storage, transport) = storage(path);
    let source = Source::parse("claim-service").unwrap();
    ClaimStore::open(&storage, &transport, source)
        .await
        .unwrap()
        .store
}

async fn commit(
    store: &PolicyStore,
    (policy, change): (Policy, PolicyChange),
    expected: ExpectedVersion,
) -> Policy {
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
}

/// Writes `count` policies on the owner, `prefix`ed: all drafted, two in three issued,
/// every fourth of those cancelled; returns their ids.
pub(crate) async fn write_policies(store: &PolicyStore, prefix: &str, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
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
        let drafted = Policy::draft(format!("{prefix}-{i:03}"), terms).unwrap();
        let mut policy = commit(store, drafted, ExpectedVersion::New).await;
        if i % 3 != 0 {
            policy = commit(store, policy.issue().unwrap(), ExpectedVersion::Exactly(1)).await;
            if i % 4 == 0 {
                commit(
                    store,
                    policy.cancel(None).unwrap(),
                    ExpectedVersion::Exactly(2),
                )
                .await;
            }
        }
        ids.push(policy.id().to_owned());
    }
    ids
}

/// The events the owner's outbox holds, per policy in version order.
async fn events_by_policy(outbox: &AnyOutboxStore) -> BTreeMap<String, Vec<Envelope>> {
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

async fn feed(replica: &ClaimStore, envelope: &Envelope) -> ReplicaOutcome {
    dovetail_claim::replica::apply(replica, envelope.clone())
        .await
        .unwrap()
}

async fn check(owner: &PolicyStore, replica: &ClaimStore) -> CheckReport {
    // No lag allowed: every write here is done before the check, none is in flight.
    let config = CheckConfig {
        expected_lag: Duration::ZERO,
        ..CheckConfig::default()
    };
    let (owner, replica) = (
        owner.consistency_view().unwrap(),
        replica.policy_replica_view().unwrap(),
    );
    Check::new(owner, replica, config).run().await.unwrap()
}

#[tokio::test]
async fn a_replica_fed_every_policy_event_agrees_with_its_owner() {
    let (owner, outbox) = open_policies(&temp_file("policy.db")).await;
    let replica_path = temp_file("claim.db");
    let replica = open_claims(&replica_path).await;
    write_policies(&owner, "pol", 60).await;
    let events = events_by_policy(&outbox).await;

    // Each policy's events newest first, then all of them again: the late and the
    // redelivered ones change nothing.
    for list in events.values() {
        for envelope in list.iter().rev() {
            feed(&replica, envelope).await;
        }
    }
    for envelope in events.values().flatten() {
        assert_eq!(feed(&replica, envelope).await, ReplicaOutcome::Duplicate);
    }

    let report = check(&owner, &replica).await;
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(
        report.source_cost.digests_read, 1,
        "one digest a side when they agree"
    );
    let (owner_view, replica_view) = (
        owner.consistency_view().unwrap(),
        replica.policy_replica_view().unwrap(),
    );
    let full = dovetail_consistency::BucketRange::FULL;
    assert_eq!(owner_view.digest(full).await.unwrap().count, 60);
    assert_eq!(
        owner_view.digest(full).await.unwrap(),
        replica_view.digest(full).await.unwrap()
    );

    // A replica file made before the digests: they are filled from its rows on open.
    drop((replica_view, replica));
    let raw = rusqlite::Connection::open(&replica_path).unwrap();
    raw.execute_batch(
        "DROP TABLE policy_replica_buckets;
         DROP INDEX policy_replica_by_bucket;
         ALTER TABLE policy_replica DROP COLUMN bucket;",
    )
    .unwrap();
    drop(raw);
    let replica = open_claims(&replica_path).await;
    let report = check(&owner, &replica).await;
    assert!(report.is_consistent(), "{report:?}");
}

/// Real drift is not a row edited by hand: it is an event the replica never applied
/// (lost to a dead-letter queue nobody replayed, a subscription created after the
/// event, a handler bug that acknowledged without writing), or an event it should
/// never have got. So the drift here is made by what the replica is fed, through the
/// service's own handler, and every digest stays true to the rows, as it does in
/// production, where each write updates its bucket in the same transaction.
///
/// Raw SQL on the replica's rows would not do: a row deleted without its digest leaves
/// the digests equal to the owner's, and the check, which trusts equal digests, looks no
/// further (`a_row_deleted_behind_the_stores_back_...` pins that blind spot and its
/// repair); fixing the digest by hand too would only mimic the service's own write.
/// An older event applied last cannot make the replica behind either: the replica
/// keeps the highest version (`a_replica_fed_every_policy_event_...` feeds them late).
#[tokio::test]
async fn events_the_replica_lost_or_should_not_have_got_are_found_and_classified() {
    let (owner, outbox) = open_policies(&temp_file("policy.db")).await;
    let replica = open_claims(&temp_file("claim.db")).await;
    let ids = write_policies(&owner, "pol", 40).await;
    let events = events_by_policy(&outbox).await;
    // pol-001: drafted and issued (i % 3 != 0), all its events lost.
    // pol-004: drafted, issued, cancelled; the cancel lost.
    let (missing, behind) = (ids[1].clone(), ids[4].clone());
    assert_eq!(events[&behind].len(), 3);
    for (id, list) in &events {
        let lost = if *id == missing {
            list.len()
        } else if *id == behind {
            1
        } else {
            0
        };
        for envelope in &list[..list.len() - lost] {
            assert_eq!(feed(&replica, envelope).await, ReplicaOutcome::Applied);
        }
    }
    // A policy of another policy service (say, staging's), whose event reached this
    // replica through a subscription to the wrong topic.
    let (elsewhere, elsewhere_outbox) = open_policies(&temp_file("staging-policy.db")).await;
    let extra = write_policies(&elsewhere, "pol-staging", 1).await.remove(0);
    for envelope in events_by_policy(&elsewhere_outbox).await.values().flatten() {
        feed(&replica, envelope).await;
    }

    let report = check(&owner, &replica).await;
    let mut found: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.drift))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (missing, Drift::MissingInReplica { source_version: 2 }),
        (
            behind,
            Drift::ReplicaBehind {
                source_version: 3,
                replica_version: 2,
            },
        ),
        (extra, Drift::ExtraInReplica { replica_version: 1 }),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(found, expected, "{report:?}");
    assert!(report.recheck.is_empty() && !report.truncated);
    // Three buckets of a few entries each, not the 41 policies.
    assert!(
        report.replica_cost.entries_read < 10,
        "{:?}",
        report.replica_cost
    );

    // With the default lag (30 s), the owner's change times say its two policies were
    // written a moment ago: possibly still on their way, so left for the next round.
    // The extra one has no owner, hence no change time: drift now.
    let (owner_view, replica_view) = (
        owner.consistency_view().unwrap(),
        replica.policy_replica_view().unwrap(),
    );
    let report = Check::new(owner_view, replica_view, CheckConfig::default())
        .run()
        .await
        .unwrap();
    let mut recheck = report.recheck.clone();
    recheck.sort();
    let mut in_flight = vec![ids[1].clone(), ids[4].clone()];
    in_flight.sort();
    assert_eq!(recheck, in_flight, "{report:?}");
    assert_eq!(report.differences.len(), 1, "{report:?}");
    assert_eq!(report.differences[0].key, "pol-staging-000");
}

/// What the check cannot see: a row changed behind the store's back (raw SQL, a restore
/// of one table) leaves its bucket's digest as it was, and equal digests are where the
/// check stops looking. The repair is the migration's: drop the digest table, and the
/// next open rebuilds it from the rows, after which the check finds the row.
#[tokio::test]
async fn a_row_deleted_behind_the_stores_back_is_found_once_the_digests_are_rebuilt() {
    let (owner, outbox) = open_policies(&temp_file("policy.db")).await;
    let replica_path = temp_file("claim.db");
    let replica = open_claims(&replica_path).await;
    let ids = write_policies(&owner, "pol", 20).await;
    for envelope in events_by_policy(&outbox).await.values().flatten() {
        feed(&replica, envelope).await;
    }
    let raw = rusqlite::Connection::open(&replica_path).unwrap();
    raw.execute("DELETE FROM policy_replica WHERE policy_id = ?1", [&ids[7]])
        .unwrap();
    assert!(
        check(&owner, &replica).await.is_consistent(),
        "the blind spot"
    );

    raw.execute_batch("DROP TABLE policy_replica_buckets")
        .unwrap();
    drop((raw, replica));
    let replica = open_claims(&replica_path).await;
    let report = check(&owner, &replica).await;
    let found: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.drift))
        .collect();
    // pol-007: drafted and issued.
    assert_eq!(
        found,
        [(
            ids[7].clone(),
            Drift::MissingInReplica { source_version: 2 }
        )]
    );
}

/// The outbox's records whose event ids are not in `before`: what the last commits added.
async fn new_events(outbox: &AnyOutboxStore, before: &[Envelope]) -> Vec<Envelope> {
    let seen: Vec<EventId> = before.iter().map(Envelope::id).collect();
    let mut added: Vec<Envelope> = outbox
        .fetch_ready(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|record| record.envelope)
        .filter(|envelope| !seen.contains(&envelope.id()))
        .collect();
    added.sort_by(|a, b| a.aggregate_id().as_str().cmp(b.aggregate_id().as_str()));
    added
}

/// Repair as it runs in production: the check names the drifted policies, the owner
/// republishes their snapshots through its outbox (the run's id as causation), and the
/// replica's own handler applies the republished events; nothing writes the replica
/// directly. The check then finds nothing.
#[tokio::test]
async fn drift_is_repaired_by_the_owner_republishing_through_its_outbox() {
    let (owner, outbox) = open_policies(&temp_file("policy.db")).await;
    let replica = open_claims(&temp_file("claim.db")).await;
    let ids = write_policies(&owner, "pol", 30).await;
    let events = events_by_policy(&outbox).await;
    // pol-001: drafted and issued, all lost; pol-004: drafted, issued, cancelled, the
    // cancel lost.
    let (missing, behind) = (ids[1].clone(), ids[4].clone());
    for (id, list) in &events {
        let lost = match id {
            id if *id == missing => list.len(),
            id if *id == behind => 1,
            _ => 0,
        };
        for envelope in &list[..list.len() - lost] {
            feed(&replica, envelope).await;
        }
    }
    let report = check(&owner, &replica).await;
    let mut keys: Vec<String> = report.differences.iter().map(|d| d.key.clone()).collect();
    keys.sort();
    assert_eq!(keys, [missing.clone(), behind.clone()], "{report:?}");

    let before: Vec<Envelope> = events.values().flatten().cloned().collect();
    let run = EventId::generate();
    // An unknown key, and a key twice, beside the drifted ones: reported, not fatal.
    keys.extend(["pol-nowhere".to_owned(), missing.clone()]);
    let repair = owner.repair(keys, run).await.unwrap();
    let republished: Vec<_> = repair
        .republished
        .iter()
        .map(|r| (r.key.clone(), r.version))
        .collect();
    assert_eq!(republished, [(missing.clone(), 2), (behind.clone(), 3)]);
    assert_eq!(
        repair.skipped,
        [Skipped {
            key: "pol-nowhere".into(),
            reason: SkipReason::NotFound
        }]
    );
    assert!(repair.deferred.is_empty());

    // The republished envelopes: new event ids, the run as causation, each at the
    // policy's current sequence, carrying its whole snapshot.
    let added = new_events(&outbox, &before).await;
    assert_eq!(added.len(), 2, "{added:?}");
    for (envelope, done) in added.iter().zip(&repair.republished) {
        assert_eq!(envelope.aggregate_id().as_str(), done.key);
        assert_eq!(envelope.id(), done.event_id);
        assert_eq!(envelope.causation_id(), Some(run));
        assert_eq!(envelope.sequence().get(), done.version);
        assert_eq!(envelope.event_type().as_str(), "policy.updated");
        let original = &events[&done.key];
        assert!(original.iter().all(|first| first.id() != envelope.id()));
        let current = owner.get(&done.key).await.unwrap().unwrap();
        assert_eq!(
            envelope.payload()["policy"],
            serde_json::json!(current.snapshot())
        );
        assert_eq!(feed(&replica, envelope).await, ReplicaOutcome::Applied);
    }
    let report = check(&owner, &replica).await;
    assert!(report.is_consistent(), "{report:?}");

    // The version was not raised: the policy's next change is at the next sequence,
    // and the replica applies it.
    let seen: Vec<Envelope> = before.into_iter().chain(added).collect();
    let policy = owner.get(&missing).await.unwrap().unwrap();
    let change: TermsChange =
        serde_json::from_value(serde_json::json!({"premium": "130.00"})).unwrap();
    commit(
        &owner,
        policy.update(change).unwrap(),
        ExpectedVersion::Exactly(2),
    )
    .await;
    let next = new_events(&outbox, &seen).await;
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].sequence().get(), 3);
    assert_eq!(feed(&replica, &next[0]).await, ReplicaOutcome::Applied);
    assert!(check(&owner, &replica).await.is_consistent());
}

/// Repairing what had not drifted sends the replica a snapshot it already holds at that
/// version: it ignores it, and stays in agreement. Keys beyond the batch are handed back.
#[tokio::test]
async fn repairing_a_policy_that_had_not_drifted_is_harmless() {
    let (owner, outbox) = open_policies(&temp_file("policy.db")).await;
    let replica = open_claims(&temp_file("claim.db")).await;
    let ids = write_policies(&owner, "pol", 6).await;
    let before: Vec<Envelope> = events_by_policy(&outbox)
        .await
        .into_values()
        .flatten()
        .collect();
    for envelope in &before {
        feed(&replica, envelope).await;
    }
    assert!(check(&owner, &replica).await.is_consistent());

    let run = EventId::generate();
    let repair = owner.repair(ids.clone(), run).await.unwrap();
    assert_eq!(repair.republished.len(), ids.len(), "{repair:?}");
    assert!(repair.skipped.is_empty() && repair.deferred.is_empty());
    for envelope in new_events(&outbox, &before).await {
        assert_eq!(envelope.causation_id(), Some(run));
        assert_eq!(feed(&replica, &envelope).await, ReplicaOutcome::Stale);
    }
    assert!(check(&owner, &replica).await.is_consistent());

    // At most REPAIR_BATCH keys a call; the rest come back for the next one.
    let many: Vec<String> = (0..=REPAIR_BATCH)
        .map(|i| format!("pol-none-{i}"))
        .collect();
    let repair = owner.repair(many.clone(), run).await.unwrap();
    assert_eq!(repair.skipped.len(), REPAIR_BATCH);
    assert_eq!(repair.deferred, many[REPAIR_BATCH..]);
}
