//! Rebuild jobs over an index whose rebuild does as told (fails, panics or waits before or
//! after its lease): a start that fails before its lease leaves no job and answers its
//! problem, a replay waits for the lease with the first start, and a rebuild task that
//! panics or is cancelled still ends its job.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use dovetail_search::document::IndexedDocument;
use dovetail_search::index::{
    AnyIndex, BatchOutcomes, IndexError, RebuildPhase, RebuildProgress, RebuildReport, SearchIndex,
    SearchQuery, SearchResults, TantivyIndex,
};
use dovetail_search::rebuild_jobs::{JobState, RebuildJobs, StartError, Started};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::Notify;
use tower::ServiceExt;

use crate::support::Tokens;

/// What one rebuild does.
enum Step {
    /// Claims and succeeds.
    Succeed,
    /// Fails with this error before its lease.
    FailBeforeLease(IndexError),
    /// Waits until released, still `starting`; then fails with the error, or claims and
    /// succeeds without one.
    WaitBeforeLease(Arc<Notify>, Option<IndexError>),
    /// Panics before its lease.
    PanicBeforeLease,
    /// Claims, then panics while copying.
    PanicAfterLease,
    /// Claims, then never ends (until its task is dropped).
    ClaimAndHang,
}

/// An index of nothing whose rebuilds take the steps they are given, in order (then
/// succeed).
#[derive(Clone, Default)]
struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
}

impl Scripted {
    fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
        }
    }
}

fn report() -> RebuildReport {
    RebuildReport {
        from: "old".into(),
        to: "new".into(),
        documents: 0,
        rederived: 0,
    }
}

impl SearchIndex for Scripted {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<BatchOutcomes, IndexError> {
        Ok(documents
            .iter()
            .map(|_| Ok(dovetail_search::index::UpsertOutcome::Applied))
            .collect())
    }

    async fn get(&self, _id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        Ok(None)
    }

    async fn search(&self, _query: &SearchQuery) -> Result<SearchResults, IndexError> {
        Ok(SearchResults {
            hits: Vec::new(),
            next: None,
        })
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        Ok(())
    }

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        let step = self
            .steps
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Succeed);
        match step {
            Step::Succeed => {
                progress.enter(RebuildPhase::Copying);
                Ok(report())
            }
            Step::FailBeforeLease(error) => Err(error),
            Step::WaitBeforeLease(release, error) => {
                release.notified().await;
                if let Some(error) = error {
                    return Err(error);
                }
                progress.enter(RebuildPhase::Copying);
                Ok(report())
            }
            Step::PanicBeforeLease => panic!("the scripted rebuild panics before its lease"),
            Step::PanicAfterLease => {
                progress.enter(RebuildPhase::Copying);
                panic!("the scripted rebuild panics after its lease")
            }
            Step::ClaimAndHang => {
                progress.enter(RebuildPhase::Copying);
                std::future::pending().await
            }
        }
    }

    async fn ping(&self) -> Result<(), IndexError> {
        Ok(())
    }
}

/// The API over `jobs` (searches on an empty index in memory), and the tokens it
/// verifies.
async fn api(jobs: &RebuildJobs) -> (Router, Tokens) {
    let tokens = Tokens::start().await;
    let router = dovetail_search::http::router(
        AnyIndex::Tantivy(TantivyIndex::open_in_ram().unwrap()),
        jobs.clone(),
        tokens.verifier(),
    );
    (router, tokens)
}

/// `method uri` as staff, with `key` as its `Idempotency-Key`.
async fn send(
    (router, tokens): &(Router, Tokens),
    method: Method,
    uri: &str,
    key: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", tokens.staff());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        router.clone().oneshot(request.body(Body::empty()).unwrap()),
    )
    .await
    .expect("the API answers")
    .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

/// Starts with a time limit: a start that never answers fails the test.
async fn start(jobs: &RebuildJobs, key: Option<&str>) -> Result<Started, StartError> {
    tokio::time::timeout(Duration::from_secs(10), jobs.start(key.map(str::to_owned)))
        .await
        .expect("the start answers")
}

fn started_id(started: &Started) -> &str {
    match started {
        Started::New(job) | Started::Replayed(job) => &job.id,
    }
}

#[tokio::test]
async fn a_start_that_fails_before_its_lease_leaves_no_job_answers_its_problem_and_keeps_no_key() {
    let jobs = RebuildJobs::new(Scripted::new([
        Step::FailBeforeLease(IndexError::Unavailable("connection refused".into())),
        Step::FailBeforeLease(IndexError::Conflict(
            "another instance rebuilds the index".into(),
        )),
    ]));
    let router = api(&jobs).await;

    // Unavailable: a 503 to retry, not a failed job.
    let (status, headers, problem) =
        send(&router, Method::POST, "/admin/rebuilds", Some("key-1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(!headers.contains_key("location"), "{headers:?}");
    let (_, _, listed) = send(&router, Method::GET, "/admin/rebuilds", None).await;
    assert_eq!(listed["items"], serde_json::json!([]), "no job is left");

    // Conflict: a 409, no job either.
    let (status, headers, problem) =
        send(&router, Method::POST, "/admin/rebuilds", Some("key-1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(!headers.contains_key("location"), "{headers:?}");
    let (_, _, listed) = send(&router, Method::GET, "/admin/rebuilds", None).await;
    assert_eq!(listed["items"], serde_json::json!([]), "no job is left");

    // The key was not kept: the same key starts a rebuild now, not a replay.
    let (status, headers, job) =
        send(&router, Method::POST, "/admin/rebuilds", Some("key-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert!(!headers.contains_key("idempotent-replayed"), "{headers:?}");
    let done = jobs.finished(job["id"].as_str().unwrap()).await.unwrap();
    assert!(matches!(done.state, JobState::Succeeded { .. }), "{done:?}");
}

#[tokio::test]
async fn a_replay_while_the_first_start_waits_for_its_lease_gets_the_first_starts_answer() {
    // The first start is refused after the replay came: both are refused, no job is left.
    let release = Arc::new(Notify::new());
    let jobs = RebuildJobs::new(Scripted::new([Step::WaitBeforeLease(
        Arc::clone(&release),
        Some(IndexError::Conflict("another instance rebuilds".into())),
    )]));
    let first = tokio::spawn({
        let jobs = jobs.clone();
        async move { start(&jobs, Some("key-1")).await }
    });
    while jobs.list().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replay = tokio::spawn({
        let jobs = jobs.clone();
        async move { start(&jobs, Some("key-1")).await }
    });
    // And a start without a key: it waits too, rather than pointing at a job that may
    // not be kept.
    let other = tokio::spawn({
        let jobs = jobs.clone();
        async move { start(&jobs, None).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!first.is_finished() && !replay.is_finished() && !other.is_finished());
    release.notify_one();
    for refused in [first.await.unwrap(), replay.await.unwrap()] {
        assert!(
            matches!(&refused, Err(StartError::Refused(IndexError::Conflict(_)))),
            "{refused:?}"
        );
    }
    // The start without a key found the first gone and started its own.
    let other = other.await.unwrap().unwrap();
    assert!(matches!(other, Started::New(_)), "{other:?}");
    assert_eq!(jobs.list().len(), 1);

    // The first start claims after the replay came: both answer the same job, which is
    // kept and can be followed.
    let release = Arc::new(Notify::new());
    let jobs = RebuildJobs::new(Scripted::new([Step::WaitBeforeLease(
        Arc::clone(&release),
        None,
    )]));
    let first = tokio::spawn({
        let jobs = jobs.clone();
        async move { start(&jobs, Some("key-2")).await }
    });
    while jobs.list().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let replay = tokio::spawn({
        let jobs = jobs.clone();
        async move { start(&jobs, Some("key-2")).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!replay.is_finished(), "the replay waits for the lease");
    release.notify_one();
    let (first, replay) = (
        first.await.unwrap().unwrap(),
        replay.await.unwrap().unwrap(),
    );
    assert!(matches!(first, Started::New(_)), "{first:?}");
    assert!(matches!(replay, Started::Replayed(_)), "{replay:?}");
    assert_eq!(started_id(&first), started_id(&replay));
    assert!(jobs.get(started_id(&replay)).is_some());
}

#[tokio::test]
async fn a_rebuild_task_that_panics_still_ends_its_job() {
    let jobs = RebuildJobs::new(Scripted::new([
        Step::PanicBeforeLease,
        Step::PanicAfterLease,
    ]));
    let router = api(&jobs).await;

    // Before its lease: no job, a 503 to retry.
    let (status, headers, problem) = send(&router, Method::POST, "/admin/rebuilds", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert!(jobs.list().is_empty(), "{:?}", jobs.list());

    // After its lease: the job fails, saying so, and the next start is not refused.
    let started = start(&jobs, None).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), jobs.finished(started_id(&started)))
        .await
        .expect("the job ends")
        .unwrap();
    let JobState::Failed { error } = &done.state else {
        panic!("{done:?}");
    };
    assert!(
        error.starts_with("the rebuild task stopped: it panicked in phase copying"),
        "{error}"
    );
    assert!(done.finished_at.is_some(), "{done:?}");
    let (status, _, next) = send(&router, Method::POST, "/admin/rebuilds", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{next}");
}

#[test]
fn a_rebuild_task_cancelled_with_its_runtime_still_ends_its_job() {
    let jobs = RebuildJobs::new(Scripted::new([Step::ClaimAndHang]));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let started = runtime.block_on(start(&jobs, None)).unwrap();
    let id = started_id(&started).to_owned();
    assert!(matches!(
        jobs.get(&id).unwrap().state,
        JobState::Running { .. }
    ));
    // The service shuts down: its runtime drops the task mid-rebuild.
    drop(runtime);

    let job = jobs.get(&id).unwrap();
    let JobState::Failed { error } = &job.state else {
        panic!("{job:?}");
    };
    assert!(
        error.starts_with("the rebuild task stopped: it was cancelled in phase copying"),
        "{error}"
    );
    // Nothing runs any more: the next start is not refused.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let next = runtime.block_on(start(&jobs, None)).unwrap();
    assert!(matches!(next, Started::New(_)), "{next:?}");
}
