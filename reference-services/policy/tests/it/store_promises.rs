//! The policy store's promises, one suite run on each backend: a policy, its event and
//! the request's record commit together; stale versions and reused keys are refused; a
//! retry is answered from its record; customers' policies list in pages. SQLite runs
//! here, DynamoDB in `needs_servers::dynamodb_store`.

use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::Source;
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_policy::domain::{Policy, PolicyChange, PolicyTerms};
use dovetail_policy::store::{PolicyStore, PolicyWrite, RequestRecord, StoreError, WriteOutcome};
use dovetail_service_kit::RecordedResponse;
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;

use crate::support::terms;

/// Opens the store `storage` names through the service's own opening, with the relay's
/// store on the same database.
pub(crate) async fn open_with(
    storage: &StorageConfig,
    transport: &Transport,
) -> (PolicyStore, AnyOutboxStore) {
    let source = Source::parse("policy-service").unwrap();
    let opened = PolicyStore::open(storage, transport, source).await.unwrap();
    (opened.store, opened.relay_store)
}

/// A fresh SQLite store in a temporary directory.
async fn open_sqlite() -> (PolicyStore, AnyOutboxStore) {
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(crate::support::temp_dir().join("policy.db"));
    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    open_with(&storage, &transport).await
}

pub(crate) fn draft(customer: &str) -> (Policy, PolicyChange) {
    let terms: PolicyTerms = serde_json::from_value(terms(customer)).unwrap();
    Policy::draft(format!("pol-{}", uuid::Uuid::now_v7()), terms).unwrap()
}

pub(crate) fn new_policy(customer: &str) -> PolicyWrite {
    let (policy, change) = draft(customer);
    PolicyWrite {
        policy,
        change,
        expected: ExpectedVersion::New,
        request: None,
    }
}

/// A creation with an `Idempotency-Key`, fingerprinted by its customer.
fn keyed(customer: &str, key: &str) -> PolicyWrite {
    let mut write = new_policy(customer);
    let response = RecordedResponse::created(
        format!("/policies/{}", write.policy.id()),
        1,
        serde_json::json!({ "policy_id": write.policy.id() }),
    );
    write.request = Some(RequestRecord::new(
        "POST /policies",
        "user-1",
        key,
        &terms(customer),
        response,
    ));
    write
}

/// The events pending in the outbox, as `(aggregate id, sequence, type)`.
pub(crate) async fn pending(outbox: &AnyOutboxStore) -> Vec<(String, u64, String)> {
    let mut events: Vec<_> = outbox
        .fetch_ready(100)
        .await
        .unwrap()
        .into_iter()
        .map(|record| {
            let envelope = record.envelope;
            (
                envelope.aggregate_id().as_str().to_owned(),
                envelope.sequence().get(),
                envelope.event_type().as_str().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

pub(crate) async fn a_policy_and_its_event_commit_together_and_read_back(
    (store, outbox): (PolicyStore, AnyOutboxStore),
) {
    store.ping().await.unwrap();
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    let (issued, issue) = write.policy.issue().unwrap();
    assert_eq!(
        store.write(write.clone()).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(store.get(&id).await.unwrap(), Some(write.policy.clone()));
    assert_eq!(store.get("pol-missing").await.unwrap(), None);

    let outcome = store
        .write(PolicyWrite {
            policy: issued.clone(),
            change: issue,
            expected: ExpectedVersion::Exactly(1),
            request: None,
        })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Written);
    assert_eq!(store.get(&id).await.unwrap(), Some(issued));
    assert_eq!(
        pending(&outbox).await,
        [
            (id.clone(), 1, "policy.drafted".to_owned()),
            (id, 2, "policy.issued".to_owned())
        ]
    );
}

pub(crate) async fn a_stale_version_is_a_conflict_and_commits_nothing(
    (store, outbox): (PolicyStore, AnyOutboxStore),
) {
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    store.write(write.clone()).await.unwrap();
    let (issued, issue) = write.policy.issue().unwrap();
    let issue = PolicyWrite {
        policy: issued,
        change: issue,
        expected: ExpectedVersion::Exactly(1),
        request: None,
    };
    store.write(issue.clone()).await.unwrap();

    // The same change again, from a reader that still saw version 1.
    let error = store.write(issue).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionConflict { id: conflicted, current: Some(2) } if *conflicted == id),
        "{error:?}"
    );
    // Creating a policy whose id exists.
    let error = store.write(write).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::VersionConflict {
                current: Some(2),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(store.get(&id).await.unwrap().unwrap().version(), 2);
    assert_eq!(
        pending(&outbox).await.len(),
        2,
        "the refused writes published nothing"
    );
}

pub(crate) async fn a_retried_request_gets_its_first_answer_and_a_reused_key_is_refused(
    (store, outbox): (PolicyStore, AnyOutboxStore),
) {
    let first = keyed("cust-1", "key-1");
    let answer = first.request.clone().unwrap().response;
    assert_eq!(
        store.write(first.clone()).await.unwrap(),
        WriteOutcome::Written
    );

    // The client retries: the handler drafts another policy id, the store answers the
    // first request's response and writes nothing.
    let retry = keyed("cust-1", "key-1");
    assert_eq!(
        store.write(retry.clone()).await.unwrap(),
        WriteOutcome::Replayed(answer)
    );
    assert_eq!(store.get(retry.policy.id()).await.unwrap(), None);

    let reused = keyed("cust-2", "key-1");
    let error = store.write(reused).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::KeyReused { key } if key == "key-1"),
        "{error:?}"
    );
    assert_eq!(pending(&outbox).await.len(), 1);
}

pub(crate) async fn two_requests_racing_with_one_key_write_once(
    (store, outbox): (PolicyStore, AnyOutboxStore),
) {
    let (a, b) = (keyed("cust-1", "race"), keyed("cust-1", "race"));
    let (first, second) = tokio::join!(store.write(a.clone()), store.write(b.clone()));
    let outcomes = [first.unwrap(), second.unwrap()];
    let written = outcomes
        .iter()
        .filter(|outcome| **outcome == WriteOutcome::Written)
        .count();
    assert_eq!(written, 1, "{outcomes:?}");
    let winner = if outcomes[0] == WriteOutcome::Written {
        &a
    } else {
        &b
    };
    let replayed = outcomes
        .iter()
        .find(|outcome| **outcome != WriteOutcome::Written)
        .unwrap();
    assert_eq!(
        replayed,
        &WriteOutcome::Replayed(winner.request.clone().unwrap().response)
    );
    assert_eq!(pending(&outbox).await.len(), 1);
}

pub(crate) async fn a_customers_policies_list_in_id_order_a_page_at_a_time(
    (store, _outbox): (PolicyStore, AnyOutboxStore),
) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        let write = new_policy("cust-pages");
        ids.push(write.policy.id().to_owned());
        store.write(write).await.unwrap();
    }
    store.write(new_policy("cust-other")).await.unwrap();

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store
            .list_by_customer("cust-pages", after.as_deref(), 2)
            .await
            .unwrap();
        pages += 1;
        listed.extend(page.iter().map(|policy| policy.id().to_owned()));
        match page.last() {
            Some(last) if page.len() == 2 => after = Some(last.id().to_owned()),
            _ => break,
        }
    }
    assert_eq!(listed, ids, "every policy once, in id order");
    assert_eq!(pages, 3);
    assert!(
        store
            .list_by_customer("cust-nobody", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The suite, as tests of the store `$open` opens (a `(PolicyStore, AnyOutboxStore)`,
/// fresh for each test).
macro_rules! store_promises {
    ($module:ident, $open:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn a_policy_and_its_event_commit_together_and_read_back() {
                $crate::store_promises::a_policy_and_its_event_commit_together_and_read_back($open).await;
            }

            #[tokio::test]
            async fn a_stale_version_is_a_conflict_and_commits_nothing() {
                $crate::store_promises::a_stale_version_is_a_conflict_and_commits_nothing($open).await;
            }

            #[tokio::test]
            async fn a_retried_request_gets_its_first_answer_and_a_reused_key_is_refused() {
                $crate::store_promises::a_retried_request_gets_its_first_answer_and_a_reused_key_is_refused($open).await;
            }

            #[tokio::test]
            async fn two_requests_racing_with_one_key_write_once() {
                $crate::store_promises::two_requests_racing_with_one_key_write_once($open).await;
            }

            #[tokio::test]
            async fn a_customers_policies_list_in_id_order_a_page_at_a_time() {
                $crate::store_promises::a_customers_policies_list_in_id_order_a_page_at_a_time($open).await;
            }
        }
    };
}

#[cfg_attr(not(feature = "aws"), allow(unused_imports))]
pub(crate) use store_promises;

store_promises!(sqlite, open_sqlite().await);
