//! The SQLite unit of work: business rows and events commit together or not at all,
//! sequences are stamped under optimistic concurrency, and a commit wakes the relay.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Upcasters};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore, SqliteUnitOfWork};
use dovetail_outbox::{ExpectedVersion, OutboxError, OutboxStore};
use rusqlite::{Connection, params};

use crate::support::{PolicyChanged, changed, policy, source, temp_db};

/// A service's database with a business table and the outbox, and the store a relay
/// would read it through.
pub(crate) struct Service {
    pub(crate) db: Connection,
    pub(crate) outbox: SqliteOutbox,
    pub(crate) store: SqliteOutboxStore,
    path: std::path::PathBuf,
}

impl Service {
    pub(crate) fn new() -> Self {
        let path = temp_db("uow");
        let store = SqliteOutboxStore::open(&path, "uow.relay").unwrap();
        let db = open_service_db(&path);
        Self {
            db,
            outbox: SqliteOutbox::new(OutboxConfig::new(source())),
            store,
            path,
        }
    }

    pub(crate) fn begin(&mut self) -> SqliteUnitOfWork<'_> {
        self.outbox.begin(&mut self.db).unwrap()
    }

    fn policies(&self) -> Vec<String> {
        let mut statement = self
            .db
            .prepare("SELECT id FROM policies ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    pub(crate) fn version(&self, id: &str) -> Option<u64> {
        self.db
            .query_row(
                "SELECT version FROM dovetail_outbox_aggregates
                 WHERE aggregate_type = 'policy' AND aggregate_id = ?1",
                params![id],
                |row| row.get(0),
            )
            .ok()
    }

    /// (aggregate id, sequence) of every event in the outbox, in commit order.
    pub(crate) async fn outbox_events(&self) -> Vec<(String, u64)> {
        self.store
            .fetch_ready(10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.envelope.aggregate_id().as_str().to_owned(),
                    r.envelope.sequence().get(),
                )
            })
            .collect()
    }
}

fn open_service_db(path: &std::path::Path) -> Connection {
    let db = Connection::open(path).unwrap();
    db.pragma_update(None, "synchronous", "FULL").unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS policies (id TEXT PRIMARY KEY, premium TEXT NOT NULL)",
    )
    .unwrap();
    SqliteOutbox::create_schema(&db).unwrap();
    db
}

fn insert_policy(uow: &SqliteUnitOfWork<'_>, id: &str) -> rusqlite::Result<usize> {
    uow.transaction()
        .execute("INSERT INTO policies VALUES (?1, '100.00')", params![id])
}

pub(crate) fn append(
    uow: &mut SqliteUnitOfWork<'_>,
    id: &str,
    expected: ExpectedVersion,
) -> Result<(), OutboxError> {
    uow.append(
        policy(id),
        expected,
        &changed(id, "test"),
        EventMetadata::default(),
    )
}

#[tokio::test]
async fn commit_keeps_the_business_row_and_its_events() {
    let mut service = Service::new();
    let mut uow = service.begin();
    insert_policy(&uow, "p1").unwrap();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    let committed = uow.commit().unwrap();

    assert_eq!(service.policies(), ["p1"]);
    assert_eq!(
        service.outbox_events().await,
        [("p1".to_owned(), 1), ("p1".to_owned(), 2)]
    );
    assert_eq!(committed.version(&policy("p1")), Some(2));
    assert_eq!(committed.version(&policy("other")), None);
    assert_eq!(committed.envelopes().len(), 2);

    // The outbox holds exactly what `Committed` reported, payload and all.
    let records = service.store.fetch_ready(10).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        committed.positions().expect("SQLite numbers its records")
    );
    let stored: Vec<_> = records.into_iter().map(|r| r.envelope).collect();
    assert_eq!(stored, committed.envelopes());
    let event: PolicyChanged = stored[0].decode(&Upcasters::new()).unwrap();
    assert_eq!(event, changed("p1", "test"));
    assert_eq!(stored[0].source(), &source());
    assert_eq!(stored[0].event_type().as_str(), PolicyChanged::TYPE);
}

#[tokio::test]
async fn a_dropped_unit_of_work_keeps_nothing() {
    let mut service = Service::new();
    {
        let mut uow = service.begin();
        insert_policy(&uow, "p1").unwrap();
        append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    }
    assert!(service.policies().is_empty());
    assert!(service.outbox_events().await.is_empty());
    assert_eq!(service.version("p1"), None);
}

#[tokio::test]
async fn an_explicit_rollback_keeps_nothing() {
    let mut service = Service::new();
    let mut uow = service.begin();
    insert_policy(&uow, "p1").unwrap();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    uow.rollback().unwrap();
    assert!(service.policies().is_empty());
    assert!(service.outbox_events().await.is_empty());
}

#[tokio::test]
async fn a_failing_business_write_keeps_nothing() {
    fn create_twice(service: &mut Service) -> Result<(), Box<dyn std::error::Error>> {
        let mut uow = service.begin();
        append(&mut uow, "p1", ExpectedVersion::New)?;
        insert_policy(&uow, "p1")?;
        append(&mut uow, "p2", ExpectedVersion::New)?;
        insert_policy(&uow, "p1")?; // the primary key refuses it
        uow.commit()?;
        Ok(())
    }

    let mut service = Service::new();
    let error = create_twice(&mut service).unwrap_err();
    assert!(error.to_string().contains("UNIQUE"), "{error}");
    assert!(service.policies().is_empty());
    assert!(service.outbox_events().await.is_empty());
    assert_eq!(service.store.backlog().await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_conflict_keeps_nothing() {
    let mut service = Service::new();
    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    uow.commit().unwrap();

    let mut uow = service.begin();
    insert_policy(&uow, "p2").unwrap();
    append(&mut uow, "p2", ExpectedVersion::New).unwrap();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap(); // p1 exists
    let error = uow.commit().unwrap_err();
    match &error {
        OutboxError::Conflict {
            aggregate_type,
            aggregate_id,
            expected,
            actual,
        } => {
            assert_eq!(
                (aggregate_type.as_str(), aggregate_id.as_str(), *actual),
                ("policy", "p1", 1)
            );
            assert_eq!(expected, "new (no events)");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        "aggregate policy/p1 is at version 1, not new (no events): another write came first; \
         reload it and try again"
    );
    // Neither p2's row, nor its event, nor its version.
    assert!(service.policies().is_empty());
    assert_eq!(service.outbox_events().await, [("p1".to_owned(), 1)]);
    assert_eq!(service.version("p2"), None);
    assert_eq!(service.version("p1"), Some(1));
}

#[tokio::test]
async fn sequences_continue_across_units_of_work_and_appends() {
    let mut service = Service::new();
    let mut uow = service.begin();
    append(&mut uow, "a", ExpectedVersion::New).unwrap();
    append(&mut uow, "b", ExpectedVersion::Any).unwrap();
    append(&mut uow, "a", ExpectedVersion::New).unwrap();
    let first = uow.commit().unwrap();
    assert_eq!(
        first
            .versions()
            .map(|(a, v)| (a.id.as_str().to_owned(), v))
            .collect::<Vec<_>>(),
        [("a".to_owned(), 2), ("b".to_owned(), 1)]
    );

    let mut uow = service.begin();
    append(&mut uow, "b", ExpectedVersion::Exactly(1)).unwrap();
    append(&mut uow, "a", ExpectedVersion::Exactly(2)).unwrap();
    append(&mut uow, "a", ExpectedVersion::Any).unwrap();
    append(&mut uow, "b", ExpectedVersion::Exactly(1)).unwrap();
    let second = uow.commit().unwrap();
    assert_eq!(second.version(&policy("a")), Some(4));
    assert_eq!(second.version(&policy("b")), Some(3));

    // Commit order is append order; each aggregate's sequences run on without gaps.
    let expected: Vec<(String, u64)> = [
        ("a", 1),
        ("b", 1),
        ("a", 2),
        ("b", 2),
        ("a", 3),
        ("a", 4),
        ("b", 3),
    ]
    .into_iter()
    .map(|(id, seq)| (id.to_owned(), seq))
    .collect();
    assert_eq!(service.outbox_events().await, expected);
    assert_eq!(
        second
            .envelopes()
            .iter()
            .map(|e| e.sequence().get())
            .collect::<Vec<_>>(),
        [2, 3, 4, 3]
    );
}

#[tokio::test]
async fn expectations_are_checked() {
    let mut service = Service::new();
    // Exactly(0) is the same as New; Any creates too.
    let mut uow = service.begin();
    append(&mut uow, "zero", ExpectedVersion::Exactly(0)).unwrap();
    append(&mut uow, "any", ExpectedVersion::Any).unwrap();
    uow.commit().unwrap();
    assert_eq!(
        (service.version("zero"), service.version("any")),
        (Some(1), Some(1))
    );

    // A stale Exactly.
    let mut uow = service.begin();
    append(&mut uow, "zero", ExpectedVersion::Exactly(1)).unwrap();
    uow.commit().unwrap();
    let mut uow = service.begin();
    append(&mut uow, "zero", ExpectedVersion::Exactly(1)).unwrap();
    let error = uow.commit().unwrap_err();
    assert!(
        matches!(&error, OutboxError::Conflict { expected, actual: 2, .. } if expected == "1"),
        "{error:?}"
    );

    // Exactly on an aggregate that has no events.
    let mut uow = service.begin();
    append(&mut uow, "missing", ExpectedVersion::Exactly(3)).unwrap();
    let error = uow.commit().unwrap_err();
    assert!(
        matches!(&error, OutboxError::Conflict { expected, actual: 0, .. } if expected == "3"),
        "{error:?}"
    );
    assert_eq!(service.version("missing"), None);

    // Two appends that expect different versions cannot both be right.
    let mut uow = service.begin();
    append(&mut uow, "zero", ExpectedVersion::Exactly(2)).unwrap();
    append(&mut uow, "zero", ExpectedVersion::Exactly(3)).unwrap();
    let error = uow.commit().unwrap_err();
    assert!(
        matches!(&error, OutboxError::Conflict { expected, actual: 2, .. } if expected == "3"),
        "{error:?}"
    );
    assert_eq!(service.version("zero"), Some(2));
}

#[tokio::test]
async fn an_event_that_does_not_serialize_is_refused_and_the_unit_goes_on() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Odd {
        by_pair: std::collections::BTreeMap<(u8, u8), u8>,
    }
    impl Event for Odd {
        const TYPE: &'static str = "odd";
        const VERSION: u32 = 1;
    }

    let mut service = Service::new();
    let mut uow = service.begin();
    let error = uow
        .append(
            policy("p1"),
            ExpectedVersion::New,
            &Odd {
                by_pair: [((1, 2), 3)].into(),
            },
            EventMetadata::default(),
        )
        .unwrap_err();
    assert!(
        matches!(error, OutboxError::InvalidEvent { .. }),
        "{error:?}"
    );
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.version(&policy("p1")), Some(1));
    assert_eq!(service.outbox_events().await, [("p1".to_owned(), 1)]);
}

#[tokio::test]
async fn a_unit_of_work_without_events_commits_the_business_write() {
    let mut service = Service::new();
    let uow = service.begin();
    insert_policy(&uow, "p1").unwrap();
    let committed = uow.commit().unwrap();
    assert!(committed.envelopes().is_empty());
    assert_eq!(committed.versions().count(), 0);
    assert_eq!(service.policies(), ["p1"]);
}

#[tokio::test]
async fn metadata_is_kept() {
    let mut service = Service::new();
    let mut uow = service.begin();
    append(&mut uow, "cause", ExpectedVersion::New).unwrap();
    let cause = uow.commit().unwrap().into_envelopes().remove(0);

    let mut uow = service.begin();
    uow.append(
        policy("effect"),
        ExpectedVersion::New,
        &changed("effect", "caused"),
        EventMetadata::caused_by(&cause),
    )
    .unwrap();
    let effect = uow.commit().unwrap().into_envelopes().remove(0);
    assert_eq!(effect.causation_id(), Some(cause.id()));
    assert_eq!(effect.correlation_id(), cause.correlation_id());
}

#[tokio::test]
async fn uncommitted_events_are_invisible_to_the_relay() {
    let mut service = Service::new();
    let store = service.store.clone();
    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    // The unit of work holds the write lock; in WAL mode the relay's reads go on, and do
    // not see the events.
    assert!(store.fetch_ready(10).await.unwrap().is_empty());
    assert_eq!(store.backlog().await.unwrap().pending, 0);
    uow.commit().unwrap();
    assert_eq!(store.fetch_ready(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_commit_wakes_the_relay() {
    let mut service = Service::new();
    let commits = service.outbox.commits();

    // A relay waiting at the time of the commit wakes.
    let waiting = Arc::clone(&commits);
    let waiter = tokio::spawn(async move { waiting.notified().await });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    uow.commit().unwrap();
    tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("the waiting relay woke")
        .unwrap();

    // A relay that was busy at the time of the commit finds it when it next waits.
    while tokio::time::timeout(Duration::from_millis(10), commits.notified())
        .await
        .is_ok()
    {}
    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::Any).unwrap();
    uow.commit().unwrap();
    tokio::time::timeout(Duration::from_secs(2), commits.notified())
        .await
        .expect("the commit left a permit");

    // A unit of work without events does not signal.
    let uow = service.begin();
    insert_policy(&uow, "quiet").unwrap();
    uow.commit().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(100), commits.notified())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn create_schema_is_idempotent() {
    let service = Service::new();
    SqliteOutbox::create_schema(&service.db).unwrap();
    SqliteOutbox::create_schema(&service.db).unwrap();
}

#[test]
fn a_racing_writer_gets_a_conflict() {
    // Two writers both read policy p1 as new; the first to commit wins, the other waits
    // for the write lock and then finds the version moved.
    let path = temp_db("race");
    drop(SqliteOutboxStore::open(&path, "race.relay").unwrap());
    drop(open_service_db(&path));
    let outbox = SqliteOutbox::new(OutboxConfig::new(source()));
    let began = Arc::new(Barrier::new(2));

    let first = {
        let (path, outbox, began) = (path.clone(), outbox.clone(), Arc::clone(&began));
        thread::spawn(move || {
            let mut db = Connection::open(&path).unwrap();
            let mut uow = outbox.begin(&mut db).unwrap();
            began.wait();
            thread::sleep(Duration::from_millis(200)); // the other writer waits meanwhile
            insert_policy(&uow, "p1").unwrap();
            append(&mut uow, "p1", ExpectedVersion::New).unwrap();
            uow.commit().map(|_| ())
        })
    };
    let second = thread::spawn(move || {
        let mut db = Connection::open(&path).unwrap();
        began.wait();
        let mut uow = outbox.begin(&mut db).unwrap(); // waits for the first
        insert_policy(&uow, "p1-copy").unwrap();
        append(&mut uow, "p1", ExpectedVersion::New).unwrap();
        uow.commit().map(|_| ())
    });
    first.join().unwrap().unwrap();
    let error = second.join().unwrap().unwrap_err();
    assert!(
        matches!(error, OutboxError::Conflict { actual: 1, .. }),
        "{error:?}"
    );
}

#[test]
fn concurrent_writers_stamp_gapless_sequences() {
    // Four connections append to three aggregates at once, with `Any`: every aggregate's
    // sequences come out 1..=n, each once, in commit order.
    const WRITERS: usize = 4;
    const UNITS: usize = 25;
    let path = temp_db("concurrent");
    let store = SqliteOutboxStore::open(&path, "concurrent.relay").unwrap();
    drop(open_service_db(&path));
    let outbox = SqliteOutbox::new(OutboxConfig::new(source()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (path, outbox) = (path.clone(), outbox.clone());
            thread::spawn(move || {
                let mut db = Connection::open(&path).unwrap();
                for unit in 0..UNITS {
                    let mut uow = outbox.begin(&mut db).unwrap();
                    for id in ["a", "b", "c"].iter().cycle().skip(writer + unit).take(2) {
                        append(&mut uow, id, ExpectedVersion::Any).unwrap();
                    }
                    uow.commit().unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let records = runtime.block_on(store.fetch_ready(10_000)).unwrap();
    assert_eq!(records.len(), WRITERS * UNITS * 2);
    for id in ["a", "b", "c"] {
        let sequences: Vec<u64> = records
            .iter()
            .filter(|r| r.envelope.aggregate_id().as_str() == id)
            .map(|r| r.envelope.sequence().get())
            .collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        assert_eq!(sequences, expected, "aggregate {id}");
    }
}

#[tokio::test]
async fn events_survive_reopening_the_file() {
    let path = {
        let mut service = Service::new();
        let mut uow = service.begin();
        insert_policy(&uow, "p1").unwrap();
        append(&mut uow, "p1", ExpectedVersion::New).unwrap();
        append(&mut uow, "p2", ExpectedVersion::New).unwrap();
        uow.commit().unwrap();
        service.path.clone()
    };

    let store = SqliteOutboxStore::open(&path, "uow.relay").unwrap();
    let mut db = open_service_db(&path);
    let records = store.fetch_ready(10).await.unwrap();
    assert_eq!(records.len(), 2);
    let p1: AggregateRef = policy("p1");
    assert_eq!(records[0].envelope.aggregate_id(), &p1.id);

    // The versions survived too: the next event of p1 is its second.
    let outbox = SqliteOutbox::new(OutboxConfig::new(source()));
    let mut uow = outbox.begin(&mut db).unwrap();
    append(&mut uow, "p1", ExpectedVersion::Exactly(1)).unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.envelopes()[0].sequence().get(), 2);
}

/// A service that keeps each policy's version in its own row, as `append_at` expects:
/// `INSERT` at 1, then `UPDATE ... WHERE version = ?` raising it by one per event.
pub(crate) fn versioned_policies(db: &Connection) {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS versioned_policies
             (id TEXT PRIMARY KEY, premium TEXT NOT NULL, version INTEGER NOT NULL)",
    )
    .unwrap();
}

pub(crate) fn append_at(
    uow: &mut SqliteUnitOfWork<'_>,
    id: &str,
    version: u64,
) -> Result<(), OutboxError> {
    uow.append_at(
        policy(id),
        version,
        &changed(id, "test"),
        EventMetadata::default(),
    )
}

/// Raises the service's own version from `from` to `from + events` if it is still `from`
/// (`from` 0 inserts the row); `false` when another write came first.
pub(crate) fn raise_own_version(
    uow: &SqliteUnitOfWork<'_>,
    id: &str,
    from: u64,
    events: u64,
) -> bool {
    let changed = if from == 0 {
        uow.transaction().execute(
            "INSERT INTO versioned_policies VALUES (?1, '100.00', ?2) ON CONFLICT DO NOTHING",
            params![id, events],
        )
    } else {
        uow.transaction().execute(
            "UPDATE versioned_policies SET version = version + ?3 WHERE id = ?1 AND version = ?2",
            params![id, from, events],
        )
    };
    changed.unwrap() == 1
}

#[tokio::test]
async fn append_at_takes_the_services_own_version_and_writes_no_version_row() {
    let mut service = Service::new();
    versioned_policies(&service.db);

    let mut uow = service.begin();
    assert!(raise_own_version(&uow, "p1", 0, 2));
    append_at(&mut uow, "p1", 1).unwrap();
    append_at(&mut uow, "p1", 2).unwrap();
    append(&mut uow, "p2", ExpectedVersion::New).unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.version(&policy("p1")), Some(2));
    assert_eq!(committed.version(&policy("p2")), Some(1));

    let mut uow = service.begin();
    assert!(raise_own_version(&uow, "p1", 2, 1));
    append_at(&mut uow, "p1", 3).unwrap();
    uow.commit().unwrap();

    // A writer that read version 2 too: its conditional update changes nothing, so it
    // appends nothing and rolls back, as the contract says.
    let uow = service.begin();
    assert!(!raise_own_version(&uow, "p1", 2, 1));
    uow.rollback().unwrap();

    assert_eq!(service.version("p1"), None, "the outbox kept no version");
    assert_eq!(service.version("p2"), Some(1));
    let expected: Vec<(String, u64)> = [("p1", 1), ("p1", 2), ("p2", 1), ("p1", 3)]
        .into_iter()
        .map(|(id, sequence)| (id.to_owned(), sequence))
        .collect();
    assert_eq!(service.outbox_events().await, expected);
}

#[tokio::test]
async fn append_at_refuses_what_would_break_an_aggregates_sequence() {
    let mut service = Service::new();
    let mut uow = service.begin();
    // Version 0 is no event's sequence.
    assert!(matches!(
        append_at(&mut uow, "p1", 0),
        Err(OutboxError::InvalidEvent { .. })
    ));
    append_at(&mut uow, "p1", 4).unwrap();
    // A gap, a repeat, and the other way of appending, all for the same aggregate.
    for refused in [
        append_at(&mut uow, "p1", 6),
        append_at(&mut uow, "p1", 4),
        append(&mut uow, "p1", ExpectedVersion::Any),
    ] {
        assert!(
            matches!(refused, Err(OutboxError::InvalidEvent { .. })),
            "{refused:?}"
        );
    }
    append(&mut uow, "p2", ExpectedVersion::New).unwrap();
    assert!(matches!(
        append_at(&mut uow, "p2", 2),
        Err(OutboxError::InvalidEvent { .. })
    ));
    // The unit of work goes on without the refused events.
    append_at(&mut uow, "p1", 5).unwrap();
    let committed = uow.commit().unwrap();
    assert_eq!(committed.version(&policy("p1")), Some(5));
    let sequences: Vec<u64> = committed
        .envelopes()
        .iter()
        .map(|e| e.sequence().get())
        .collect();
    assert_eq!(sequences, [4, 1, 5]);
}

#[tokio::test]
async fn append_at_never_reuses_a_sequence_the_outbox_stamped() {
    let mut service = Service::new();
    // The aggregate went through `append` first: the outbox kept version 2.
    let mut uow = service.begin();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    append(&mut uow, "p1", ExpectedVersion::New).unwrap();
    uow.commit().unwrap();

    let mut uow = service.begin();
    insert_policy(&uow, "p1").unwrap();
    append_at(&mut uow, "p1", 2).unwrap();
    let refused = uow.commit().unwrap_err();
    assert!(
        matches!(refused, OutboxError::Conflict { actual: 2, .. }),
        "{refused:?}"
    );
    assert!(service.policies().is_empty(), "nothing of it was kept");

    let mut uow = service.begin();
    append_at(&mut uow, "p1", 3).unwrap();
    assert_eq!(uow.commit().unwrap().version(&policy("p1")), Some(3));
    let sequences: Vec<u64> = service
        .outbox_events()
        .await
        .into_iter()
        .map(|(_, sequence)| sequence)
        .collect();
    assert_eq!(sequences, [1, 2, 3]);
}
