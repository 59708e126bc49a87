//! Republishing through the DynamoDB unit of work, against the AWS emulator (the
//! counterpart of `sqlite_republish`): the owner sends an aggregate's current snapshot
//! again, at its current sequence, with a new event id and the check run as the cause,
//! without raising its version; the record gets a key of its own, and both relays (the
//! polling one and the Streams one) publish it after the aggregate's earlier records and
//! before its later ones.

use std::time::Duration;

use dovetail_events::envelope::{Envelope, EventId, EventMetadata};
use dovetail_events::publish::MemoryPublisher;
use dovetail_outbox::dynamodb::DynamoDbOutbox;
use dovetail_outbox::{ExpectedVersion, OutboxError, OutboxStore};

use super::dynamodb_store::fresh_outbox;
use super::dynamodb_streams::{Running, all_published, config, wait_until};
use crate::relay::fixtures::{World, eventually, fast_config, key};
use crate::support::{changed, policy};

/// Metadata naming consistency check run `run` as the cause.
fn caused_by_check(run: EventId) -> EventMetadata {
    EventMetadata {
        causation_id: Some(run),
        ..EventMetadata::default()
    }
}

/// Commits `events` appends to policy `id` at `expected`; answers their envelopes.
async fn append(
    outbox: &DynamoDbOutbox,
    id: &str,
    expected: ExpectedVersion,
    events: usize,
) -> Vec<Envelope> {
    let mut uow = outbox.unit_of_work();
    for _ in 0..events {
        uow.append(
            policy(id),
            expected,
            &changed(id, "write"),
            EventMetadata::default(),
        )
        .unwrap();
    }
    uow.commit().await.unwrap().into_envelopes()
}

/// Republishes policy `id` at `version` in a unit of work of its own, with `run` as the
/// cause; answers the republished envelope.
async fn republish(
    outbox: &DynamoDbOutbox,
    id: &str,
    version: u64,
    run: EventId,
) -> Result<Envelope, OutboxError> {
    let mut uow = outbox.unit_of_work();
    uow.republish(
        policy(id),
        version,
        &changed(id, "snapshot"),
        caused_by_check(run),
    )
    .await?;
    let committed = uow.commit().await?;
    assert_eq!(committed.version(&policy(id)), Some(version));
    Ok(committed.into_envelopes().remove(0))
}

#[tokio::test]
async fn republish_stamps_the_given_sequence_a_new_id_and_the_checks_causation() {
    let outbox = fresh_outbox("republish-stamp").await;
    let earlier = append(&outbox, "p1", ExpectedVersion::New, 2).await;
    let run = EventId::generate();

    let again = republish(&outbox, "p1", 2, run).await.unwrap();
    assert_eq!(again.sequence().get(), 2);
    assert!(
        earlier.iter().all(|e| e.id() != again.id()),
        "a new event id"
    );
    assert_eq!(again.id().as_uuid().get_version_num(), 7, "a UUIDv7");
    assert_eq!(again.causation_id(), Some(run));
    assert_eq!(again.payload()["note"], "snapshot");

    // The outbox holds it beside the first record at sequence 2, as the newest.
    let store = outbox.store("republish.relay");
    let ready = store.fetch_ready(10).await.unwrap();
    let keys: Vec<_> = ready.iter().map(|record| key(&record.envelope)).collect();
    assert_eq!(
        keys,
        [
            ("p1".to_owned(), 1),
            ("p1".to_owned(), 2),
            ("p1".to_owned(), 2)
        ]
    );
    assert_eq!(ready[1].envelope.id(), earlier[1].id());
    assert_eq!(ready[2].envelope, again);
    // The positions a caller gets for its commit are the store's for the same records.
    let mut uow = outbox.unit_of_work();
    uow.republish(
        policy("p1"),
        2,
        &changed("p1", "snapshot"),
        EventMetadata::default(),
    )
    .await
    .unwrap();
    let committed = uow.commit().await.unwrap();
    let positions = store.positions_of(&committed);
    let ready = store.fetch_ready(10).await.unwrap();
    assert_eq!(ready.len(), 4);
    assert_eq!(ready[3].position, positions[0]);
    assert_eq!(ready[3].envelope.id(), committed.envelopes()[0].id());
}

#[tokio::test]
async fn republish_does_not_raise_the_version() {
    let outbox = fresh_outbox("republish-version").await;
    append(&outbox, "p1", ExpectedVersion::New, 1).await;
    republish(&outbox, "p1", 1, EventId::generate())
        .await
        .unwrap();

    let next = append(&outbox, "p1", ExpectedVersion::Exactly(1), 1).await;
    assert_eq!(next[0].sequence().get(), 2);
}

#[tokio::test]
async fn republishing_another_version_is_refused_and_the_unit_goes_on() {
    let outbox = fresh_outbox("republish-refused").await;
    append(&outbox, "p1", ExpectedVersion::New, 2).await;
    let snapshot = changed("p1", "snapshot");

    let mut uow = outbox.unit_of_work();
    // Above the version: never stamped, a bug of the caller.
    let above = uow
        .republish(policy("p1"), 3, &snapshot, EventMetadata::default())
        .await
        .map(|_| ());
    assert!(
        matches!(&above, Err(OutboxError::InvalidEvent { source }) if source.to_string().contains("republish at 2")),
        "{above:?}"
    );
    // Below it: a write came after the snapshot was read.
    let below = uow
        .republish(policy("p1"), 1, &snapshot, EventMetadata::default())
        .await
        .map(|_| ());
    assert!(
        matches!(below, Err(OutboxError::Conflict { actual: 2, .. })),
        "{below:?}"
    );
    // Without events, nothing to republish.
    let ghost = uow
        .republish(policy("ghost"), 1, &snapshot, EventMetadata::default())
        .await
        .map(|_| ());
    assert!(
        matches!(&ghost, Err(OutboxError::InvalidEvent { source }) if source.to_string().contains("no events")),
        "{ghost:?}"
    );
    // The unit of work goes on, and commits the right republish with another append.
    uow.republish(policy("p1"), 2, &snapshot, EventMetadata::default())
        .await
        .unwrap();
    uow.append(
        policy("p2"),
        ExpectedVersion::New,
        &changed("p2", "write"),
        EventMetadata::default(),
    )
    .unwrap();
    let committed = uow.commit().await.unwrap();
    let keys: Vec<_> = committed.envelopes().iter().map(key).collect();
    assert_eq!(keys, [("p1".to_owned(), 2), ("p2".to_owned(), 1)]);
    assert_eq!(committed.version(&policy("p1")), Some(2));
}

#[tokio::test]
async fn an_aggregate_is_republished_once_and_alone_in_a_unit_of_work() {
    let outbox = fresh_outbox("republish-alone").await;
    append(&outbox, "p1", ExpectedVersion::New, 1).await;
    append(&outbox, "p2", ExpectedVersion::New, 1).await;
    let snapshot = changed("p1", "snapshot");

    let mut uow = outbox.unit_of_work();
    uow.republish(policy("p1"), 1, &snapshot, EventMetadata::default())
        .await
        .unwrap();
    let second = uow
        .republish(policy("p1"), 1, &snapshot, EventMetadata::default())
        .await
        .map(|_| ());
    let appended = uow
        .append(
            policy("p1"),
            ExpectedVersion::Exactly(1),
            &snapshot,
            EventMetadata::default(),
        )
        .map(|_| ());
    uow.append(
        policy("p2"),
        ExpectedVersion::Exactly(1),
        &snapshot,
        EventMetadata::default(),
    )
    .unwrap();
    let after_append = uow
        .republish(policy("p2"), 1, &snapshot, EventMetadata::default())
        .await
        .map(|_| ());
    let at_zero = uow
        .republish_at(policy("p3"), 0, &snapshot, EventMetadata::default())
        .map(|_| ());
    for refused in [second, appended, after_append, at_zero] {
        assert!(
            matches!(refused, Err(OutboxError::InvalidEvent { .. })),
            "{refused:?}"
        );
    }
    let committed = uow.commit().await.unwrap();
    let keys: Vec<_> = committed.envelopes().iter().map(key).collect();
    assert_eq!(keys, [("p1".to_owned(), 1), ("p2".to_owned(), 2)]);
    assert_eq!(committed.version(&policy("p1")), Some(1));
    assert_eq!(committed.version(&policy("p2")), Some(2));
}

/// A write between the republish's read and its commit makes the commit fail as a
/// conflict, with nothing committed.
#[tokio::test]
async fn a_write_after_the_republish_is_checked_fails_its_commit() {
    let outbox = fresh_outbox("republish-race").await;
    append(&outbox, "p1", ExpectedVersion::New, 1).await;

    let mut uow = outbox.unit_of_work();
    uow.republish(
        policy("p1"),
        1,
        &changed("p1", "snapshot"),
        EventMetadata::default(),
    )
    .await
    .unwrap();
    append(&outbox, "p1", ExpectedVersion::Exactly(1), 1).await;
    let raced = uow.commit().await;
    assert!(
        matches!(raced, Err(OutboxError::Conflict { actual: 2, .. })),
        "{raced:?}"
    );
    let store = outbox.store("republish.relay");
    let ready = store.fetch_ready(10).await.unwrap();
    assert_eq!(ready.len(), 2, "the republish committed nothing: {ready:?}");
}

/// `republish_at` takes the service's version and refuses, at commit, one below what the
/// outbox kept.
#[tokio::test]
async fn republish_at_is_refused_below_the_version_the_outbox_kept() {
    let outbox = fresh_outbox("republish-at").await;
    append(&outbox, "p2", ExpectedVersion::New, 3).await;
    let snapshot = changed("p1", "snapshot");

    let mut uow = outbox.unit_of_work();
    uow.republish_at(policy("p1"), 2, &snapshot, EventMetadata::default())
        .unwrap();
    let committed = uow.commit().await.unwrap();
    assert_eq!(committed.envelopes()[0].sequence().get(), 2);

    let mut uow = outbox.unit_of_work();
    uow.republish_at(policy("p2"), 2, &snapshot, EventMetadata::default())
        .unwrap();
    let stale = uow.commit().await;
    assert!(
        matches!(stale, Err(OutboxError::Conflict { actual: 3, .. })),
        "{stale:?}"
    );
}

#[tokio::test]
async fn the_relay_publishes_a_republished_record_between_the_aggregates_others() {
    let outbox = fresh_outbox("republish-relay").await;
    append(&outbox, "p1", ExpectedVersion::New, 2).await;
    append(&outbox, "p2", ExpectedVersion::New, 1).await;
    let again = republish(&outbox, "p1", 2, EventId::generate())
        .await
        .unwrap();
    append(&outbox, "p1", ExpectedVersion::Exactly(2), 1).await;

    let world = World::on(outbox.store("republish.relay"));
    let relay = world.start(0, fast_config("relay-0"));
    eventually(
        "the relay published all five",
        Duration::from_secs(20),
        || world.published().len() >= 5,
    )
    .await;
    relay.stop().await;

    let published: Vec<Envelope> = world
        .published()
        .into_iter()
        .filter(|e| e.aggregate_id().as_str() == "p1")
        .collect();
    let sequences: Vec<u64> = published.iter().map(|e| e.sequence().get()).collect();
    assert_eq!(sequences, [1, 2, 2, 3], "in the aggregate's order");
    assert_eq!(published[2].id(), again.id());
    assert_eq!(world.published().len(), 5);
    assert_eq!(world.backlog().await.pending, 0);
}

#[tokio::test]
async fn the_streams_relay_publishes_a_republished_record_in_order() {
    let outbox = fresh_outbox("republish-streams").await;
    let publisher = MemoryPublisher::new();
    let relay = Running::start(&outbox, publisher.clone(), config("streams-0")).await;
    let mut committed = append(&outbox, "p1", ExpectedVersion::New, 2).await;
    committed.push(
        republish(&outbox, "p1", 2, EventId::generate())
            .await
            .unwrap(),
    );
    committed.extend(append(&outbox, "p1", ExpectedVersion::Exactly(2), 1).await);
    wait_until("the streams relay published all four", || {
        all_published(&publisher, &committed)
    })
    .await;
    relay.stop().await;

    let ids: Vec<EventId> = publisher.published().iter().map(Envelope::id).collect();
    let expected: Vec<EventId> = committed.iter().map(Envelope::id).collect();
    assert_eq!(ids, expected, "in commit order, the republish in its place");
}
