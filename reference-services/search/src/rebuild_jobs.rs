//! Rebuild jobs: [`RebuildJobs::start`] runs [`SearchIndex::rebuild`] in the background
//! and answers as soon as the rebuild holds its lease; [`RebuildJobs::get`] says how far it
//! is. The API's `POST /admin/rebuilds` and `GET /admin/rebuilds/{id}` sit on it.
//!
//! Jobs are kept in this instance's memory (the last [`KEPT_JOBS`]): the instance that
//! runs a rebuild is the one that can say how it goes. That a rebuild runs at all is
//! known to every instance (on OpenSearch through the rebuild alias, so a second rebuild
//! anywhere is refused).
//!
//! Idempotency keys are kept with the jobs, so they have the same limit: a key is known
//! to the instance that answered it, until it restarts or [`KEPT_JOBS`] newer jobs push
//! its job out. A retry that reaches another instance, or comes later than that, is a new
//! start: refused with a 409 while the first rebuild runs (on OpenSearch, on any
//! instance), a second rebuild once it has ended.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::index::{IndexError, RebuildPhase, RebuildProgress, RebuildReport, SearchIndex};

/// How many jobs, finished or not, an instance remembers.
pub const KEPT_JOBS: usize = 20;

/// How a job ended, once it has.
type Outcome = Option<Result<RebuildReport, Failure>>;

/// Why a job failed.
#[derive(Debug, Clone)]
enum Failure {
    /// The rebuild answered this error.
    Index(IndexError),
    /// The task running the rebuild stopped without an answer: it panicked or was
    /// cancelled. Says which, and in which phase.
    Stopped(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Index(error) => error.fmt(f),
            Self::Stopped(why) => write!(f, "the rebuild task stopped: {why}"),
        }
    }
}

impl Failure {
    /// The failure as the index error a start answers when it came before the lease.
    fn into_index_error(self) -> IndexError {
        match self {
            Self::Index(error) => error,
            stopped @ Self::Stopped(_) => IndexError::Unavailable(stopped.to_string()),
        }
    }
}

/// One rebuild started through [`RebuildJobs::start`].
#[derive(Debug)]
struct Job {
    id: String,
    idempotency_key: Option<String>,
    started_at: OffsetDateTime,
    progress: RebuildProgress,
    outcome: watch::Sender<Outcome>,
    finished_at: Mutex<Option<OffsetDateTime>>,
}

/// Where a job is: `running` (with its phase), `succeeded` (with its report) or
/// `failed` (with the error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JobState {
    /// Under way.
    Running {
        /// The step it is at.
        phase: RebuildPhase,
    },
    /// Switched to the new index.
    Succeeded {
        /// What it did.
        report: RebuildReport,
    },
    /// Stopped; what happened and what to do is in `error`.
    Failed {
        /// Why.
        error: String,
    },
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    /// The job's id (in its URL).
    pub id: String,
    /// Running, succeeded or failed.
    #[serde(flatten)]
    pub state: JobState,
    /// Documents and tombstones copied so far.
    pub documents_copied: u64,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// When it ended, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Job {
    fn view(&self) -> JobView {
        let state = match &*self.outcome.borrow() {
            None => JobState::Running {
                phase: self.progress.phase(),
            },
            Some(Ok(report)) => JobState::Succeeded {
                report: report.clone(),
            },
            Some(Err(failure)) => JobState::Failed {
                error: failure.to_string(),
            },
        };
        JobView {
            id: self.id.clone(),
            state,
            documents_copied: self.progress.documents_copied(),
            started_at: rfc3339(self.started_at),
            finished_at: self
                .finished_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .map(rfc3339),
        }
    }

    fn running(&self) -> bool {
        self.outcome.borrow().is_none()
    }

    /// Whether the rebuild got past [`RebuildPhase::Starting`]: it held its lease.
    fn leased(&self) -> bool {
        self.progress.phase() != RebuildPhase::Starting
    }

    /// Records how the job ended, once: a second call changes nothing.
    fn finish(&self, result: Result<RebuildReport, Failure>) {
        if !self.running() {
            return;
        }
        let label = match &result {
            Ok(report) => {
                tracing::info!(id = %self.id, ?report, "search index rebuilt");
                "succeeded"
            }
            Err(failure @ Failure::Index(_)) => {
                tracing::warn!(id = %self.id, %failure, "search index rebuild failed");
                "failed"
            }
            Err(failure @ Failure::Stopped(_)) => {
                tracing::error!(id = %self.id, %failure, "search index rebuild failed");
                "failed"
            }
        };
        metrics::counter!("search_rebuilds_total", "outcome" => label).increment(1);
        *self
            .finished_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(OffsetDateTime::now_utc());
        self.outcome.send_replace(Some(result));
    }
}

/// Owned by the task that runs a job's rebuild: ends the job when dropped, with the
/// rebuild's result once there is one, or as stopped when the task panicked or was
/// cancelled first. So a job always ends, and a start waiting for it always answers.
struct Finish {
    job: Arc<Job>,
    result: Option<Result<RebuildReport, IndexError>>,
}

impl Finish {
    /// Ends the job with the rebuild's `result`.
    fn with(mut self, result: Result<RebuildReport, IndexError>) {
        self.result = Some(result);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        let phase = serde_json::to_value(self.job.progress.phase())
            .ok()
            .and_then(|phase| phase.as_str().map(str::to_owned))
            .unwrap_or_default();
        let result = match self.result.take() {
            Some(result) => result.map_err(Failure::Index),
            None if std::thread::panicking() => Err(Failure::Stopped(format!(
                "it panicked in phase {phase} (the log has where); start another"
            ))),
            None => Err(Failure::Stopped(format!(
                "it was cancelled in phase {phase} (the service shut down?); start another"
            ))),
        };
        self.job.finish(result);
    }
}

/// What [`RebuildJobs::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new job: it holds the rebuild's claim, or ended already.
    New(JobView),
    /// The job started earlier with the same idempotency key.
    Replayed(JobView),
}

/// Why [`RebuildJobs::start`] started nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// A job of this instance runs (it holds its lease).
    #[error("rebuild {} is under way; follow it at /admin/rebuilds/{} and start another once it has ended", .0.id, .0.id)]
    Running(JobView),
    /// The rebuild ended before it held its lease, and left no job (nor its idempotency
    /// key): the index refused the lease ([`IndexError::Conflict`]: a rebuild of another
    /// instance runs) or failed ([`IndexError::Unavailable`], also when the task running
    /// the rebuild stopped; retry in a moment).
    #[error("{0}")]
    Refused(IndexError),
}

/// A rebuild of the index [`RebuildJobs`] was made over, reporting into the progress.
type RunRebuild = dyn Fn(RebuildProgress) -> Pin<Box<dyn Future<Output = Result<RebuildReport, IndexError>> + Send>>
    + Send
    + Sync;

/// The rebuild jobs of one instance over its index. Clones share the jobs.
#[derive(Clone)]
pub struct RebuildJobs {
    rebuild: Arc<RunRebuild>,
    jobs: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl std::fmt::Debug for RebuildJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RebuildJobs")
            .field("jobs", &self.jobs().len())
            .finish_non_exhaustive()
    }
}

/// What [`RebuildJobs::start`] found under the lock.
enum Found {
    /// A job it just made, to run.
    New,
    /// The job started earlier with the same idempotency key.
    Replay,
    /// Another job, not ended.
    Running,
}

impl RebuildJobs {
    /// No jobs yet, over `index` (the service's [`AnyIndex`](crate::index::AnyIndex), or
    /// any other [`SearchIndex`]).
    pub fn new<I: SearchIndex + 'static>(index: I) -> Self {
        let index = Arc::new(index);
        Self {
            rebuild: Arc::new(move |progress| {
                let index = Arc::clone(&index);
                Box::pin(async move { index.rebuild(&progress).await })
            }),
            jobs: Arc::default(),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a rebuild in the background (on the current tokio runtime) and returns once
    /// it holds its lease — or has ended after it, when it fails at once. With an
    /// `idempotency_key`, a job already started with it is answered instead, once it holds
    /// its lease too: a replay while the first start waits gets the first start's answer.
    ///
    /// Idempotency keys live in this instance's memory, with its last [`KEPT_JOBS`] jobs:
    /// a retry that reaches another instance, or comes after a restart or after
    /// [`KEPT_JOBS`] newer jobs, is a new start (see the [module](self) docs). A start
    /// that fails before its lease leaves no job, so its key is not kept either: a retry
    /// with it tries again.
    ///
    /// # Errors
    /// [`StartError::Running`] when a job of this instance runs; [`StartError::Refused`]
    /// when the rebuild ended before it held its lease (the index refused the lease,
    /// because another instance rebuilds, or failed), which leaves no job.
    pub async fn start(&self, idempotency_key: Option<String>) -> Result<Started, StartError> {
        loop {
            let (job, found) = {
                let mut jobs = self.jobs();
                let earlier = idempotency_key.as_ref().and_then(|key| {
                    jobs.iter()
                        .find(|job| job.idempotency_key.as_ref() == Some(key))
                });
                if let Some(earlier) = earlier {
                    (Arc::clone(earlier), Found::Replay)
                } else if let Some(running) = jobs.iter().find(|job| job.running()) {
                    (Arc::clone(running), Found::Running)
                } else {
                    let job = Arc::new(Job {
                        id: uuid::Uuid::now_v7().to_string(),
                        idempotency_key: idempotency_key.clone(),
                        started_at: OffsetDateTime::now_utc(),
                        progress: RebuildProgress::default(),
                        outcome: watch::Sender::new(None),
                        finished_at: Mutex::new(None),
                    });
                    jobs.push_front(Arc::clone(&job));
                    jobs.truncate(KEPT_JOBS);
                    (job, Found::New)
                }
            };
            match found {
                Found::New => {
                    self.run(&job);
                    return self.until_leased(&job).await.map(Started::New);
                }
                Found::Replay => return self.until_leased(&job).await.map(Started::Replayed),
                Found::Running => {
                    // One still starting may yet be refused, and then leaves no job to
                    // follow: answer only once it holds its lease, or start again.
                    if self.until_leased(&job).await.is_ok() && job.running() {
                        return Err(StartError::Running(job.view()));
                    }
                }
            }
        }
    }

    /// Runs `job`'s rebuild in a task of its own, which ends the job however it stops.
    fn run(&self, job: &Arc<Job>) {
        let rebuild = (self.rebuild)(job.progress.clone());
        let finish = Finish {
            job: Arc::clone(job),
            result: None,
        };
        tokio::spawn(async move {
            let result = rebuild.await;
            finish.with(result);
        });
    }

    /// Waits until `job` holds its lease or has ended. One that ended before it held its lease
    /// is forgotten (its idempotency key too) and answers its error; otherwise the job.
    async fn until_leased(&self, job: &Job) -> Result<JobView, StartError> {
        let mut ended = job.outcome.subscribe();
        tokio::select! {
            () = job.progress.leased() => {}
            _ = ended.wait_for(Option::is_some) => {}
        }
        let unleased = match &*job.outcome.borrow() {
            Some(Err(failure)) if !job.leased() => Some(failure.clone()),
            _ => None,
        };
        if let Some(failure) = unleased {
            self.jobs().retain(|kept| kept.id != job.id);
            return Err(StartError::Refused(failure.into_index_error()));
        }
        Ok(job.view())
    }

    /// The job `id`, if this instance remembers it.
    pub fn get(&self, id: &str) -> Option<JobView> {
        self.jobs()
            .iter()
            .find(|job| job.id == id)
            .map(|job| job.view())
    }

    /// The jobs this instance remembers, newest first.
    pub fn list(&self) -> Vec<JobView> {
        self.jobs().iter().map(|job| job.view()).collect()
    }

    /// Waits until job `id` has ended and returns it (tests, tools); `None` for a job
    /// this instance does not know.
    pub async fn finished(&self, id: &str) -> Option<JobView> {
        let job = self.jobs().iter().find(|job| job.id == id).cloned()?;
        let mut ended = job.outcome.subscribe();
        let _ = ended.wait_for(Option::is_some).await;
        Some(job.view())
    }
}
