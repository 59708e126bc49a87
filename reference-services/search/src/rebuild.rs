//! Rebuild jobs: [`RebuildJobs::start`] runs [`SearchIndex::rebuild`] in the background
//! and answers as soon as the rebuild holds its claim; [`RebuildJobs::get`] says how far it
//! is. The API's `POST /admin/rebuilds` and `GET /admin/rebuilds/{id}` sit on it.
//!
//! Jobs are kept in this instance's memory (the last [`KEPT_JOBS`]): the instance that
//! runs a rebuild is the one that can say how it goes. That a rebuild runs at all is
//! known to every instance (on OpenSearch through the rebuild alias, so a second rebuild
//! anywhere is refused).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::index::{
    AnyIndex, IndexError, RebuildPhase, RebuildProgress, RebuildReport, SearchIndex,
};

/// How many jobs, finished or not, an instance remembers.
pub const KEPT_JOBS: usize = 20;

/// How a job ended, once it has.
type Outcome = Option<Result<RebuildReport, IndexError>>;

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
            Some(Err(error)) => JobState::Failed {
                error: error.to_string(),
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
    /// A job of this instance runs.
    #[error("rebuild {} is under way; follow it at /admin/rebuilds/{} and start another once it has ended", .0.id, .0.id)]
    Running(JobView),
    /// The index refused the claim: a rebuild of another instance runs.
    #[error("{0}")]
    Refused(IndexError),
}

/// The rebuild jobs of one instance over its index. Clones share the jobs.
#[derive(Debug, Clone)]
pub struct RebuildJobs {
    index: AnyIndex,
    jobs: Arc<Mutex<VecDeque<Arc<Job>>>>,
}

impl RebuildJobs {
    /// No jobs yet, over `index`.
    pub fn new(index: AnyIndex) -> Self {
        Self {
            index,
            jobs: Arc::default(),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts a rebuild in the background (on the current tokio runtime) and returns once
    /// it holds its claim — or has ended, when it fails at once. With an
    /// `idempotency_key` a job already started with it is answered instead.
    ///
    /// # Errors
    /// [`StartError::Running`] when a job of this instance runs; [`StartError::Refused`]
    /// when the index refused the claim (another instance rebuilds), which leaves no job.
    pub async fn start(&self, idempotency_key: Option<String>) -> Result<Started, StartError> {
        let job = {
            let mut jobs = self.jobs();
            if let Some(key) = &idempotency_key
                && let Some(earlier) = jobs
                    .iter()
                    .find(|job| job.idempotency_key.as_ref() == Some(key))
            {
                return Ok(Started::Replayed(earlier.view()));
            }
            if let Some(running) = jobs.iter().find(|job| job.running()) {
                return Err(StartError::Running(running.view()));
            }
            let job = Arc::new(Job {
                id: uuid::Uuid::now_v7().to_string(),
                idempotency_key,
                started_at: OffsetDateTime::now_utc(),
                progress: RebuildProgress::default(),
                outcome: watch::Sender::new(None),
                finished_at: Mutex::new(None),
            });
            jobs.push_front(Arc::clone(&job));
            jobs.truncate(KEPT_JOBS);
            job
        };
        let (index, running) = (self.index.clone(), Arc::clone(&job));
        tokio::spawn(async move {
            let result = index.rebuild(&running.progress).await;
            let label = match &result {
                Ok(report) => {
                    tracing::info!(id = %running.id, ?report, "search index rebuilt");
                    "succeeded"
                }
                Err(error) => {
                    tracing::warn!(id = %running.id, %error, "search index rebuild failed");
                    "failed"
                }
            };
            metrics::counter!("search_rebuilds_total", "outcome" => label).increment(1);
            *running
                .finished_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(OffsetDateTime::now_utc());
            running.outcome.send_replace(Some(result));
        });
        let mut ended = job.outcome.subscribe();
        tokio::select! {
            () = job.progress.claimed() => {}
            _ = ended.wait_for(Option::is_some) => {}
        }
        let refused = match &*job.outcome.borrow() {
            Some(Err(error @ IndexError::Conflict(_))) => Some(error.clone()),
            _ => None,
        };
        if let Some(error) = refused {
            self.jobs().retain(|kept| kept.id != job.id);
            return Err(StartError::Refused(error));
        }
        Ok(Started::New(job.view()))
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
