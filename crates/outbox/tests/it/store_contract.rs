//! The rules of `OutboxStore` (see its trait docs), checked against every implementation
//! with one generic suite: commit order, per-aggregate blocking behind parked and
//! retry-waiting records, deletion of published records, fencing, unpark and backlog.
//!
//! The stores commit differently (the memory store takes envelopes, SQLite stamps them in
//! a unit of work), so each is driven through a small [`Harness`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dovetail_outbox::{
    Failure, MemoryOutboxStore, OutboxError, OutboxRecord, OutboxStore, Position, RelayLease,
};

use crate::support::envelope;

/// How a suite commits events to a store and reaches it.
pub(crate) trait Harness {
    /// The store under test.
    type Store: OutboxStore;

    /// The store.
    fn store(&self) -> &Self::Store;

    /// Commits one event about each policy id in `policies`, in order, in one commit,
    /// with the next sequence of each policy; returns their positions.
    async fn commit(&self, policies: &[&str]) -> Vec<Position>;
}

/// The memory store, with the sequences a unit of work would stamp.
pub(crate) struct MemoryHarness {
    store: MemoryOutboxStore,
    versions: Mutex<HashMap<String, u64>>,
}

impl MemoryHarness {
    pub(crate) fn new() -> Self {
        Self {
            store: MemoryOutboxStore::new(),
            versions: Mutex::new(HashMap::new()),
        }
    }
}

impl Harness for MemoryHarness {
    type Store = MemoryOutboxStore;

    fn store(&self) -> &MemoryOutboxStore {
        &self.store
    }

    async fn commit(&self, policies: &[&str]) -> Vec<Position> {
        let mut versions = self.versions.lock().unwrap();
        let envelopes = policies
            .iter()
            .map(|id| {
                let version = versions.entry((*id).to_owned()).or_insert(0);
                *version += 1;
                envelope(id, *version)
            })
            .collect();
        self.store.commit(envelopes)
    }
}

/// The SQLite store, fed by units of work on the service's own connection.
#[cfg(feature = "sqlite")]
pub(crate) struct SqliteHarness {
    store: dovetail_outbox::sqlite::SqliteOutboxStore,
    outbox: dovetail_outbox::sqlite::SqliteOutbox,
    service: Mutex<rusqlite::Connection>,
}

#[cfg(feature = "sqlite")]
impl SqliteHarness {
    pub(crate) fn new() -> Self {
        use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
        let path = crate::support::temp_db("contract");
        let store = SqliteOutboxStore::open(&path, "contract.relay").unwrap();
        Self {
            store,
            outbox: SqliteOutbox::new(OutboxConfig::new(crate::support::source())),
            service: Mutex::new(rusqlite::Connection::open(&path).unwrap()),
        }
    }
}

#[cfg(feature = "sqlite")]
impl Harness for SqliteHarness {
    type Store = dovetail_outbox::sqlite::SqliteOutboxStore;

    fn store(&self) -> &Self::Store {
        &self.store
    }

    async fn commit(&self, policies: &[&str]) -> Vec<Position> {
        use crate::support::{changed, policy};
        use dovetail_events::envelope::EventMetadata;
        use dovetail_outbox::ExpectedVersion;

        let mut service = self.service.lock().unwrap();
        let mut uow = self.outbox.begin(&mut service).unwrap();
        for id in policies {
            uow.append(
                policy(id),
                ExpectedVersion::Any,
                &changed(id, "contract"),
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
}

const TTL: Duration = Duration::from_secs(30);

async fn lease<H: Harness>(harness: &H, owner: &str) -> RelayLease {
    harness
        .store()
        .acquire_lease(owner, TTL)
        .await
        .unwrap()
        .expect("the lease is free")
}

async fn ready<H: Harness>(harness: &H) -> Vec<OutboxRecord> {
    harness.store().fetch_ready(1_000).await.unwrap()
}

async fn ready_positions<H: Harness>(harness: &H) -> Vec<Position> {
    ready(harness).await.iter().map(|r| r.position).collect()
}

fn park(position: Position) -> Failure {
    Failure {
        position,
        reason: "the broker refused it".to_owned(),
        retry_at: None,
    }
}

fn retry(position: Position, at: SystemTime) -> Failure {
    Failure {
        position,
        reason: "the broker was unavailable".to_owned(),
        retry_at: Some(at),
    }
}

/// `fetch_ready` answers in commit order, each aggregate in sequence order, up to `limit`.
pub(crate) async fn fetches_in_commit_order<H: Harness>(harness: H) {
    let mut positions = harness.commit(&["a", "b"]).await;
    positions.extend(harness.commit(&["a"]).await);
    positions.extend(harness.commit(&["c", "a"]).await);
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));

    let records = ready(&harness).await;
    assert_eq!(
        records.iter().map(|r| r.position).collect::<Vec<_>>(),
        positions
    );
    let sequences_of_a: Vec<u64> = records
        .iter()
        .filter(|r| r.envelope.aggregate_id().as_str() == "a")
        .map(|r| r.envelope.sequence().get())
        .collect();
    assert_eq!(sequences_of_a, [1, 2, 3]);
    assert!(records.iter().all(|r| r.attempts == 0));

    let first_two = harness.store().fetch_ready(2).await.unwrap();
    assert_eq!(
        first_two.iter().map(|r| r.position).collect::<Vec<_>>(),
        positions[..2]
    );
}

/// A parked record holds back the later records of its aggregate, and only those, until
/// it is unparked.
pub(crate) async fn parked_record_holds_back_its_aggregate<H: Harness>(harness: H) {
    let p = harness.commit(&["a", "b", "a", "b"]).await;
    let lease = lease(&harness, "relay-1").await;
    harness
        .store()
        .mark_failed(&lease, &[park(p[0])])
        .await
        .unwrap();
    assert_eq!(ready_positions(&harness).await, [p[1], p[3]]);

    assert_eq!(harness.store().unpark_all().await.unwrap(), 1);
    let records = ready(&harness).await;
    assert_eq!(records.iter().map(|r| r.position).collect::<Vec<_>>(), p);
    assert_eq!(records[0].attempts, 1);
    assert_eq!(harness.store().unpark_all().await.unwrap(), 0);
}

/// A record waiting for its retry time holds back itself and its aggregate's later
/// records; once the time has come, all are ready again, in order.
pub(crate) async fn retry_wait_holds_back_its_aggregate<H: Harness>(harness: H) {
    let p = harness.commit(&["a", "a", "b"]).await;
    let lease = lease(&harness, "relay-1").await;
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    harness
        .store()
        .mark_failed(&lease, &[retry(p[0], in_an_hour)])
        .await
        .unwrap();
    assert_eq!(ready_positions(&harness).await, [p[2]]);

    // The second record failing too changes nothing for `b`.
    harness
        .store()
        .mark_failed(&lease, &[retry(p[1], in_an_hour)])
        .await
        .unwrap();
    assert_eq!(ready_positions(&harness).await, [p[2]]);

    let a_second_ago = SystemTime::now() - Duration::from_secs(1);
    harness
        .store()
        .mark_failed(&lease, &[retry(p[0], a_second_ago)])
        .await
        .unwrap();
    // p[1] still waits for its own retry time.
    assert_eq!(ready_positions(&harness).await, [p[0], p[2]]);
    harness
        .store()
        .mark_failed(&lease, &[retry(p[1], a_second_ago)])
        .await
        .unwrap();
    let records = ready(&harness).await;
    assert_eq!(records.iter().map(|r| r.position).collect::<Vec<_>>(), p);
    assert_eq!(
        records.iter().map(|r| r.attempts).collect::<Vec<_>>(),
        [2, 2, 0]
    );
}

/// A record whose retry time passes while the relay waits becomes ready by itself.
pub(crate) async fn retry_time_passes<H: Harness>(harness: H) {
    let p = harness.commit(&["a"]).await;
    let lease = lease(&harness, "relay-1").await;
    let soon = SystemTime::now() + Duration::from_millis(500);
    harness
        .store()
        .mark_failed(&lease, &[retry(p[0], soon)])
        .await
        .unwrap();
    assert!(ready(&harness).await.is_empty());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(ready_positions(&harness).await, p);
}

/// Published records are deleted: not fetched again, not counted.
pub(crate) async fn published_records_are_deleted<H: Harness>(harness: H) {
    let p = harness.commit(&["a", "a", "b"]).await;
    let lease = lease(&harness, "relay-1").await;
    harness
        .store()
        .mark_published(&lease, &[p[0], p[2]])
        .await
        .unwrap();
    assert_eq!(ready_positions(&harness).await, [p[1]]);
    assert_eq!(harness.store().backlog().await.unwrap().pending, 1);
    // Marking again (a retried call) is harmless.
    harness
        .store()
        .mark_published(&lease, &[p[0], p[1]])
        .await
        .unwrap();
    assert!(ready(&harness).await.is_empty());
    assert_eq!(harness.store().backlog().await.unwrap().pending, 0);
}

/// The lease is granted when free, renewed for its holder with the same token, refused
/// to others while live, and granted with a higher token after a release.
pub(crate) async fn lease_is_granted_renewed_refused_and_released<H: Harness>(harness: H) {
    let store = harness.store();
    let first = store.acquire_lease("relay-1", TTL).await.unwrap().unwrap();
    assert_eq!(first.owner, "relay-1");
    assert!(first.held_until > SystemTime::now() + TTL / 2);

    let renewed = store.acquire_lease("relay-1", TTL).await.unwrap().unwrap();
    assert_eq!(renewed.fencing_token, first.fencing_token);
    assert!(renewed.held_until >= first.held_until);

    assert_eq!(store.acquire_lease("relay-2", TTL).await.unwrap(), None);

    store.release_lease(&renewed).await.unwrap();
    let second = store.acquire_lease("relay-2", TTL).await.unwrap().unwrap();
    assert!(second.fencing_token > first.fencing_token);
    assert_eq!(store.acquire_lease("relay-1", TTL).await.unwrap(), None);

    // Releasing a lease already lost is not an error, and does not free the lease.
    store.release_lease(&first).await.unwrap();
    assert_eq!(store.acquire_lease("relay-1", TTL).await.unwrap(), None);
}

/// A lapsed lease is taken over with a higher token; the old holder's writes are refused
/// with `LeaseLost` and change nothing.
pub(crate) async fn stale_lease_is_fenced_off<H: Harness>(harness: H) {
    let p = harness.commit(&["a", "b"]).await;
    let store = harness.store();
    let old = store
        .acquire_lease("relay-1", Duration::from_millis(500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.acquire_lease("relay-2", TTL).await.unwrap(),
        None,
        "a live lease is not taken over"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let new = store.acquire_lease("relay-2", TTL).await.unwrap().unwrap();
    assert!(new.fencing_token > old.fencing_token);

    let published = store.mark_published(&old, &[p[0]]).await;
    assert!(
        matches!(published, Err(OutboxError::LeaseLost { .. })),
        "{published:?}"
    );
    let failed = store.mark_failed(&old, &[park(p[1])]).await;
    assert!(
        matches!(failed, Err(OutboxError::LeaseLost { .. })),
        "{failed:?}"
    );
    let records = ready(&harness).await;
    assert_eq!(records.iter().map(|r| r.position).collect::<Vec<_>>(), p);
    assert!(records.iter().all(|r| r.attempts == 0));
    assert_eq!(store.backlog().await.unwrap().parked, 0);

    // The old holder coming back finds the lease taken.
    assert_eq!(store.acquire_lease("relay-1", TTL).await.unwrap(), None);
    // The new holder's writes go through.
    store.mark_published(&new, &p).await.unwrap();
    assert!(ready(&harness).await.is_empty());
}

/// A released lease's writes are refused too.
pub(crate) async fn released_lease_is_fenced_off<H: Harness>(harness: H) {
    let p = harness.commit(&["a"]).await;
    let store = harness.store();
    let lease = lease(&harness, "relay-1").await;
    store.release_lease(&lease).await.unwrap();
    let published = store.mark_published(&lease, &p).await;
    assert!(
        matches!(published, Err(OutboxError::LeaseLost { .. })),
        "{published:?}"
    );
    assert_eq!(ready_positions(&harness).await, p);
}

/// The backlog counts pending (parked included) and parked records, and ages the oldest.
pub(crate) async fn backlog_reports_the_lag<H: Harness>(harness: H) {
    let empty = harness.store().backlog().await.unwrap();
    assert_eq!(
        (empty.pending, empty.parked, empty.oldest_pending),
        (0, 0, None)
    );

    let p = harness.commit(&["a", "b", "c"]).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lease = lease(&harness, "relay-1").await;
    harness
        .store()
        .mark_failed(&lease, &[park(p[1])])
        .await
        .unwrap();
    let backlog = harness.store().backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.parked), (3, 1));
    let oldest = backlog.oldest_pending.unwrap();
    assert!(
        oldest >= Duration::from_millis(40) && oldest < Duration::from_secs(10),
        "{oldest:?}"
    );

    harness.store().unpark_all().await.unwrap();
    harness.store().mark_published(&lease, &p).await.unwrap();
    let drained = harness.store().backlog().await.unwrap();
    assert_eq!(
        (drained.pending, drained.parked, drained.oldest_pending),
        (0, 0, None)
    );
}

/// One `#[tokio::test]` per rule, for the harness `$harness` (an expression, evaluated in
/// each async test, so it may `.await`).
macro_rules! store_contract_tests {
    ($module:ident, $harness:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test]
            async fn fetches_in_commit_order() {
                $crate::store_contract::fetches_in_commit_order($harness).await;
            }

            #[tokio::test]
            async fn parked_record_holds_back_its_aggregate() {
                $crate::store_contract::parked_record_holds_back_its_aggregate($harness).await;
            }

            #[tokio::test]
            async fn retry_wait_holds_back_its_aggregate() {
                $crate::store_contract::retry_wait_holds_back_its_aggregate($harness).await;
            }

            #[tokio::test]
            async fn retry_time_passes() {
                $crate::store_contract::retry_time_passes($harness).await;
            }

            #[tokio::test]
            async fn published_records_are_deleted() {
                $crate::store_contract::published_records_are_deleted($harness).await;
            }

            #[tokio::test]
            async fn lease_is_granted_renewed_refused_and_released() {
                $crate::store_contract::lease_is_granted_renewed_refused_and_released($harness)
                    .await;
            }

            #[tokio::test]
            async fn stale_lease_is_fenced_off() {
                $crate::store_contract::stale_lease_is_fenced_off($harness).await;
            }

            #[tokio::test]
            async fn released_lease_is_fenced_off() {
                $crate::store_contract::released_lease_is_fenced_off($harness).await;
            }

            #[tokio::test]
            async fn backlog_reports_the_lag() {
                $crate::store_contract::backlog_reports_the_lag($harness).await;
            }
        }
    };
}

#[cfg_attr(not(feature = "dynamodb"), allow(unused_imports))]
pub(crate) use store_contract_tests;

store_contract_tests!(memory, MemoryHarness::new());
#[cfg(feature = "sqlite")]
store_contract_tests!(sqlite, SqliteHarness::new());
#[cfg(feature = "sqlite")]
store_contract_tests!(any_sqlite, AnyStoreHarness::new(SqliteHarness::new()));

/// Another harness's store seen through `AnyOutboxStore`, which must keep its promises.
#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
pub(crate) struct AnyStoreHarness<H> {
    inner: H,
    store: dovetail_outbox::AnyOutboxStore,
}

#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
impl<H> AnyStoreHarness<H>
where
    H: Harness,
    H::Store: Clone + Into<dovetail_outbox::AnyOutboxStore>,
{
    pub(crate) fn new(inner: H) -> Self {
        let store = inner.store().clone().into();
        Self { inner, store }
    }
}

#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
impl<H: Harness> Harness for AnyStoreHarness<H> {
    type Store = dovetail_outbox::AnyOutboxStore;

    fn store(&self) -> &Self::Store {
        &self.store
    }

    async fn commit(&self, policies: &[&str]) -> Vec<Position> {
        self.inner.commit(policies).await
    }
}
