//! The policy service's consistency view on DynamoDB: the contract suite (as on SQLite in
//! `consistency_view`); the digest and entry items kept in
//! each write's transaction follow every write (drafts, issues, cancels, a refused stale
//! write, a write at any version) and agree with a `MemoryView` of the same policies;
//! they are not kept for a write that was refused; a policy written before them counts
//! from its next write, and a table made before them is backfilled once on open.

use std::time::Duration;

use dovetail_consistency::{BucketRange, Check, CheckConfig, Entry, View};
use dovetail_outbox::ExpectedVersion;
use dovetail_policy::domain::Policy;
use dovetail_policy::store::{PolicyStore, PolicyWrite, StoreError};
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_consistency::dynamodb::DynamoDbDigests;

use crate::consistency_view::{assert_agrees_up_to, memory_of, write_policies};
use crate::store_promises::{new_policy, open_with};

/// The store on the table `table`, opened as the service opens it.
async fn open_on(table: &str) -> PolicyStore {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Dynamodb;
    storage.dynamodb_table = Some(table.to_owned());
    open_with(&storage, &Transport::Aws(super::clients().await))
        .await
        .0
}

/// The store on a fresh table, and the table's name.
async fn open_table() -> (PolicyStore, String) {
    let table = dovetail_testkit::unique_name("policy-view");
    (open_on(&table).await, table)
}

/// Takes the entries and digests of `policies` (each at its version) out of `table`, and
/// its backfill's marker: the table as a build that predates the digests left it.
async fn as_before_the_digests(table: &str, policies: &[Policy]) {
    let client = super::clients().await.dynamodb().clone();
    let digests = DynamoDbDigests::new(table, "policies");
    for policy in policies {
        client
            .transact_write_items()
            .set_transact_items(Some(
                digests
                    .forget(&Entry::live(policy.id(), policy.version()))
                    .unwrap()
                    .to_vec(),
            ))
            .send()
            .await
            .unwrap();
    }
    client
        .delete_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S("consistency#policies#backfill".into()),
        )
        .key("sk", AttributeValue::S("done".into()))
        .send()
        .await
        .unwrap();
}

async fn open() -> PolicyStore {
    open_table().await.0
}

mod policies_contract {
    dovetail_testkit::consistency_contract_tests!(|| async {
        let store = super::open().await;
        let view = store.consistency_view().expect("a view on DynamoDB");
        crate::consistency_view::Policies { store, view }
    });
}

#[tokio::test]
async fn the_policy_view_on_dynamodb_follows_every_write() {
    let store = open().await;
    let view = store.consistency_view().expect("DynamoDB has a view");
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 0);

    let mut policies = write_policies(&store, 40).await;
    // A stale write is refused and changes no digest.
    let (again, change) = Policy::from_snapshot(policies[1].snapshot().clone()) // issued at 2
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
    assert!(
        matches!(
            refused,
            Err(StoreError::VersionConflict {
                current: Some(2),
                ..
            })
        ),
        "{refused:?}"
    );
    // A write at any version takes the version it replaces out of its bucket.
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

    // Entries are one query per bucket: compared on the small ranges only (a check
    // reads no others), digests on every range.
    assert_agrees_up_to(&view, &memory_of(&policies), 100).await;
    for policy in &policies {
        let bucket = BucketRange::single(dovetail_consistency::bucket(policy.id())).unwrap();
        let entries = view.entries(bucket).await.unwrap();
        let entry = entries.iter().find(|e| e.key == policy.id()).unwrap();
        assert_eq!(entry.version, policy.version());
        assert!(
            entry.changed_at_ms.is_some() && !entry.deleted,
            "the owner says when each policy changed: {entry:?}"
        );
    }
}

/// A policy item without its entry (written by a build that predates the digests) is
/// missing from the view, and counts, once, from its next write.
#[tokio::test]
async fn a_policy_written_before_the_digests_counts_from_its_next_write() {
    let (store, table) = open_table().await;
    let write = new_policy("cust-1");
    store.write(write.clone()).await.unwrap();
    let id = write.policy.id().to_owned();
    as_before_the_digests(&table, std::slice::from_ref(&write.policy)).await;
    let view = store.consistency_view().unwrap();
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 0);

    let issued = write.policy.issue().unwrap();
    store
        .write(PolicyWrite {
            policy: issued.0.clone(),
            change: issued.1,
            expected: ExpectedVersion::Exactly(1),
            request: None,
        })
        .await
        .unwrap();
    let memory = memory_of(&[issued.0]);
    assert_eq!(
        view.digest(BucketRange::FULL).await.unwrap(),
        memory.digest_of(BucketRange::FULL)
    );
    let bucket = BucketRange::single(dovetail_consistency::bucket(&id)).unwrap();
    let entries = view.entries(bucket).await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.key.as_str(), e.version))
            .collect::<Vec<_>>(),
        [(id.as_str(), 2)]
    );
}

/// A table made before the digests gets its policies' entries on the store's next open,
/// once: opening it again adds nothing.
#[tokio::test]
async fn a_table_made_before_the_digests_is_backfilled_once_on_open() {
    let (store, table) = open_table().await;
    let policies = write_policies(&store, 12).await;
    as_before_the_digests(&table, &policies[..8]).await;
    let view = store.consistency_view().unwrap();
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 4);

    let memory = memory_of(&policies);
    for _ in 0..2 {
        let store = open_on(&table).await;
        let view = store.consistency_view().unwrap();
        assert_eq!(
            view.digest(BucketRange::FULL).await.unwrap(),
            memory.digest_of(BucketRange::FULL)
        );
        let config = CheckConfig {
            expected_lag: Duration::ZERO,
            ..CheckConfig::default()
        };
        let report = Check::new(&view, &memory, config).run().await.unwrap();
        assert!(report.is_consistent(), "{report:?}");
    }
    // Backfilled entries have no change time; written ones do.
    let mut times = 0;
    for policy in &policies {
        let bucket = BucketRange::single(dovetail_consistency::bucket(policy.id())).unwrap();
        let entries = store
            .consistency_view()
            .unwrap()
            .entries(bucket)
            .await
            .unwrap();
        let entry = entries.iter().find(|e| e.key == policy.id()).unwrap();
        times += usize::from(entry.changed_at_ms.is_some());
    }
    assert_eq!(times, 4);
}
