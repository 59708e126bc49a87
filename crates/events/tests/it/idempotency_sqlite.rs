//! The SQLite idempotency store beyond the contract: the "processed" marker in the
//! caller's transaction, purging, several connections on one database file.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use dovetail_events::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, LeaseOwner,
    ManualClock, MarkOutcome, SqliteIdempotencyStore, StoredOutcome,
};
use dovetail_testkit::idempotency_contract::fresh_key;
use rusqlite::{Connection, TransactionBehavior};

/// A database file of its own under cargo's temporary directory for tests.
pub(crate) fn fresh_db_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("idempotency-{}.db", uuid::Uuid::new_v4()))
}

/// The service's own database: a table the handler writes, and the idempotency table.
fn service_db(path: &PathBuf) -> Connection {
    let db = Connection::open(path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, note TEXT NOT NULL)")
        .unwrap();
    SqliteIdempotencyStore::create_schema(&db).unwrap();
    db
}

/// One delivery the transactional way: the handler's write and the marker in one
/// transaction, committed only when the marker was written.
fn deliver(
    db: &mut Connection,
    key: &IdempotencyKey,
    payload: &[u8],
) -> Result<MarkOutcome, IdempotencyError> {
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute(
        "INSERT INTO effects (key, note) VALUES (?1, 'applied')",
        [key.as_str()],
    )
    .unwrap();
    let marked = SqliteIdempotencyStore::mark_processed_in(
        &tx,
        key,
        &Fingerprint::of(payload),
        &StoredOutcome::from("applied"),
        Duration::from_secs(3600),
    );
    if matches!(marked, Ok(MarkOutcome::Marked)) {
        tx.commit().unwrap();
    } else {
        tx.rollback().unwrap();
    }
    marked
}

fn effects(db: &Connection, key: &IdempotencyKey) -> i64 {
    db.query_row(
        "SELECT count(*) FROM effects WHERE key = ?1",
        [key.as_str()],
        |row| row.get(0),
    )
    .unwrap()
}

fn rows(db: &Connection) -> i64 {
    db.query_row("SELECT count(*) FROM dovetail_idempotency", [], |row| {
        row.get(0)
    })
    .unwrap()
}

#[tokio::test]
async fn the_marker_commits_with_the_handlers_write_and_duplicates_roll_back() {
    let path = fresh_db_path();
    let mut db = service_db(&path);
    let key = fresh_key("tx");

    assert_eq!(
        deliver(&mut db, &key, b"payload").unwrap(),
        MarkOutcome::Marked
    );
    assert_eq!(
        deliver(&mut db, &key, b"payload").unwrap(),
        MarkOutcome::Duplicate(StoredOutcome::from("applied"))
    );
    assert_eq!(
        effects(&db, &key),
        1,
        "the duplicate's write was rolled back"
    );
    let mismatch = deliver(&mut db, &key, b"another payload");
    assert!(
        matches!(mismatch, Err(IdempotencyError::PayloadMismatch { .. })),
        "{mismatch:?}"
    );
    assert_eq!(effects(&db, &key), 1);

    // The lease-based store on the same file sees a processed key.
    let store = SqliteIdempotencyStore::open(&path).unwrap();
    let claim = store
        .try_claim(
            &key,
            &Fingerprint::of(b"payload"),
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        ClaimOutcome::Processed(StoredOutcome::from("applied"))
    );
}

#[tokio::test]
async fn a_rolled_back_marker_leaves_the_key_free() {
    let path = fresh_db_path();
    let mut db = service_db(&path);
    let key = fresh_key("rollback");
    let tx = db.transaction().unwrap();
    let marked = SqliteIdempotencyStore::mark_processed_in(
        &tx,
        &key,
        &Fingerprint::of(b"payload"),
        &StoredOutcome::empty(),
        Duration::from_secs(3600),
    )
    .unwrap();
    assert_eq!(marked, MarkOutcome::Marked);
    tx.rollback().unwrap(); // the handler failed after all

    assert_eq!(
        deliver(&mut db, &key, b"payload").unwrap(),
        MarkOutcome::Marked
    );
    assert_eq!(effects(&db, &key), 1);
}

#[tokio::test]
async fn the_marker_waits_for_a_live_lease_and_takes_over_an_expired_one() {
    let path = fresh_db_path();
    let mut db = service_db(&path);
    let store = SqliteIdempotencyStore::open(&path).unwrap();
    let key = fresh_key("tx-lease");
    let claim = store
        .try_claim(
            &key,
            &Fingerprint::of(b"payload"),
            &LeaseOwner::random(),
            Duration::from_millis(200),
        )
        .await
        .unwrap();
    let lease = claim.lease().unwrap().clone();

    let waiting = deliver(&mut db, &key, b"payload").unwrap();
    assert_eq!(
        waiting,
        MarkOutcome::InProgress {
            held_until: lease.held_until()
        }
    );
    assert_eq!(effects(&db, &key), 0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        deliver(&mut db, &key, b"payload").unwrap(),
        MarkOutcome::Marked
    );
    let late = store
        .complete(&lease, StoredOutcome::from("late"), Duration::from_secs(60))
        .await;
    assert!(
        matches!(late, Err(IdempotencyError::LeaseLost { .. })),
        "{late:?}"
    );
    assert_eq!(effects(&db, &key), 1);
}

#[tokio::test]
async fn purge_removes_expired_records_and_only_those() {
    let path = fresh_db_path();
    let clock = ManualClock::new(SystemTime::now());
    let store = SqliteIdempotencyStore::open(&path)
        .unwrap()
        .with_clock(clock.clone());
    let owner = LeaseOwner::random();
    for (name, retain) in [("short", 1), ("long", 3600)] {
        let key = fresh_key(name);
        let claim = store
            .try_claim(
                &key,
                &Fingerprint::of(b"{}"),
                &owner,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        store
            .complete(
                claim.lease().unwrap(),
                StoredOutcome::empty(),
                Duration::from_secs(retain),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(rows(&Connection::open(&path).unwrap()), 1);
}

#[tokio::test]
async fn claims_purge_expired_records_now_and_then() {
    let path = fresh_db_path();
    let clock = ManualClock::new(SystemTime::now());
    let store = SqliteIdempotencyStore::open(&path)
        .unwrap()
        .with_clock(clock.clone());
    let owner = LeaseOwner::random();
    let fingerprint = Fingerprint::of(b"{}");
    for _ in 0..3 {
        let claim = store
            .try_claim(
                &fresh_key("old"),
                &fingerprint,
                &owner,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        store
            .complete(
                claim.lease().unwrap(),
                StoredOutcome::empty(),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
    }
    let observer = Connection::open(&path).unwrap();
    assert_eq!(rows(&observer), 3);
    // Within the minute after the last purge, a claim leaves expired rows alone.
    clock.advance(Duration::from_secs(2));
    store
        .try_claim(
            &fresh_key("new"),
            &fingerprint,
            &owner,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(rows(&observer), 4);
    // A minute later, the next claim removes them.
    clock.advance(Duration::from_secs(60));
    store
        .try_claim(
            &fresh_key("newer"),
            &fingerprint,
            &owner,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(rows(&observer), 2, "only the two live claims are left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_on_one_file_share_their_claims() {
    let path = fresh_db_path();
    let stores = [
        SqliteIdempotencyStore::open(&path).unwrap(),
        SqliteIdempotencyStore::open(&path).unwrap(),
    ];
    let key = fresh_key("shared");
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let (store, key) = (stores[n % 2].clone(), key.clone());
            tokio::spawn(async move {
                store
                    .try_claim(
                        &key,
                        &Fingerprint::of(b"{}"),
                        &LeaseOwner::random(),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for racer in racers {
        if racer.await.unwrap().lease().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1, "one claim wins across connections");
}

#[tokio::test]
async fn records_survive_reopening_the_database() {
    let path = fresh_db_path();
    let key = fresh_key("durable");
    let fingerprint = Fingerprint::of(b"{}");
    {
        let store = SqliteIdempotencyStore::open(&path).unwrap();
        let claim = store
            .try_claim(
                &key,
                &fingerprint,
                &LeaseOwner::random(),
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        store
            .complete(
                claim.lease().unwrap(),
                StoredOutcome::from("kept"),
                Duration::from_secs(3600),
            )
            .await
            .unwrap();
    }
    let reopened =
        SqliteIdempotencyStore::from_connection(Connection::open(&path).unwrap()).unwrap();
    let claim = reopened
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(claim, ClaimOutcome::Processed(StoredOutcome::from("kept")));
}

#[tokio::test]
async fn an_unreadable_row_is_reported_as_corrupt() {
    let path = fresh_db_path();
    let store = SqliteIdempotencyStore::open(&path).unwrap();
    let key = fresh_key("corrupt");
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO dovetail_idempotency VALUES (?1, x'0102', 'o', 1, 'processed', 0, 9e15, NULL)",
            [key.as_str()],
        )
        .unwrap();
    let error = store
        .try_claim(
            &key,
            &Fingerprint::of(b"{}"),
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, IdempotencyError::CorruptRecord { .. }),
        "{error:?}"
    );
    assert!(!error.is_retriable());
}

#[tokio::test]
async fn backend_errors_keep_the_sqlite_error_as_their_source() {
    let path = fresh_db_path();
    let store = SqliteIdempotencyStore::open(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE dovetail_idempotency")
        .unwrap();
    let error = store
        .try_claim(
            &fresh_key("gone"),
            &Fingerprint::of(b"{}"),
            &LeaseOwner::random(),
            Duration::from_secs(30),
        )
        .await
        .unwrap_err();
    assert!(error.is_retriable(), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the SQLite idempotency store could not claim a key"
    );
    let chain = dovetail_testkit::error_chain(&error);
    assert!(chain.contains("no such table"), "{chain}");
}
