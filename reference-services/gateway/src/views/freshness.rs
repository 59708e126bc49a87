//! How far a copy of an aggregate has got: [`held`] asks a service for the version it
//! holds (one cheap read), and [`copy_section`] waits for a wanted version within the
//! deadline, answering `ok`, or `stale` with the version seen.

use std::time::Duration;

use dovetail_bff::{CallContext, CallError, Downstream, Section, await_version};
use dovetail_http::deadline::Deadline;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a copy holds of one aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The version of the aggregate the copy holds; 0 when it holds none yet.
    pub version: u64,
}

/// The longest a wait for a copy leaves for the rest of the page: a fifth of the time
/// that remains, at most this.
const RESERVE: Duration = Duration::from_millis(200);

/// The version `downstream` holds, read from `path`'s JSON answer with `version_of`; a
/// 404 is version 0 (no copy yet).
pub(crate) async fn held(
    downstream: &Downstream,
    cx: &CallContext,
    path: &str,
    version_of: fn(&Value) -> Option<u64>,
) -> Result<u64, CallError> {
    let answer = downstream.send(cx, dovetail_bff::Call::get(path)).await?;
    if answer.status == axum::http::StatusCode::NOT_FOUND {
        return Ok(0);
    }
    let body: Value = answer.json()?;
    version_of(&body).ok_or_else(|| {
        CallError::Decode(serde::de::Error::custom(format!(
            "{} answered {path} without a version",
            downstream.name()
        )))
    })
}

/// The section of a copy: without a wanted version, what it holds now (`ok`); with
/// one, `ok` once it holds that version or later, or `stale` with what it held when
/// the wait had to stop to leave time for the rest of the page.
pub(crate) async fn copy_section(
    downstream: &Downstream,
    cx: &CallContext,
    path: &str,
    version_of: fn(&Value) -> Option<u64>,
    wanted: Option<u64>,
    poll: Duration,
) -> Section<Held> {
    let failed = |error: CallError| {
        Section::failed(error.outcome(), format!("{}: {error}", downstream.name()))
    };
    let Some(wanted) = wanted else {
        return match held(downstream, cx, path, version_of).await {
            Ok(version) => Section::ok(Held { version }),
            Err(error) => failed(error),
        };
    };
    match await_version(wait_until(cx.deadline()), wanted, poll, || {
        held(downstream, cx, path, version_of)
    })
    .await
    {
        Ok(seen) => seen.section(Held {
            version: seen.version,
        }),
        Err(error) => failed(error),
    }
}

/// Waits until an earlier deadline than the request's, when the wait can only end in a
/// read that still has to be made.
pub(crate) fn wait_until(deadline: Deadline) -> Deadline {
    let remaining = deadline.remaining();
    Deadline::after(remaining.saturating_sub((remaining / 5).min(RESERVE)))
}
