//! `DynamoDbPolicyStore` keeps the SQLite store's promises: a policy, its event and the
//! request's record commit together; stale versions and reused keys are refused; a retry
//! is answered from its record; customers' policies list in pages.

use aws_sdk_dynamodb::types::AttributeValue;
use dovetail_events::envelope::Source;
use dovetail_outbox::dynamodb::DynamoDbOutboxStore;
use dovetail_outbox::{ExpectedVersion, OutboxStore};
use dovetail_policy::domain::{Policy, PolicyChange, PolicyTerms};
use dovetail_policy::store::dynamodb::DynamoDbPolicyStore;
use dovetail_policy::store::{PolicyStore, PolicyWrite, RequestRecord, StoreError, WriteOutcome};
use dovetail_service_kit::RecordedResponse;

use crate::support::terms;

async fn open() -> (PolicyStore, DynamoDbOutboxStore) {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-store");
    let (store, outbox) =
        DynamoDbPolicyStore::open(&clients, &table, Source::parse("policy-service").unwrap())
            .await
            .unwrap();
    (PolicyStore::DynamoDb(store), outbox)
}

fn draft(customer: &str) -> (Policy, PolicyChange) {
    let terms: PolicyTerms = serde_json::from_value(terms(customer)).unwrap();
    Policy::draft(format!("pol-{}", uuid::Uuid::now_v7()), terms).unwrap()
}

fn new_policy(customer: &str) -> PolicyWrite {
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
        key,
        &terms(customer),
        response,
    ));
    write
}

/// The events pending in the outbox, as `(aggregate id, sequence, type)`.
async fn pending(outbox: &DynamoDbOutboxStore) -> Vec<(String, u64, String)> {
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

#[tokio::test]
async fn a_policy_and_its_event_commit_together_and_read_back() {
    let (store, outbox) = open().await;
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

#[tokio::test]
async fn a_stale_version_is_a_conflict_and_commits_nothing() {
    let (store, outbox) = open().await;
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

#[tokio::test]
async fn a_retried_request_gets_its_first_answer_and_a_reused_key_is_refused() {
    let (store, outbox) = open().await;
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

#[tokio::test]
async fn two_requests_racing_with_one_key_write_once() {
    let (store, outbox) = open().await;
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

#[tokio::test]
async fn a_customers_policies_list_in_id_order_a_page_at_a_time() {
    let (store, _outbox) = open().await;
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

#[tokio::test]
async fn opening_an_existing_table_again_changes_nothing() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-reopen");
    let source = Source::parse("policy-service").unwrap();
    let (first, _) = DynamoDbPolicyStore::open(&clients, &table, source.clone())
        .await
        .unwrap();
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    PolicyStore::DynamoDb(first).write(write).await.unwrap();
    let (again, _) = DynamoDbPolicyStore::open(&clients, &table, source)
        .await
        .unwrap();
    let again = PolicyStore::DynamoDb(again);
    assert!(again.get(&id).await.unwrap().is_some());
    assert_eq!(
        again
            .list_by_customer("cust-1", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_table_made_before_the_index_gets_it_on_open() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-no-index");
    let source = Source::parse("policy-service").unwrap();
    // The outbox alone makes the table without the service's index.
    dovetail_outbox::dynamodb::DynamoDbOutbox::new(
        clients.dynamodb().clone(),
        dovetail_outbox::dynamodb::DynamoDbOutboxConfig::new(&table, source.clone()),
    )
    .create_table_if_missing()
    .await
    .unwrap();
    let (store, _) = DynamoDbPolicyStore::open(&clients, &table, source)
        .await
        .unwrap();
    let described = clients
        .dynamodb()
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap();
    let indexes: Vec<_> = described
        .table()
        .unwrap()
        .global_secondary_indexes()
        .iter()
        .filter_map(|index| index.index_name())
        .collect();
    assert_eq!(indexes, [dovetail_policy::store::dynamodb::BY_CUSTOMER]);
    let store = PolicyStore::DynamoDb(store);
    store.write(new_policy("cust-1")).await.unwrap();
    assert_eq!(
        store
            .list_by_customer("cust-1", None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_policy_item_changed_by_hand_is_reported_as_a_conflict_with_its_version() {
    let clients = super::clients().await;
    let table = dovetail_testkit::unique_name("policy-by-hand");
    let (store, outbox) =
        DynamoDbPolicyStore::open(&clients, &table, Source::parse("policy-service").unwrap())
            .await
            .unwrap();
    let store = PolicyStore::DynamoDb(store);
    let write = new_policy("cust-1");
    let id = write.policy.id().to_owned();
    store.write(write.clone()).await.unwrap();
    // Someone sets the policy item's version by hand: the outbox's version item (still
    // at 1) would let the next write through, the policy item's own condition does not.
    clients
        .dynamodb()
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S(format!("policy#{id}")))
        .key("sk", AttributeValue::S("policy".to_owned()))
        .update_expression("SET #version = :five")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":five", AttributeValue::N("5".to_owned()))
        .send()
        .await
        .unwrap();
    let (issued, issue) = write.policy.issue().unwrap();
    let error = store
        .write(PolicyWrite {
            policy: issued,
            change: issue,
            expected: ExpectedVersion::Exactly(1),
            request: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionConflict { id: conflicted, current: Some(5) } if *conflicted == id),
        "{error:?}"
    );
    assert_eq!(
        pending(&outbox).await.len(),
        1,
        "the refused write published nothing"
    );
}
