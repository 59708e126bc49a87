//! [`Composer`]: runs a page's downstream calls in parallel under the request's one
//! [`Deadline`], and fails the page only when a section it marked required failed.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use dovetail_http::Problem;
use dovetail_http::deadline::Deadline;

use crate::{CallError, Section, SectionOutcome};

type Call<'a> = Pin<Box<dyn Future<Output = Summary> + Send + 'a>>;

/// What a finished call left, whatever its data's type.
#[derive(Debug, Clone)]
struct Summary {
    name: String,
    required: bool,
    outcome: SectionOutcome,
    detail: Option<String>,
}

/// The calls of one composed answer, run together by [`Composer::run`].
///
/// Each call is raced against the deadline (`tokio::time::timeout_at`), so the page
/// answers by the deadline even when a downstream hangs: that section is `timeout`.
///
/// ```
/// use std::time::Duration;
/// use dovetail_bff::{CallError, Composer, SectionOutcome};
/// use dovetail_http::deadline::Deadline;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut page = Composer::new(Deadline::after(Duration::from_millis(50)));
/// let policies = page.required("policies", async { Ok::<_, CallError>(vec!["pol-1"]) });
/// let activity = page.section("activity", async {
///     tokio::time::sleep(Duration::from_secs(5)).await; // a downstream that hangs
///     Ok::<_, CallError>("never")
/// });
/// let answered = page.run().await.expect("the required section answered");
/// assert_eq!(answered.take(policies).outcome(), SectionOutcome::Ok);
/// assert_eq!(answered.take(activity).outcome(), SectionOutcome::Timeout);
/// # }
/// ```
pub struct Composer<'a> {
    deadline: Deadline,
    calls: Vec<Call<'a>>,
}

/// Whether a section's failure fails the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A failure leaves the section failed and the page answered.
    Optional,
    /// A failure fails the page: [`Composer::run`] answers a problem.
    Required,
}

/// Where a call's [`Section`] lands; [`Composed::take`] hands it over.
#[derive(Debug)]
#[must_use = "a slot holds its section until it is taken from the composed answer"]
pub struct Slot<T> {
    name: String,
    cell: Arc<Mutex<Option<Section<T>>>>,
}

/// The calls have all finished (or timed out); take each section from its [`Slot`].
#[derive(Debug)]
pub struct Composed {
    summaries: Vec<Summary>,
}

impl<'a> Composer<'a> {
    /// No calls yet, under `deadline`.
    pub fn new(deadline: Deadline) -> Self {
        Self {
            deadline,
            calls: Vec::new(),
        }
    }

    /// The deadline the calls run under.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Adds a call whose failure leaves its section failed and the page answered.
    pub fn section<T, F>(&mut self, name: impl Into<String>, call: F) -> Slot<T>
    where
        T: Send + 'a,
        F: Future<Output = Result<T, CallError>> + Send + 'a,
    {
        self.add(name.into(), Need::Optional, call)
    }

    /// Adds a call whose failure fails the page ([`Composer::run`] answers a problem).
    pub fn required<T, F>(&mut self, name: impl Into<String>, call: F) -> Slot<T>
    where
        T: Send + 'a,
        F: Future<Output = Result<T, CallError>> + Send + 'a,
    {
        self.add(name.into(), Need::Required, call)
    }

    /// Adds a call that makes its own [`Section`] (a `stale` one, say); a failed
    /// [`Need::Required`] section fails the page.
    pub fn section_with<T, F>(&mut self, name: impl Into<String>, need: Need, call: F) -> Slot<T>
    where
        T: Send + 'a,
        F: Future<Output = Section<T>> + Send + 'a,
    {
        let name = name.into();
        let cell = Arc::new(Mutex::new(None));
        let slot = Slot {
            name: name.clone(),
            cell: Arc::clone(&cell),
        };
        let deadline = self.deadline;
        let required = need == Need::Required;
        self.calls.push(Box::pin(async move {
            let section = match tokio::time::timeout_at(deadline.instant(), call).await {
                Ok(section) => section,
                Err(_) => Section::failed(
                    SectionOutcome::Timeout,
                    format!("{name} did not answer before the request's deadline"),
                ),
            };
            let summary = Summary {
                name,
                required,
                outcome: section.outcome(),
                detail: section.detail().map(str::to_owned),
            };
            *cell.lock().unwrap_or_else(PoisonError::into_inner) = Some(section);
            summary
        }));
        slot
    }

    fn add<T, F>(&mut self, name: String, need: Need, call: F) -> Slot<T>
    where
        T: Send + 'a,
        F: Future<Output = Result<T, CallError>> + Send + 'a,
    {
        let label = name.clone();
        self.section_with(name, need, async move {
            match call.await {
                Ok(data) => Section::ok(data),
                Err(error) => Section::failed(error.outcome(), format!("{label}: {error}")),
            }
        })
    }

    /// Runs every call at once and waits for all of them, at most until the deadline.
    ///
    /// # Errors
    /// The problem of the first required section that failed: 504 when it timed out,
    /// 403 when the downstream refused the caller, 503 otherwise.
    pub async fn run(self) -> Result<Composed, Problem> {
        let summaries = futures_util::future::join_all(self.calls).await;
        if let Some(failed) = summaries
            .iter()
            .find(|summary| summary.required && summary.outcome.is_failure())
        {
            return Err(required_failed(failed));
        }
        Ok(Composed { summaries })
    }
}

fn required_failed(summary: &Summary) -> Problem {
    let (status, kind) = match summary.outcome {
        SectionOutcome::Timeout => (StatusCode::GATEWAY_TIMEOUT, "section-timeout"),
        SectionOutcome::Forbidden => (StatusCode::FORBIDDEN, "section-forbidden"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "section-unavailable"),
    };
    let why = summary.detail.as_deref().unwrap_or("no detail");
    let problem =
        Problem::new(status, kind, "A required part of the answer failed").detail(format!(
            "the section {} is required by this page and is {} ({why}); retry later, or with \
             a longer deadline",
            summary.name,
            summary.outcome.as_str()
        ));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        problem.retry_after(1)
    } else {
        problem
    }
}

impl Composed {
    /// The section that landed in `slot`.
    pub fn take<T>(&self, slot: Slot<T>) -> Section<T> {
        let Slot { name, cell } = slot;
        cell.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_else(|| {
                Section::failed(
                    SectionOutcome::Unavailable,
                    format!("{name} belongs to another composed answer"),
                )
            })
    }

    /// Each section's name and outcome, in the order they were added.
    pub fn outcomes(&self) -> impl Iterator<Item = (&str, SectionOutcome)> {
        self.summaries
            .iter()
            .map(|summary| (summary.name.as_str(), summary.outcome))
    }
}

impl std::fmt::Debug for Composer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Composer")
            .field("deadline", &self.deadline)
            .field("calls", &self.calls.len())
            .finish()
    }
}
