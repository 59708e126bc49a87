//! The runner: runs recorded, repairs through the owner (capped, paced, not repeated
//! within the cooldown), one runner at a time under the lease, and the SQLite run store.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_consistency::{
    BoxError, Drift, Invariant, MemoryRunStore, MemoryView, Pair, Repair, RepairOutcome, RunId,
    RunLease, RunRecord, RunStatus, RunStore, Runner, RunnerConfig, RunnerError, SqliteRunStore,
    Trigger, Violation, Violations,
};
use futures_util::future::BoxFuture;

/// An owner's repair over memory views: republishing a key applies the owner's entry to
/// the replica, as the replica's consumer would on the republished event, unless the
/// events are "in flight" (`deliver` off). Batches of at most `batch` keys.
struct Republisher {
    owner: Arc<MemoryView>,
    replica: Arc<MemoryView>,
    batch: usize,
    deliver: AtomicBool,
    calls: Mutex<Vec<(Vec<String>, RunId)>>,
}

impl Republisher {
    fn new(owner: &Arc<MemoryView>, replica: &Arc<MemoryView>, batch: usize) -> Arc<Self> {
        Arc::new(Self {
            owner: Arc::clone(owner),
            replica: Arc::clone(replica),
            batch,
            deliver: AtomicBool::new(true),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<(Vec<String>, RunId)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Repair for Republisher {
    fn repair(
        &self,
        mut keys: Vec<String>,
        run: RunId,
    ) -> BoxFuture<'_, Result<RepairOutcome, BoxError>> {
        let deferred = keys.split_off(keys.len().min(self.batch));
        self.calls.lock().unwrap().push((keys.clone(), run));
        let mut outcome = RepairOutcome {
            deferred,
            ..RepairOutcome::default()
        };
        for key in keys {
            match self.owner.get(&key) {
                None => outcome
                    .skipped
                    .push((key, "no such key at the owner".into())),
                Some(entry) => {
                    if self.deliver.load(Ordering::SeqCst) {
                        self.replica.insert(entry);
                    }
                    outcome.republished.push(key);
                }
            }
        }
        Box::pin(async move { Ok(outcome) })
    }
}

fn config(owner: &str) -> RunnerConfig {
    let mut config = RunnerConfig::new(owner);
    config.check.expected_lag = Duration::ZERO;
    config.repair.pause = Duration::from_millis(1);
    config
}

fn stores(items: usize) -> (Arc<MemoryView>, Arc<MemoryView>) {
    let owner = Arc::new(MemoryView::new());
    let replica = Arc::new(MemoryView::new());
    for i in 0..items {
        owner.put(format!("policy-{i}"), 1);
        replica.put(format!("policy-{i}"), 1);
    }
    (owner, replica)
}

#[tokio::test]
async fn a_run_finds_drift_repairs_it_through_the_owner_and_records_it() {
    let (owner, replica) = stores(200);
    owner.put("policy-1", 3); // missed update
    replica.forget("policy-2"); // lost
    owner.delete("policy-3", 2); // missed delete
    replica.put("stray-1", 1); // extra
    let republisher = Republisher::new(&owner, &replica, 100);
    let store = Arc::new(MemoryRunStore::new());
    let runner = Runner::builder(Arc::clone(&store), config("a"))
        .pair(
            Pair::new(
                "policy-service",
                Arc::clone(&owner),
                "claim-service",
                Arc::clone(&replica),
            )
            .repaired_by(Arc::clone(&republisher)),
        )
        .build();

    let run = runner.run_now_requested("staff-1").await.unwrap();

    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        run.trigger,
        Trigger::Requested {
            by: "staff-1".into()
        }
    );
    let pair = &run.pairs[0];
    assert_eq!(
        (pair.source.as_str(), pair.replica.as_str()),
        ("policy-service", "claim-service")
    );
    assert_eq!(pair.counts.replica_behind, 1);
    assert_eq!(pair.counts.missing_in_replica, 1);
    assert_eq!(pair.counts.missed_delete, 1);
    assert_eq!(pair.counts.extra_in_replica, 1);
    let mut republished = pair.repair.republished.clone();
    republished.sort();
    assert_eq!(republished, ["policy-1", "policy-2", "policy-3"]);
    assert_eq!(pair.repair.skipped.len(), 1);
    assert_eq!(pair.repair.skipped[0].key, "stray-1");
    assert!(
        republisher
            .calls()
            .iter()
            .all(|(_, cause)| *cause == run.id),
        "the run is the cause"
    );
    assert_eq!(
        store.get(run.id).await.unwrap(),
        Some(run.clone()),
        "the run is recorded"
    );

    let again = runner.run_now_requested("staff-1").await.unwrap();
    assert_eq!(
        again.pairs[0].counts.total(),
        1,
        "only the extra row, which the owner cannot repair"
    );
    assert_eq!(again.pairs[0].counts.extra_in_replica, 1);
}

#[tokio::test]
async fn repairs_are_capped_per_run_and_not_repeated_within_the_cooldown() {
    let (owner, replica) = stores(100);
    for i in 0..5 {
        owner.put(format!("policy-{i}"), 2);
    }
    let republisher = Republisher::new(&owner, &replica, 2);
    republisher.deliver.store(false, Ordering::SeqCst); // the events are still on their way
    let mut config = config("a");
    config.repair.max_keys_per_run = 3;
    let runner = Runner::builder(MemoryRunStore::new(), config)
        .pair(
            Pair::new("owner", Arc::clone(&owner), "replica", Arc::clone(&replica))
                .repaired_by(Arc::clone(&republisher)),
        )
        .build();

    let first = runner.run_now_requested("staff").await.unwrap();
    assert_eq!(first.pairs[0].repair.republished.len(), 3, "the cap");
    assert_eq!(first.pairs[0].repair.postponed.len(), 2);
    let batches: Vec<usize> = republisher
        .calls()
        .iter()
        .map(|(keys, _)| keys.len())
        .collect();
    assert_eq!(batches, [2, 1], "the owner's deferred keys are sent again");

    let second = runner.run_now_requested("staff").await.unwrap();
    let mut repaired_twice = second.pairs[0].repair.republished.clone();
    repaired_twice.retain(|key| first.pairs[0].repair.republished.contains(key));
    assert!(repaired_twice.is_empty(), "within the cooldown: {second:?}");
    assert_eq!(
        second.pairs[0].repair.republished.len(),
        2,
        "the two postponed ones"
    );
    assert_eq!(second.pairs[0].repair.postponed.len(), 3);
}

#[tokio::test]
async fn replica_ahead_is_not_sent_to_the_owner_and_a_failing_owner_fails_the_run() {
    let (owner, replica) = stores(50);
    replica.put("policy-4", 9);
    let republisher = Republisher::new(&owner, &replica, 100);
    let runner = Runner::builder(MemoryRunStore::new(), config("a"))
        .pair(
            Pair::new("o", Arc::clone(&owner), "r", Arc::clone(&replica))
                .repaired_by(Arc::clone(&republisher)),
        )
        .build();
    let run = runner.run_now_requested("staff").await.unwrap();
    assert_eq!(run.pairs[0].counts.replica_ahead, 1);
    assert!(republisher.calls().is_empty());
    assert!(
        run.pairs[0].repair.skipped[0]
            .reason
            .contains("replica ahead")
    );

    struct Broken;
    impl Repair for Broken {
        fn repair(
            &self,
            _: Vec<String>,
            _: RunId,
        ) -> BoxFuture<'_, Result<RepairOutcome, BoxError>> {
            Box::pin(async { Err("the outbox is on fire".into()) })
        }
    }
    owner.put("policy-5", 2);
    let runner = Runner::builder(MemoryRunStore::new(), config("a"))
        .pair(Pair::new("o", Arc::clone(&owner), "r", Arc::clone(&replica)).repaired_by(Broken))
        .build();
    let run = runner.run_now_requested("staff").await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    let error = run.error.unwrap();
    assert!(
        error.contains("o -> r") && error.contains("the outbox is on fire"),
        "{error}"
    );
}

/// An invariant that reports one violation and notes how many runs are inside it at once.
struct Probe {
    inside: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
    takes: Duration,
}

impl Invariant for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    fn source(&self) -> &str {
        "claim-service"
    }
    fn against(&self) -> &str {
        "policy-service"
    }
    fn kinds(&self) -> &[&'static str] {
        &["policy_missing"]
    }
    fn violations(&self, _limit: usize) -> BoxFuture<'_, Result<Violations, BoxError>> {
        Box::pin(async move {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.takes).await;
            self.inside.fetch_sub(1, Ordering::SeqCst);
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(Violations {
                counts: vec![("policy_missing".into(), 1)],
                listed: vec![Violation {
                    key: "claim-1".into(),
                    kind: "policy_missing".into(),
                    detail:
                        "claim claim-1 names policy p-9, which the policy service does not have"
                            .into(),
                }],
            })
        })
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dovetail-consistency-{name}-{}", RunId::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_sharing_a_sqlite_store_never_run_at_once() {
    let path = scratch("two-runners");
    two_runners_never_run_at_once(|| SqliteRunStore::open(&path).unwrap()).await;
}

/// Two runners, each with its own handle on the store `open` opens, run for two
/// seconds with a schedule due all the time: no two runs overlap, both take turns.
pub(crate) async fn two_runners_never_run_at_once<S: RunStore + 'static>(open: impl Fn() -> S) {
    let (inside, most, runs) = (
        Arc::default(),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let runner = |owner: &str| {
        let mut config = config(owner);
        config.interval = Duration::from_millis(20);
        config.jitter = Duration::ZERO;
        config.poll_interval = Duration::from_millis(5);
        config.lease_ttl = Duration::from_millis(600);
        Runner::builder(open(), config)
            .invariant(Probe {
                inside: Arc::clone(&inside),
                most: Arc::clone(&most),
                runs: Arc::clone(&runs),
                takes: Duration::from_millis(40),
            })
            .build()
    };
    let (a, b) = (runner("a"), runner("b"));
    let stop = stop_after(Duration::from_secs(2));
    let (stop_a, stop_b) = (stop.clone(), stop);
    tokio::join!(
        a.run_until_stopped(stop_a.wait()),
        b.run_until_stopped(stop_b.wait())
    );

    assert_eq!(most.load(Ordering::SeqCst), 1, "never two runs at once");
    assert!(
        runs.load(Ordering::SeqCst) >= 5,
        "runs happened: {}",
        runs.load(Ordering::SeqCst)
    );
    let records = open().latest(1_000).await.unwrap();
    let mut spans: Vec<(u64, u64)> = records
        .iter()
        .filter(|run| run.status == RunStatus::Succeeded)
        .map(|run| (run.started_at_ms.unwrap(), run.finished_at_ms.unwrap()))
        .collect();
    spans.sort_unstable();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "recorded runs overlap: {spans:?}"
    );
    let runners: std::collections::BTreeSet<_> =
        records.iter().filter_map(|r| r.runner.clone()).collect();
    assert_eq!(runners.len(), 2, "both instances took turns: {runners:?}");
    for run in &records {
        match run.status {
            RunStatus::Succeeded => assert_eq!(run.invariants[0].violations_found, 1),
            // The run in progress when the runners stopped.
            _ => assert_eq!(
                run.error.as_deref(),
                Some("the run stopped: the runner was stopped"),
                "{run:?}"
            ),
        }
    }
    assert!(
        records
            .iter()
            .filter(|run| run.status != RunStatus::Succeeded)
            .count()
            <= 1
    );
}

/// A stop signal both runners wait on, fired after `after`.
#[derive(Clone)]
struct Stop(Arc<tokio::sync::Notify>, Arc<AtomicBool>);

impl Stop {
    async fn wait(self) {
        while !self.1.load(Ordering::SeqCst) {
            let notified = self.0.notified();
            if self.1.load(Ordering::SeqCst) {
                break;
            }
            notified.await;
        }
    }
}

fn stop_after(after: Duration) -> Stop {
    let stop = Stop(Arc::default(), Arc::default());
    let fire = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        fire.1.store(true, Ordering::SeqCst);
        fire.0.notify_waiters();
    });
    stop
}

/// A run store whose lease calls fail while `down` is set.
struct Flaky {
    inner: MemoryRunStore,
    down: AtomicBool,
}

impl RunStore for Flaky {
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Err("the lease table is unreachable".into()) });
        }
        self.inner.acquire_lease(owner, ttl)
    }
    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>> {
        self.inner.release_lease(owner)
    }
    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        self.inner.save(record)
    }
    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>> {
        self.inner.get(id)
    }
    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        self.inner.latest(limit)
    }
    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        self.inner.queued()
    }
    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        self.inner.last_scheduled_ms()
    }
}

#[tokio::test]
async fn a_run_whose_lease_cannot_be_renewed_stops_before_it_lapses() {
    let store = Arc::new(Flaky {
        inner: MemoryRunStore::new(),
        down: AtomicBool::new(false),
    });
    let mut config = config("a");
    config.lease_ttl = Duration::from_millis(200);
    let runs = Arc::new(AtomicUsize::new(0));
    let runner = Runner::builder(Arc::clone(&store), config)
        .invariant(Probe {
            inside: Arc::default(),
            most: Arc::default(),
            runs: Arc::clone(&runs),
            takes: Duration::from_secs(2),
        })
        .build();
    let started = tokio::time::Instant::now();
    let down = Arc::clone(&store);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        down.down.store(true, Ordering::SeqCst);
    });
    let run = runner.run_now_requested("staff").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "stopped at the lapse: {:?}",
        started.elapsed()
    );
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.as_deref().unwrap().contains("lapsed"), "{run:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        0,
        "the invariant was cut short"
    );

    // Another instance cannot run while a lease is held.
    store.down.store(false, Ordering::SeqCst);
    store
        .inner
        .acquire_lease("b", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        runner.run_now_requested("staff").await,
        Err(RunnerError::LeaseHeld)
    ));
}

#[tokio::test]
async fn a_requested_run_is_run_by_the_scheduler_and_can_be_followed() {
    let (owner, replica) = stores(10);
    replica.forget("policy-3");
    let mut config = config("a");
    config.interval = Duration::from_secs(3600);
    let store = Arc::new(MemoryRunStore::new());
    // A scheduled run happened just now: the schedule is not due.
    let mut scheduled = RunRecord::queued(Trigger::Scheduled, now_ms());
    scheduled.status = RunStatus::Succeeded;
    store.save(&scheduled).await.unwrap();
    let runner = Runner::builder(Arc::clone(&store), config)
        .pair(Pair::new(
            "o",
            Arc::clone(&owner),
            "r",
            Arc::clone(&replica),
        ))
        .build();
    let background = runner.clone();
    let stop = stop_after(Duration::from_secs(30));
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { background.run_until_stopped(stop.wait()).await }
    });

    let queued = runner.request("staff-7").await.unwrap();
    assert_eq!(queued.status, RunStatus::Queued);
    let finished = loop {
        let record = runner.get(queued.id).await.unwrap().unwrap();
        if record.status.is_finished() {
            break record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(finished.pairs[0].counts.missing_in_replica, 1);
    assert_eq!(
        finished.pairs[0].differences[0].drift,
        Drift::MissingInReplica { source_version: 1 }
    );
    assert!(!finished.pairs[0].repair.attempted, "no repair configured");
    assert_eq!(
        runner.latest(10).await.unwrap().len(),
        2,
        "no scheduled run was due"
    );
    stop.1.store(true, Ordering::SeqCst);
    stop.0.notify_waiters();
    handle.await.unwrap();
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_sqlite_run_store_keeps_runs_and_a_fenced_lease() {
    let path = scratch("store");
    keeps_runs_and_a_fenced_lease(|| SqliteRunStore::open(&path).unwrap()).await;
}

/// What every run store does, on handles `open` opens on one store: a lease one owner
/// holds at a time, renewed by its holder, taken over once lapsed or released with a
/// higher token; records saved, read, listed newest first; queued runs oldest first;
/// the latest scheduled run's time.
pub(crate) async fn keeps_runs_and_a_fenced_lease<S: RunStore>(open: impl Fn() -> S) {
    let store = open();
    let ttl = Duration::from_millis(300);
    let first = store.acquire_lease("a", ttl).await.unwrap().unwrap();
    assert_eq!(
        store.acquire_lease("b", ttl).await.unwrap(),
        None,
        "a holds it"
    );
    assert_eq!(
        store.acquire_lease("a", ttl).await.unwrap(),
        Some(first),
        "a renews it"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = store.acquire_lease("b", ttl).await.unwrap().unwrap();
    assert!(taken.token > first.token, "a new holder, a higher token");
    store.release_lease("b").await.unwrap();
    let again = open().acquire_lease("a", ttl).await.unwrap().unwrap();
    assert!(
        again.token > taken.token,
        "released: another process takes it at once"
    );

    let mut scheduled = RunRecord::queued(Trigger::Scheduled, 1_000);
    let requested = RunRecord::queued(Trigger::Requested { by: "s".into() }, 2_000);
    store.save(&scheduled).await.unwrap();
    store.save(&requested).await.unwrap();
    assert_eq!(
        store.queued().await.unwrap(),
        [scheduled.clone(), requested.clone()]
    );
    scheduled.status = RunStatus::Succeeded;
    store.save(&scheduled).await.unwrap();
    assert_eq!(
        store.queued().await.unwrap(),
        std::slice::from_ref(&requested)
    );
    assert_eq!(
        store.get(scheduled.id).await.unwrap(),
        Some(scheduled.clone())
    );
    assert_eq!(store.get(RunId::generate()).await.unwrap(), None);
    assert_eq!(store.latest(1).await.unwrap(), [requested]);
    assert_eq!(store.last_scheduled_ms().await.unwrap(), Some(1_000));
}
