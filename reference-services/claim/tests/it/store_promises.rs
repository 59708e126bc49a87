//! The claim store's promises, one suite run on each backend: a claim, its event and the
//! request's record commit together; stale versions and reused keys are refused; claims
//! list by policy and by customer in pages; the replica keeps the newest version of each
//! policy, and each policy event counts once. SQLite runs here, DynamoDB in
//! `needs_servers::dynamodb_store`.

use dovetail_claim::domain::{Claim, ClaimChange, ClaimRequest};
use dovetail_claim::store::{
    ClaimFilter, ClaimStore, ClaimWrite, ReplicaOutcome, RequestRecord, StoreError, WriteOutcome,
};
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{EventId, Source};
use dovetail_events::idempotency::Fingerprint;
use dovetail_outbox::{AnyOutboxStore, ExpectedVersion, OutboxStore};
use dovetail_service_kit::RecordedResponse;
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
use dovetail_service_kit::events::Transport;
use time::macros::date;

use crate::support::{claim_body, policy};

/// Opens the store `storage` names through the service's own opening, with the relay's
/// store on the same database.
pub(crate) async fn open_with(
    storage: &StorageConfig,
    transport: &Transport,
) -> (ClaimStore, AnyOutboxStore) {
    let source = Source::parse("claim-service").unwrap();
    let opened = ClaimStore::open(storage, transport, source).await.unwrap();
    (opened.store, opened.relay_store)
}

/// A fresh SQLite store in a temporary directory.
async fn open_sqlite() -> (ClaimStore, AnyOutboxStore) {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-claim-store-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut storage = StorageConfig::default();
    storage.backend = StorageBackend::Sqlite;
    storage.sqlite_path = Some(dir.join("claim.db"));
    let transport = Transport::Embedded(EmbeddedBus::open_in_memory().unwrap());
    open_with(&storage, &transport).await
}

fn file(policy: &PolicySnapshot, amount: &str) -> (Claim, ClaimChange) {
    let request: ClaimRequest =
        serde_json::from_value(claim_body(&policy.policy_id, amount)).unwrap();
    Claim::file(
        format!("clm-{}", uuid::Uuid::now_v7()),
        request,
        Some(policy),
        date!(2026 - 06 - 01),
    )
    .unwrap()
}

fn new_claim(policy: &PolicySnapshot) -> ClaimWrite {
    let (claim, change) = file(policy, "500.00");
    ClaimWrite {
        claim,
        change,
        expected: ExpectedVersion::New,
        request: None,
    }
}

fn keyed(policy: &PolicySnapshot, amount: &str, key: &str) -> ClaimWrite {
    let (claim, change) = file(policy, amount);
    let response = RecordedResponse::created(
        format!("/claims/{}", claim.id()),
        1,
        serde_json::json!({ "claim_id": claim.id() }),
    );
    let body = claim_body(&policy.policy_id, amount);
    ClaimWrite {
        claim,
        change,
        expected: ExpectedVersion::New,
        request: Some(RequestRecord::new(
            "POST /claims",
            "user-1",
            key,
            &body,
            response,
        )),
    }
}

async fn pending(outbox: &AnyOutboxStore) -> Vec<(String, u64, String)> {
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

fn ids(claims: &[Claim]) -> Vec<String> {
    claims.iter().map(|claim| claim.id().to_owned()).collect()
}

pub(crate) async fn claims_commit_with_their_events_and_a_stale_version_commits_nothing(
    (store, outbox): (ClaimStore, AnyOutboxStore),
) {
    store.ping().await.unwrap();
    let active = policy("pol-1", PolicyStatus::Active, 2);
    let write = new_claim(&active);
    let id = write.claim.id().to_owned();
    assert_eq!(
        store.write(write.clone()).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(store.get(&id).await.unwrap(), Some(write.claim.clone()));
    assert_eq!(store.get("clm-missing").await.unwrap(), None);

    let (reviewing, review) = write.claim.start_review().unwrap();
    let review = ClaimWrite {
        claim: reviewing.clone(),
        change: review,
        expected: ExpectedVersion::Exactly(1),
        request: None,
    };
    store.write(review.clone()).await.unwrap();
    assert_eq!(store.get(&id).await.unwrap(), Some(reviewing));

    let error = store.write(review).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::VersionConflict { id: conflicted, current: Some(2) } if *conflicted == id),
        "{error:?}"
    );
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
    assert_eq!(
        pending(&outbox).await,
        [
            (id.clone(), 1, "claim.filed".to_owned()),
            (id, 2, "claim.review_started".to_owned())
        ]
    );
}

pub(crate) async fn a_retried_filing_gets_its_first_answer_and_a_reused_key_is_refused(
    (store, outbox): (ClaimStore, AnyOutboxStore),
) {
    let active = policy("pol-1", PolicyStatus::Active, 2);
    let first = keyed(&active, "500.00", "key-1");
    let answer = first.request.clone().unwrap().response;
    assert_eq!(store.write(first).await.unwrap(), WriteOutcome::Written);
    let retry = keyed(&active, "500.00", "key-1");
    assert_eq!(
        store.write(retry.clone()).await.unwrap(),
        WriteOutcome::Replayed(answer)
    );
    assert_eq!(store.get(retry.claim.id()).await.unwrap(), None);
    let error = store
        .write(keyed(&active, "900.00", "key-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::KeyReused { key } if key == "key-1"),
        "{error:?}"
    );
    assert_eq!(pending(&outbox).await.len(), 1);
}

pub(crate) async fn claims_list_by_policy_and_by_customer_a_page_at_a_time(
    (store, _outbox): (ClaimStore, AnyOutboxStore),
) {
    let first = policy("pol-a", PolicyStatus::Active, 2);
    let mut second = policy("pol-b", PolicyStatus::Active, 2);
    second.customer_id = "cust-2".into();
    let mut on_first = Vec::new();
    for _ in 0..3 {
        let write = new_claim(&first);
        on_first.push(write.claim.id().to_owned());
        store.write(write).await.unwrap();
    }
    let on_second = new_claim(&second);
    let second_id = on_second.claim.id().to_owned();
    store.write(on_second).await.unwrap();

    let by_policy = ClaimFilter::Policy("pol-a".into());
    let page = store.list(&by_policy, None, 2).await.unwrap();
    assert_eq!(ids(&page), on_first[..2]);
    let rest = store.list(&by_policy, Some(page[1].id()), 2).await.unwrap();
    assert_eq!(ids(&rest), on_first[2..]);
    let customer = store
        .list(&ClaimFilter::Customer("cust-2".into()), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&customer), [second_id]);
    assert!(
        store
            .list(&ClaimFilter::Customer("nobody".into()), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn the_replica_keeps_the_newest_policy_and_counts_each_event_once(
    (store, _outbox): (ClaimStore, AnyOutboxStore),
) {
    let fingerprint = |snapshot: &PolicySnapshot| {
        Fingerprint::of(serde_json::to_string(snapshot).unwrap().as_bytes())
    };
    let draft = policy("pol-r", PolicyStatus::Draft, 1);
    let drafted = EventId::generate();
    let apply = |event: EventId, snapshot: &PolicySnapshot| {
        store.apply_policy(event, fingerprint(snapshot), snapshot.clone())
    };
    assert_eq!(store.replicated_policy("pol-r").await.unwrap(), None);
    assert_eq!(
        apply(drafted, &draft).await.unwrap(),
        ReplicaOutcome::Applied
    );
    assert_eq!(
        apply(drafted, &draft).await.unwrap(),
        ReplicaOutcome::Duplicate
    );
    let error = store
        .apply_policy(drafted, Fingerprint::of(b"another payload"), draft.clone())
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::KeyReused { .. }), "{error:?}");

    // The cancellation (version 3) overtakes the issue (version 2).
    let cancelled = policy("pol-r", PolicyStatus::Cancelled, 3);
    let issued = policy("pol-r", PolicyStatus::Active, 2);
    let (cancelled_event, issued_event) = (EventId::generate(), EventId::generate());
    assert_eq!(
        apply(cancelled_event, &cancelled).await.unwrap(),
        ReplicaOutcome::Applied
    );
    assert_eq!(
        apply(issued_event, &issued).await.unwrap(),
        ReplicaOutcome::Stale
    );
    assert_eq!(
        apply(issued_event, &issued).await.unwrap(),
        ReplicaOutcome::Duplicate,
        "the late event's marker committed with the check"
    );
    let replicated = store.replicated_policy("pol-r").await.unwrap().unwrap();
    assert_eq!(replicated.policy, cancelled);
    assert_eq!(replicated.event_id, cancelled_event.to_string());
    assert!(replicated.replicated_at_ms > 0);
}

/// The suite, as tests of the store `$open` opens (a `(ClaimStore, AnyOutboxStore)`,
/// fresh for each test).
macro_rules! store_promises {
    ($module:ident, $open:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn claims_commit_with_their_events_and_a_stale_version_commits_nothing() {
                $crate::store_promises::claims_commit_with_their_events_and_a_stale_version_commits_nothing($open).await;
            }

            #[tokio::test]
            async fn a_retried_filing_gets_its_first_answer_and_a_reused_key_is_refused() {
                $crate::store_promises::a_retried_filing_gets_its_first_answer_and_a_reused_key_is_refused($open).await;
            }

            #[tokio::test]
            async fn claims_list_by_policy_and_by_customer_a_page_at_a_time() {
                $crate::store_promises::claims_list_by_policy_and_by_customer_a_page_at_a_time($open).await;
            }

            #[tokio::test]
            async fn the_replica_keeps_the_newest_policy_and_counts_each_event_once() {
                $crate::store_promises::the_replica_keeps_the_newest_policy_and_counts_each_event_once($open).await;
            }
        }
    };
}

#[cfg_attr(not(feature = "aws"), allow(unused_imports))]
pub(crate) use store_promises;

store_promises!(sqlite, open_sqlite().await);
