//! Republishing through the SQLite unit of work: the owner sends an aggregate's current
//! snapshot again, at its current sequence, with a new event id and the check run as
//! the cause, without raising its version; the relay publishes it after the aggregate's
//! earlier records.

use std::time::Duration;

use dovetail_events::envelope::{Envelope, EventId, EventMetadata};
use dovetail_outbox::{ExpectedVersion, OutboxError, OutboxStore};

use crate::relay::fixtures::{World, eventually, fast_config, key};
use crate::sqlite_unit_of_work::{
    Service, append, append_at, raise_own_version, versioned_policies,
};
use crate::support::{changed, policy};

/// Metadata naming consistency check run `run` as the cause.
fn caused_by_check(run: EventId) -> EventMetadata {
    EventMetadata {
        causation_id: Some(run),
        ..EventMetadata::default()
    }
}

/// Commits `events` appends to policy `id`, from a new aggregate; answers their envelopes.
fn create(service: &mut Service, id: &str, events: usize) -> Vec<Envelope> {
    let mut uow = service.begin();
    for _ in 0..events {
        append(&mut uow, id, ExpectedVersion::New).unwrap();
    }
    uow.commit().unwrap().into_envelopes()
}

/// Republishes policy `id` at `version` in a unit of work of its own, with `run` as the
/// cause; answers the republished envelope.
fn republish(
    service: &mut Service,
    id: &str,
    version: u64,
    run: EventId,
) -> Result<Envelope, OutboxError> {
    let mut uow = service.begin();
    uow.republish(
        policy(id),
        version,
        &changed(id, "snapshot"),
        caused_by_check(run),
    )?;
    let committed = uow.commit()?;
    assert_eq!(committed.version(&policy(id)), Some(version));
    Ok(committed.into_envelopes().remove(0))
}

#[tokio::test]
async fn republish_stamps_the_given_sequence_a_new_id_and_the_checks_causation() {
    let mut service = Service::new();
    let earlier = create(&mut service, "p1", 2);
    let run = EventId::generate();

    let again = republish(&mut service, "p1", 2, run).unwrap();
    assert_eq!(again.sequence().get(), 2);
    assert!(
        earlier.iter().all(|e| e.id() != again.id()),
        "a new event id"
    );
    assert_eq!(again.id().as_uuid().get_version_num(), 7, "a UUIDv7");
    assert_eq!(again.causation_id(), Some(run));
    assert_eq!(again.payload()["note"], "snapshot");

    // The outbox holds it as the aggregate's newest record, at the same sequence.
    assert_eq!(
        service.outbox_events().await,
        [
            ("p1".to_owned(), 1),
            ("p1".to_owned(), 2),
            ("p1".to_owned(), 2)
        ]
    );
    let stored = service.store.fetch_ready(10).await.unwrap();
    assert_eq!(stored[2].envelope, again);
}

#[tokio::test]
async fn republish_does_not_raise_the_version() {
    let mut service = Service::new();
    create(&mut service, "p1", 1);
    republish(&mut service, "p1", 1, EventId::generate()).unwrap();
    assert_eq!(service.version("p1"), Some(1));

    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::Exactly(1)).unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.version(&policy("p1")), Some(2));
    assert_eq!(committed.envelopes()[0].sequence().get(), 2);
}

#[tokio::test]
async fn republishing_another_version_is_refused_and_the_unit_goes_on() {
    let mut service = Service::new();
    create(&mut service, "p1", 2);
    let snapshot = changed("p1", "snapshot");

    let mut uow = service.begin();
    // Above the version: never stamped, a bug of the caller.
    let above = uow.republish(policy("p1"), 3, &snapshot, EventMetadata::default());
    assert!(
        matches!(&above, Err(OutboxError::InvalidEvent { source }) if source.to_string().contains("republish at 2")),
        "{above:?}"
    );
    // Below it: a write came after the snapshot was read.
    let below = uow.republish(policy("p1"), 1, &snapshot, EventMetadata::default());
    assert!(
        matches!(below, Err(OutboxError::Conflict { actual: 2, .. })),
        "{below:?}"
    );
    // The unit of work goes on, and commits the right republish alone.
    uow.republish(policy("p1"), 2, &snapshot, EventMetadata::default())
        .unwrap();
    append(&mut uow, "p2", ExpectedVersion::New).unwrap();
    let committed = uow.commit().unwrap();
    let keys: Vec<_> = committed.envelopes().iter().map(key).collect();
    assert_eq!(keys, [("p1".to_owned(), 2), ("p2".to_owned(), 1)]);
    assert_eq!(service.version("p1"), Some(2));
}

#[tokio::test]
async fn republishing_an_aggregate_without_events_is_refused() {
    let mut service = Service::new();
    let mut uow = service.begin();
    for version in [0, 1] {
        let refused = uow.republish(
            policy("ghost"),
            version,
            &changed("ghost", "snapshot"),
            EventMetadata::default(),
        );
        assert!(
            matches!(&refused, Err(OutboxError::InvalidEvent { source }) if source.to_string().contains("no events")),
            "{refused:?}"
        );
    }
    let committed = uow.commit().unwrap();
    assert!(committed.envelopes().is_empty());
    assert_eq!(service.version("ghost"), None);
}

#[tokio::test]
async fn an_aggregate_is_republished_once_and_alone_in_a_unit_of_work() {
    let mut service = Service::new();
    create(&mut service, "p1", 1);
    create(&mut service, "p2", 1);
    let snapshot = changed("p1", "snapshot");

    let mut uow = service.begin();
    uow.republish(policy("p1"), 1, &snapshot, EventMetadata::default())
        .unwrap();
    // A second republish, then appends of either kind, after it.
    let second = uow.republish(policy("p1"), 1, &snapshot, EventMetadata::default());
    let appended = append(&mut uow, "p1", ExpectedVersion::Exactly(1));
    let appended_at = append_at(&mut uow, "p1", 2);
    // And a republish after an append.
    append(&mut uow, "p2", ExpectedVersion::Exactly(1)).unwrap();
    let after_append = uow.republish(policy("p2"), 1, &snapshot, EventMetadata::default());
    for refused in [second, appended, appended_at, after_append] {
        assert!(
            matches!(refused, Err(OutboxError::InvalidEvent { .. })),
            "{refused:?}"
        );
    }
    let committed = uow.commit().unwrap();
    let keys: Vec<_> = committed.envelopes().iter().map(key).collect();
    assert_eq!(keys, [("p1".to_owned(), 1), ("p2".to_owned(), 2)]);
    assert_eq!(committed.version(&policy("p1")), Some(1));
    assert_eq!(committed.version(&policy("p2")), Some(2));
}

#[tokio::test]
async fn republish_at_takes_the_services_version_and_checks_what_the_outbox_kept() {
    let mut service = Service::new();
    versioned_policies(&service.db);
    let mut uow = service.begin();
    assert!(raise_own_version(&uow, "p1", 0, 2));
    append_at(&mut uow, "p1", 1).unwrap();
    append_at(&mut uow, "p1", 2).unwrap();
    uow.commit().unwrap();
    create(&mut service, "p2", 3);

    let snapshot = changed("p1", "snapshot");
    let mut uow = service.begin();
    let zero = uow.republish_at(policy("p1"), 0, &snapshot, EventMetadata::default());
    assert!(
        matches!(zero, Err(OutboxError::InvalidEvent { .. })),
        "{zero:?}"
    );
    // `republish` needs a version the outbox kept.
    let unkept = uow.republish(policy("p1"), 2, &snapshot, EventMetadata::default());
    assert!(
        matches!(unkept, Err(OutboxError::InvalidEvent { .. })),
        "{unkept:?}"
    );
    // Below what the outbox stamped for an aggregate it kept.
    let stale = uow.republish_at(policy("p2"), 2, &snapshot, EventMetadata::default());
    assert!(
        matches!(stale, Err(OutboxError::Conflict { actual: 3, .. })),
        "{stale:?}"
    );
    uow.republish_at(policy("p1"), 2, &snapshot, EventMetadata::default())
        .unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.envelopes()[0].sequence().get(), 2);
    assert_eq!(
        service.version("p1"),
        None,
        "the outbox still keeps no version"
    );
}

#[tokio::test]
async fn the_relay_publishes_a_republished_record_after_the_aggregates_earlier_ones() {
    let mut service = Service::new();
    create(&mut service, "p1", 2);
    create(&mut service, "p2", 1);
    let again = republish(&mut service, "p1", 2, EventId::generate()).unwrap();
    create(&mut service, "p3", 1);

    let world = World::on(service.store.clone());
    let relay = world.start(0, fast_config("relay-0"));
    eventually(
        "the relay published all five",
        Duration::from_secs(10),
        || world.published().len() >= 5,
    )
    .await;
    relay.stop().await;

    // The relay orders each aggregate's records, not records across aggregates.
    let published: Vec<Envelope> = world
        .published()
        .into_iter()
        .filter(|e| e.aggregate_id().as_str() == "p1")
        .collect();
    let sequences: Vec<u64> = published.iter().map(|e| e.sequence().get()).collect();
    assert_eq!(sequences, [1, 2, 2], "in commit order");
    assert_eq!(published[2].id(), again.id());
    assert_eq!(world.published().len(), 5);
    assert_eq!(world.backlog().await.pending, 0);
}
