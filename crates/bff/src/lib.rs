//! API composition for a gateway (a backend for frontends): one answer composed from
//! several downstream calls run in parallel under one deadline, each part saying what
//! happened to it.
//!
//! - [`Composer`]: adds named calls, runs them together, each raced against the
//!   request's [`Deadline`]; a hanging downstream leaves its section `timeout` and the
//!   page answers on time. A section marked required fails the page with a problem
//!   (504 when it timed out, 403 when the downstream refused the caller, 503 otherwise).
//! - [`Section`] / [`SectionOutcome`]: `ok`, `timeout`, `circuit_open`, `unavailable`,
//!   `forbidden` or `stale` (with the version seen), serialised as
//!   `{"status", "data", "detail"}`; [`section_schema`] gives its OpenAPI schema.
//! - [`Downstream`]: the client of one service, with a tower stack of its own: a
//!   concurrency limit, a [`CircuitBreaker`], retries of idempotent calls only (GET,
//!   HEAD, or a POST with an `Idempotency-Key`) with jittered exponential backoff inside
//!   the deadline and a retry budget (tower's `TpsBudget`, 20% extra load by default),
//!   optional hedged reads (a second attempt of a slow GET, paid from the same budget),
//!   and a per-attempt timeout capped by the deadline. [`Downstream::send`] answers what
//!   a section can use; [`Downstream::forward`] every answer as it came, for a proxy.
//! - [`CallContext`]: what every call of one request carries downstream: the
//!   `dovetail-deadline-ms` header ([`dovetail_http::deadline`]) set to the time that
//!   remains, the caller's `Authorization`, `traceparent` and `x-request-id`. A handler
//!   takes it as an extractor (the deadline capped at the router's [`RouteBudget`]).
//! - Read-your-writes: a write's [`ConsistencyToken`] (aggregate and version), signed
//!   with the gateway's [`ConsistencyKey`] so a client cannot forge it; a read that
//!   carries it waits with [`await_version`] until a replica has reached the version,
//!   and otherwise answers the section `stale` with the version it saw.
//! - [`RequestIdLayer`] (dovetail-http's, re-exported): every request gets an
//!   `x-request-id` (the caller's or a new one), every answer carries it back, every log
//!   line of the request names it.
//!
//! # Example
//!
//! A customer's page from two services; the policies are required, the activity is not:
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Json, http::HeaderMap};
//! use dovetail_bff::{CallContext, Composer, Downstream, DownstreamConfig, Section};
//! use dovetail_http::Problem;
//! use serde_json::Value;
//!
//! #[derive(serde::Serialize)]
//! struct Dashboard {
//!     policies: Section<Value>,
//!     activity: Section<Value>,
//! }
//!
//! async fn dashboard(
//!     policy: &Downstream,
//!     search: &Downstream,
//!     headers: &HeaderMap,
//! ) -> Result<Json<Dashboard>, Problem> {
//!     let context = CallContext::from_headers(headers, Duration::from_millis(800))
//!         .map_err(|bad| bad.problem())?;
//!     let mut page = Composer::new(context.deadline());
//!     let policies = page.required("policies", policy.get_json(&context, "/policies"));
//!     let activity = page.section("activity", search.get_json(&context, "/search?q=recent"));
//!     let done = page.run().await?;
//!     Ok(Json(Dashboard { policies: done.take(policies), activity: done.take(activity) }))
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Downstream::new(DownstreamConfig::new("policy", "http://127.0.0.1:8081"))?;
//! let search = Downstream::new(DownstreamConfig::new("search", "http://127.0.0.1:8083"))?;
//! # let _ = (policy, search, dashboard); Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `metrics` | per downstream, through the `metrics` facade: `dovetail_bff_call_seconds` (histogram), `dovetail_bff_calls_total` by outcome, `dovetail_bff_hedges_total`, `dovetail_bff_breaker_state` (0 closed, 1 half-open, 2 open) |

mod compose;
mod consistency;
mod context;
mod downstream;
mod error;
mod section;

pub use compose::{Composed, Composer, Need, Slot};
pub use consistency::{
    BadToken, CONSISTENCY_HEADER, ConsistencyKey, ConsistencyToken, Seen, WeakKey, await_version,
};
pub use context::{CallContext, DEFAULT_BUDGET, RouteBudget, TRACEPARENT_HEADER};
#[doc(no_inline)]
pub use dovetail_http::request_id::{REQUEST_ID_HEADER, RequestIdLayer, RequestIdService};
#[cfg(feature = "metrics")]
pub use downstream::report::describe_metrics;
pub use downstream::{
    Answer, BreakerConfig, BreakerState, Call, CircuitBreaker, CircuitBreakerLayer,
    CircuitBreakerService, Downstream, DownstreamConfig, DownstreamError, DownstreamHealth,
    IDEMPOTENCY_KEY_HEADER, RetryConfig,
};
pub use error::{BoxError, CallError};
pub use section::{Section, SectionOutcome, section_schema};

#[doc(no_inline)]
pub use dovetail_http::deadline::Deadline;

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
