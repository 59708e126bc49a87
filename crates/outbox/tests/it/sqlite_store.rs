//! What the SQLite outbox store adds to the shared contract: state that survives
//! reopening the file, fencing between two stores (two relay processes) on one file,
//! records that are not valid envelopes, and the file's settings.

use std::time::Duration;

use dovetail_events::envelope::EventMetadata;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_outbox::{ExpectedVersion, Failure, OutboxError, OutboxStore, Position};
use rusqlite::{Connection, params};

use crate::support::{changed, policy, source, temp_db};

const TTL: Duration = Duration::from_secs(30);

/// Commits one event per policy id, in one unit of work on a connection of its own.
fn commit(path: &std::path::Path, policies: &[&str]) -> Vec<Position> {
    let mut db = Connection::open(path).unwrap();
    let outbox = SqliteOutbox::new(OutboxConfig::new(source()));
    let mut uow = outbox.begin(&mut db).unwrap();
    for id in policies {
        uow.append(
            policy(id),
            ExpectedVersion::Any,
            &changed(id, "store"),
            EventMetadata::default(),
        )
        .unwrap();
    }
    uow.commit()
        .unwrap()
        .positions()
        .expect("SQLite numbers its records")
        .to_vec()
}

#[tokio::test]
async fn failures_and_the_lease_survive_reopening_the_file() {
    let path = temp_db("reopen");
    let (positions, token) = {
        let store = SqliteOutboxStore::open(&path, "reopen.relay").unwrap();
        let positions = commit(&path, &["a", "a", "b"]);
        let lease = store.acquire_lease("relay-1", TTL).await.unwrap().unwrap();
        store
            .mark_failed(
                &lease,
                &[Failure {
                    position: positions[0],
                    reason: "refused".into(),
                    retry_at: None,
                }],
            )
            .await
            .unwrap();
        store.mark_published(&lease, &[positions[2]]).await.unwrap();
        (positions, lease.fencing_token)
    };

    let store = SqliteOutboxStore::open(&path, "reopen.relay").unwrap();
    assert!(
        store.fetch_ready(10).await.unwrap().is_empty(),
        "a is parked"
    );
    let backlog = store.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.parked), (2, 1));
    // The lease is still held by relay-1, and its token only grows.
    assert_eq!(store.acquire_lease("relay-2", TTL).await.unwrap(), None);
    let renewed = store.acquire_lease("relay-1", TTL).await.unwrap().unwrap();
    assert_eq!(renewed.fencing_token, token);
    store.release_lease(&renewed).await.unwrap();
    let next = store.acquire_lease("relay-2", TTL).await.unwrap().unwrap();
    assert!(next.fencing_token > token);

    assert_eq!(store.unpark_all().await.unwrap(), 1);
    let records = store.fetch_ready(10).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        positions[..2]
    );
    assert_eq!(records[0].attempts, 1);
}

#[tokio::test]
async fn two_stores_on_one_file_fence_each_other() {
    // Two relay processes, each with its own store on the service's file.
    let path = temp_db("two-relays");
    let relay_a = SqliteOutboxStore::open(&path, "orders.relay").unwrap();
    let relay_b = SqliteOutboxStore::open(&path, "orders.relay").unwrap();
    let positions = commit(&path, &["a", "b"]);

    let lease_a = relay_a
        .acquire_lease("relay-a", Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(relay_b.acquire_lease("relay-b", TTL).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let lease_b = relay_b
        .acquire_lease("relay-b", TTL)
        .await
        .unwrap()
        .unwrap();
    assert!(lease_b.fencing_token > lease_a.fencing_token);

    let stale = relay_a.mark_published(&lease_a, &positions).await;
    match stale {
        Err(OutboxError::LeaseLost { lease }) => assert_eq!(lease, "orders.relay"),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(relay_b.backlog().await.unwrap().pending, 2);
    relay_b.mark_published(&lease_b, &positions).await.unwrap();
    assert_eq!(relay_a.backlog().await.unwrap().pending, 0);
}

#[tokio::test]
async fn leases_of_different_names_are_independent() {
    let path = temp_db("names");
    let first = SqliteOutboxStore::open(&path, "first.relay").unwrap();
    let second = SqliteOutboxStore::open(&path, "second.relay").unwrap();
    assert_eq!(second.lease_name(), "second.relay");
    assert!(first.acquire_lease("relay-1", TTL).await.unwrap().is_some());
    assert!(
        second
            .acquire_lease("relay-2", TTL)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_record_that_is_not_an_envelope_is_parked_and_holds_back_only_its_aggregate() {
    let path = temp_db("corrupt");
    let store = SqliteOutboxStore::open(&path, "corrupt.relay").unwrap();
    let positions = commit(&path, &["a", "b", "a"]);
    let db = Connection::open(&path).unwrap();
    db.execute(
        "UPDATE dovetail_outbox SET envelope = '{\"not\": \"an envelope\"}' WHERE position = ?1",
        params![i64::try_from(positions[0]).unwrap()],
    )
    .unwrap();

    let ready = store.fetch_ready(10).await.unwrap();
    assert_eq!(
        ready.iter().map(|r| r.position).collect::<Vec<_>>(),
        [positions[1]]
    );
    let backlog = store.backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.parked), (3, 1));
    let reason: String = db
        .query_row(
            "SELECT last_error FROM dovetail_outbox WHERE position = ?1",
            params![i64::try_from(positions[0]).unwrap()],
            |row| row.get(0),
        )
        .unwrap();
    assert!(reason.starts_with("not a valid envelope"), "{reason}");
}

#[tokio::test]
async fn failures_keep_their_reason_and_retry_time() {
    let path = temp_db("reason");
    let store = SqliteOutboxStore::open(&path, "reason.relay").unwrap();
    let positions = commit(&path, &["a"]);
    let lease = store.acquire_lease("relay-1", TTL).await.unwrap().unwrap();
    let retry_at = std::time::UNIX_EPOCH + Duration::from_millis(4_000_000_000_000);
    store
        .mark_failed(
            &lease,
            &[Failure {
                position: positions[0],
                reason: "throttled".into(),
                retry_at: Some(retry_at),
            }],
        )
        .await
        .unwrap();
    let db = Connection::open(&path).unwrap();
    let row: (i64, Option<i64>, i64, String) = db
        .query_row(
            "SELECT attempts, retry_at_ms, parked, last_error FROM dovetail_outbox",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, (1, Some(4_000_000_000_000), 0, "throttled".to_owned()));
}

#[tokio::test]
async fn opening_turns_the_file_to_wal() {
    let path = temp_db("wal");
    let _store = SqliteOutboxStore::open(&path, "wal.relay").unwrap();
    let db = Connection::open(&path).unwrap();
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn opening_a_file_that_cannot_be_created_says_where() {
    let path = std::env::temp_dir()
        .join(format!(
            "dovetail-outbox-missing-{}",
            uuid::Uuid::new_v4().simple()
        ))
        .join("nested")
        .join("service.db");
    let error = SqliteOutboxStore::open(&path, "relay").unwrap_err();
    match &error {
        OutboxError::Storage { .. } => {
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected Storage, got {other:?}"),
    }
}
