//! Running checks for real (feature `runner`): a [`Runner`] checks each of its [`Pair`]s
//! and [`Invariant`]s on a schedule and on request, one runner at a time across
//! instances under a lease, repairs through the owners, records every run in a
//! [`RunStore`] and reports metrics.
//!
//! - [`Runner::run_until_stopped`]: every [`poll_interval`](RunnerConfig::poll_interval)
//!   it looks for runs asked for ([`Runner::request`], from any instance) and whether the
//!   schedule is due ([`interval`](RunnerConfig::interval) after the latest scheduled run
//!   any instance recorded, plus a random part of [`jitter`](RunnerConfig::jitter)); if
//!   so it takes the lease, runs, and gives the lease up. While it runs it renews the lease
//!   every third of [`lease_ttl`](RunnerConfig::lease_ttl); if the lease is lost (another
//!   runner has it) or cannot be renewed before it lapses, the run stops at once and is
//!   recorded as failed, so two runners never run together for longer than the store's
//!   clock allows.
//! - Each pair: one [`Check`]; then each [`Invariant`]; then each pair's
//!   differences go to the owner's [`Repair`] (except `ReplicaAhead`, which republishing cannot fix), at most
//!   [`RepairPolicy::max_keys_per_run`] keys a run, a key repaired less than
//!   [`RepairPolicy::cooldown`] ago postponed (its events may still be on their way), and
//!   [`RepairPolicy::pause`] between the owner's batches.
//! - Metrics: see [`metrics`].
//!
//! # Example
//!
//! ```
//! use dovetail_consistency::{MemoryRunStore, MemoryView, Pair, Runner, RunnerConfig, RunStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), dovetail_consistency::RunnerError> {
//! let owner = MemoryView::new();
//! let replica = MemoryView::new();
//! owner.put("policy-1", 2);
//! replica.put("policy-1", 1);
//! let runner = Runner::builder(MemoryRunStore::new(), RunnerConfig::new("instance-a"))
//!     .pair(Pair::new("policy-service", owner, "claim-service", replica))
//!     .build();
//! let run = runner.run_now_requested("staff-1").await?;
//! assert_eq!(run.status, RunStatus::Succeeded);
//! assert_eq!(run.pairs[0].counts.replica_behind, 1);
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "http")]
pub mod http;
pub mod metrics;
mod pair;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::check::{Check, CheckConfig};
use crate::error::BoxError;
use crate::report::{CheckReport, Drift};

#[cfg(feature = "dynamodb")]
pub use self::dynamodb::DynamoDbRunStore;
pub use self::pair::{Invariant, Pair, Repair, RepairOutcome, SharedView, Violation, Violations};
pub use self::record::{
    InvariantRun, PairRun, RepairSummary, RunId, RunRecord, RunStatus, SkippedKey, Trigger,
};
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteRunStore;
pub use self::store::{MemoryRunStore, RunLease, RunStore};

/// How a [`Runner`] repairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPolicy {
    /// Whether runs repair at all (default `true`); off, they only report.
    pub enabled: bool,
    /// The most keys one run sends to owners, over all pairs (default 1,000); the rest
    /// are postponed to later runs.
    pub max_keys_per_run: usize,
    /// The pause between two calls to an owner's repair (default 100 ms), so repairing
    /// does not crowd out the owner's own writes.
    pub pause: Duration,
    /// A key repaired less than this long ago is not repaired again (default 2 minutes):
    /// its republished event may still be on its way to the replica.
    pub cooldown: Duration,
}

impl Default for RepairPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_keys_per_run: 1_000,
            pause: Duration::from_millis(100),
            cooldown: Duration::from_secs(120),
        }
    }
}

/// How a [`Runner`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// This instance's name in the lease and the run records (unique per instance).
    pub owner: String,
    /// Time between scheduled runs (default 5 minutes).
    pub interval: Duration,
    /// Up to this much is added at random to each interval (default 30 s), so instances
    /// and services do not all check at once.
    pub jitter: Duration,
    /// How long the lease lasts unless renewed (default 30 s).
    pub lease_ttl: Duration,
    /// How often the runner looks for requested runs and a due schedule (default 2 s).
    pub poll_interval: Duration,
    /// How each check runs.
    pub check: CheckConfig,
    /// How runs repair.
    pub repair: RepairPolicy,
    /// How many differences (and violations) a run record lists per pair (default 100);
    /// the counts cover all.
    pub differences_kept: usize,
}

impl RunnerConfig {
    /// The defaults, for the instance `owner`.
    pub fn new(owner: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_secs(2),
            check: CheckConfig::default(),
            repair: RepairPolicy::default(),
            differences_kept: 100,
        }
    }
}

/// What went wrong asking a [`Runner`] for something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The run store failed.
    #[error("{0}; the run store must be reachable to record runs: check it and retry")]
    Store(BoxError),
    /// Another runner holds the lease, so this one may not run now.
    #[error(
        "another runner holds the lease; ask with `request` instead, and the runner holding \
         the lease runs it"
    )]
    LeaseHeld,
}

/// Builds a [`Runner`]: its store, configuration, pairs and invariants.
pub struct RunnerBuilder {
    store: Arc<dyn RunStore>,
    config: RunnerConfig,
    pairs: Vec<Pair>,
    invariants: Vec<Arc<dyn Invariant>>,
}

impl RunnerBuilder {
    /// Adds a pair to check (in this order).
    #[must_use]
    pub fn pair(mut self, pair: Pair) -> Self {
        self.pairs.push(pair);
        self
    }

    /// Adds an invariant to check after the pairs.
    #[must_use]
    pub fn invariant(mut self, invariant: impl Invariant + 'static) -> Self {
        self.invariants.push(Arc::new(invariant));
        self
    }

    /// The runner.
    pub fn build(self) -> Runner {
        metrics::describe_metrics();
        Runner {
            inner: Arc::new(Inner {
                store: self.store,
                config: self.config,
                pairs: self.pairs,
                invariants: self.invariants,
                wake: Notify::new(),
                repaired_at: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// Runs checks on a schedule and on request; see the [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RunStore>,
    config: RunnerConfig,
    pairs: Vec<Pair>,
    invariants: Vec<Arc<dyn Invariant>>,
    wake: Notify,
    /// When each (pair, key) was last repaired by this runner.
    repaired_at: Mutex<HashMap<(usize, String), Instant>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.inner.config)
            .field("pairs", &self.inner.pairs)
            .field("invariants", &self.inner.invariants.len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Runner {
    /// A runner recording in `store`.
    pub fn builder(store: impl RunStore + 'static, config: RunnerConfig) -> RunnerBuilder {
        RunnerBuilder {
            store: Arc::new(store),
            config,
            pairs: Vec::new(),
            invariants: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.inner.config
    }

    /// Asks for a run by `by` (a staff member's subject): recorded as queued, run by the
    /// runner holding the lease within a [`poll_interval`](RunnerConfig::poll_interval)
    /// (at once when it is this one).
    ///
    /// # Errors
    /// [`RunnerError::Store`] when the run cannot be recorded.
    pub async fn request(&self, by: &str) -> Result<RunRecord, RunnerError> {
        let record = RunRecord::queued(Trigger::Requested { by: by.to_owned() }, now_ms());
        self.inner
            .store
            .save(&record)
            .await
            .map_err(RunnerError::Store)?;
        self.inner.wake.notify_one();
        Ok(record)
    }

    /// The record of run `id`.
    ///
    /// # Errors
    /// [`RunnerError::Store`] when the store cannot be read.
    pub async fn get(&self, id: RunId) -> Result<Option<RunRecord>, RunnerError> {
        self.inner.store.get(id).await.map_err(RunnerError::Store)
    }

    /// The latest `limit` runs, newest first.
    ///
    /// # Errors
    /// [`RunnerError::Store`] when the store cannot be read.
    pub async fn latest(&self, limit: usize) -> Result<Vec<RunRecord>, RunnerError> {
        self.inner
            .store
            .latest(limit)
            .await
            .map_err(RunnerError::Store)
    }

    /// Runs once now, for `by`, if the lease is free, and answers the finished record.
    ///
    /// # Errors
    /// [`RunnerError::LeaseHeld`] when another runner holds the lease;
    /// [`RunnerError::Store`] when the store fails.
    pub async fn run_now_requested(&self, by: &str) -> Result<RunRecord, RunnerError> {
        let record = RunRecord::queued(Trigger::Requested { by: by.to_owned() }, now_ms());
        let Some(held) = self.take_lease().await? else {
            return Err(RunnerError::LeaseHeld);
        };
        let finished = self.execute(record, held, &CancellationToken::new()).await;
        self.give_up_lease().await;
        finished
    }

    /// Runs requested and scheduled runs until `stop` completes (see the
    /// [module docs](self)). A run in progress when `stop` completes is cut short and
    /// recorded as failed.
    pub async fn run_until_stopped(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut jitter = self.draw_jitter();
        let cut = CancellationToken::new();
        loop {
            {
                let mut round = std::pin::pin!(self.round(&mut jitter, &cut));
                tokio::select! {
                    biased;
                    () = &mut stop => {
                        // Cut the run short, and let it record itself as failed.
                        cut.cancel();
                        round.await;
                        break;
                    }
                    () = &mut round => {}
                }
            }
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
        self.give_up_lease().await;
    }

    fn draw_jitter(&self) -> Duration {
        let max = millis(self.inner.config.jitter);
        Duration::from_millis(if max == 0 { 0 } else { fastrand::u64(0..=max) })
    }

    /// One look for work: requested runs, then the schedule.
    async fn round(&self, jitter: &mut Duration, cut: &CancellationToken) {
        let (queued, due) = match self.work().await {
            Ok(work) => work,
            Err(error) => {
                tracing::warn!(%error, "consistency runner: cannot read the run store; trying again");
                return;
            }
        };
        if queued.is_empty() && !due(*jitter) {
            return;
        }
        let held = match self.take_lease().await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "consistency runner: cannot take the lease; trying again");
                return;
            }
        };
        for record in queued {
            // Another instance may have run it between our read and our lease.
            if let Ok(Some(stored)) = self.inner.store.get(record.id).await
                && stored.status == RunStatus::Queued
            {
                self.log(self.execute(stored, held, cut).await);
            }
        }
        // Read the schedule again under the lease: another runner may just have run it.
        if !cut.is_cancelled() && matches!(self.work().await, Ok((_, due)) if due(*jitter)) {
            let record = RunRecord::queued(Trigger::Scheduled, now_ms());
            self.log(self.execute(record, held, cut).await);
            *jitter = self.draw_jitter();
        }
        self.give_up_lease().await;
    }

    fn log(&self, finished: Result<RunRecord, RunnerError>) {
        match finished {
            Ok(run) => {
                tracing::info!(run = %run.id, status = ?run.status, findings = run.findings(), "consistency run finished");
            }
            Err(error) => tracing::warn!(%error, "consistency run not recorded"),
        }
    }

    /// The queued runs, and whether the schedule is due given a jitter.
    async fn work(&self) -> Result<(Vec<RunRecord>, impl Fn(Duration) -> bool + use<>), BoxError> {
        let queued = self.inner.store.queued().await?;
        let last = self.inner.store.last_scheduled_ms().await?;
        let interval = millis(self.inner.config.interval);
        let now = now_ms();
        let due = move |jitter: Duration| match last {
            None => true,
            Some(last) => now >= last.saturating_add(interval).saturating_add(millis(jitter)),
        };
        Ok((queued, due))
    }

    /// The lease, with when the call that got it was sent (its time to live counts
    /// from there).
    async fn take_lease(&self) -> Result<Option<(RunLease, Instant)>, RunnerError> {
        let config = &self.inner.config;
        let sent = Instant::now();
        let lease = self
            .inner
            .store
            .acquire_lease(&config.owner, config.lease_ttl)
            .await
            .map_err(RunnerError::Store)?;
        Ok(lease.map(|lease| (lease, sent)))
    }

    async fn give_up_lease(&self) {
        if let Err(error) = self
            .inner
            .store
            .release_lease(&self.inner.config.owner)
            .await
        {
            tracing::warn!(%error, "consistency runner: cannot give up the lease; it lapses by itself");
        }
    }

    /// Runs `record` under `lease`: the checks while the lease is kept, then the record.
    async fn execute(
        &self,
        mut record: RunRecord,
        (lease, taken_at): (RunLease, Instant),
        cut: &CancellationToken,
    ) -> Result<RunRecord, RunnerError> {
        let started = Instant::now();
        record.status = RunStatus::Running;
        record.started_at_ms = Some(now_ms());
        record.runner = Some(self.inner.config.owner.clone());
        self.inner
            .store
            .save(&record)
            .await
            .map_err(RunnerError::Store)?;

        let lost = {
            let checks = self.check_all(&mut record);
            tokio::select! {
                biased;
                () = cut.cancelled() => Some("the runner was stopped".to_owned()),
                reason = self.keep_lease(lease, taken_at) => Some(reason),
                () = checks => None,
            }
        };
        let failure =
            lost.map(|reason| format!("the run stopped: {reason}"))
                .or_else(|| {
                    let failed: Vec<String> = record
                        .pairs
                        .iter()
                        .filter_map(|pair| {
                            pair.error
                                .as_ref()
                                .map(|e| format!("{} -> {}: {e}", pair.source, pair.replica))
                        })
                        .chain(record.invariants.iter().filter_map(|inv| {
                            inv.error.as_ref().map(|e| format!("{}: {e}", inv.name))
                        }))
                        .collect();
                    (!failed.is_empty()).then(|| failed.join("; "))
                });
        record.status = if failure.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        record.error = failure;
        let finished_at = now_ms();
        record.finished_at_ms = Some(finished_at);
        metrics::run_finished(
            record.status == RunStatus::Succeeded,
            started.elapsed().as_secs_f64(),
            finished_at,
        );
        self.inner
            .store
            .save(&record)
            .await
            .map_err(RunnerError::Store)?;
        Ok(record)
    }

    /// Renews `lease` every third of its time to live; returns why it was lost.
    async fn keep_lease(&self, lease: RunLease, taken_at: Instant) -> String {
        let config = &self.inner.config;
        let ttl = config.lease_ttl;
        let mut valid_until = taken_at + ttl;
        let mut next = taken_at + ttl / 3;
        loop {
            tokio::time::sleep_until(next.min(valid_until)).await;
            if Instant::now() >= valid_until {
                return "the lease lapsed: the run store did not answer the renewals".into();
            }
            let sent = Instant::now();
            match self.inner.store.acquire_lease(&config.owner, ttl).await {
                Ok(Some(renewed)) if renewed.token == lease.token => {
                    valid_until = sent + ttl;
                    next = sent + ttl / 3;
                }
                Ok(Some(_)) => return "the lease changed hands while this run held it".into(),
                Ok(None) => return "another runner took the lease".into(),
                Err(error) => {
                    tracing::warn!(%error, "consistency runner: cannot renew the lease; retrying until it lapses");
                    next = Instant::now() + (ttl / 10).max(Duration::from_millis(10));
                }
            }
        }
    }

    /// Checks every pair, then every invariant, saving the record after each.
    /// Checks every pair, then every invariant, then repairs what the pairs found,
    /// saving the record after each step. Repairs come last so that the invariants
    /// judge the data as the checks found it, and one run's report is one picture.
    async fn check_all(&self, record: &mut RunRecord) {
        let mut reports = Vec::new();
        for pair in &self.inner.pairs {
            let (run, report) = self.check_pair(pair).await;
            record.pairs.push(run);
            reports.push(report);
            self.save_progress(record).await;
        }
        for invariant in &self.inner.invariants {
            let run = self.check_invariant(invariant.as_ref()).await;
            record.invariants.push(run);
            self.save_progress(record).await;
        }
        let mut budget = self.inner.config.repair.max_keys_per_run;
        for (index, (pair, report)) in self.inner.pairs.iter().zip(reports).enumerate() {
            let Some(report) = report else { continue };
            let (summary, error) = self
                .repair(index, pair, &report, record.id, &mut budget)
                .await;
            record.pairs[index].repair = summary;
            record.pairs[index].error = error;
            self.save_progress(record).await;
        }
    }

    async fn save_progress(&self, record: &RunRecord) {
        if let Err(error) = self.inner.store.save(record).await {
            tracing::warn!(%error, run = %record.id, "consistency runner: cannot save the run's progress");
        }
    }

    /// One pair's check: what it found, and the full report for the repair.
    async fn check_pair(&self, pair: &Pair) -> (PairRun, Option<CheckReport>) {
        let started = Instant::now();
        let check = Check::new(&pair.source, &pair.replica, self.inner.config.check.clone());
        let mut outcome = PairRun {
            source: pair.source_name.clone(),
            replica: pair.replica_name.clone(),
            counts: crate::DriftCounts::default(),
            differences: Vec::new(),
            truncated: false,
            recheck: 0,
            source_cost: crate::Cost::default(),
            replica_cost: crate::Cost::default(),
            took_ms: 0,
            repair: RepairSummary::default(),
            error: None,
        };
        let report = match check.run().await {
            Err(error) => {
                outcome.error = Some(error.to_string());
                None
            }
            Ok(report) => {
                for (kind, count) in report.counts.by_kind() {
                    metrics::set_drift(&pair.source_name, &pair.replica_name, kind, count);
                }
                metrics::set_recheck(&pair.source_name, &pair.replica_name, report.recheck.len());
                outcome.counts = report.counts;
                outcome.truncated = report.truncated;
                outcome.recheck = report.recheck.len();
                outcome.source_cost = report.source_cost;
                outcome.replica_cost = report.replica_cost;
                outcome.differences = report
                    .differences
                    .iter()
                    .take(self.inner.config.differences_kept)
                    .cloned()
                    .collect();
                Some(report)
            }
        };
        outcome.took_ms = millis(started.elapsed());
        (outcome, report)
    }

    /// Sends the repairable differences of `report` to the pair's owner; also answers
    /// why the owner's repair failed, when it did.
    async fn repair(
        &self,
        index: usize,
        pair: &Pair,
        report: &CheckReport,
        run: RunId,
        budget: &mut usize,
    ) -> (RepairSummary, Option<String>) {
        let policy = &self.inner.config.repair;
        let mut summary = RepairSummary::default();
        let Some(repair) = pair.repair.as_ref().filter(|_| policy.enabled) else {
            return (summary, None);
        };
        summary.attempted = true;
        // The series exists from the first run on, also while nothing needs repair.
        metrics::count_repairs(&pair.source_name, &pair.replica_name, 0);
        let mut keys = Vec::new();
        {
            let repaired_at = self
                .inner
                .repaired_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for difference in &report.differences {
                let key = &difference.key;
                if let Drift::ReplicaAhead { .. } = difference.drift {
                    summary.skipped.push(SkippedKey {
                        key: key.clone(),
                        reason: "replica ahead: the replica holds a state its owner never wrote, which republishing cannot \
                                 undo; look for a bug in the replica's projection or the owner's versions"
                            .into(),
                    });
                } else if repaired_at
                    .get(&(index, key.clone()))
                    .is_some_and(|at| at.elapsed() < policy.cooldown)
                    || *budget == 0
                {
                    summary.postponed.push(key.clone());
                } else {
                    *budget -= 1;
                    keys.push(key.clone());
                }
            }
        }
        while !keys.is_empty() {
            match repair.repair(std::mem::take(&mut keys), run).await {
                Err(error) => {
                    return (summary, Some(format!("the owner's repair failed: {error}")));
                }
                Ok(outcome) => {
                    {
                        let mut repaired_at = self
                            .inner
                            .repaired_at
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let now = Instant::now();
                        for key in &outcome.republished {
                            repaired_at.insert((index, key.clone()), now);
                        }
                    }
                    metrics::count_repairs(
                        &pair.source_name,
                        &pair.replica_name,
                        outcome.republished.len(),
                    );
                    summary.republished.extend(outcome.republished);
                    summary.skipped.extend(
                        outcome
                            .skipped
                            .into_iter()
                            .map(|(key, reason)| SkippedKey { key, reason }),
                    );
                    keys = outcome.deferred;
                    if !keys.is_empty() {
                        tokio::time::sleep(policy.pause).await;
                    }
                }
            }
        }
        (summary, None)
    }

    async fn check_invariant(&self, invariant: &dyn Invariant) -> InvariantRun {
        let started = Instant::now();
        let mut outcome = InvariantRun {
            name: invariant.name().to_owned(),
            source: invariant.source().to_owned(),
            against: invariant.against().to_owned(),
            violations_found: 0,
            violations: Vec::new(),
            took_ms: 0,
            error: None,
        };
        match invariant
            .violations(self.inner.config.differences_kept)
            .await
        {
            Err(error) => outcome.error = Some(error.to_string()),
            Ok(found) => {
                for kind in invariant.kinds() {
                    let count = found
                        .counts
                        .iter()
                        .find(|(k, _)| k == kind)
                        .map_or(0, |(_, c)| *c);
                    metrics::set_drift(invariant.source(), invariant.against(), kind, count);
                }
                outcome.violations_found = found.total();
                outcome.violations = found.listed;
            }
        }
        outcome.took_ms = millis(started.elapsed());
        outcome
    }
}
