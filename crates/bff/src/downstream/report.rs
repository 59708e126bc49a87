//! Per-downstream metrics through the `metrics` facade (feature `metrics`): call
//! latency, outcome counts and breaker state, labelled by downstream.

use std::time::Duration;

use super::Answer;
use crate::{BreakerState, CallError};

/// Records one call's latency and outcome and the breaker's state after it.
#[cfg(feature = "metrics")]
pub(crate) fn call(
    downstream: &str,
    elapsed: Duration,
    result: &Result<Answer, CallError>,
    breaker: BreakerState,
) {
    let outcome = match result {
        Ok(answer) => match answer.status.as_u16() {
            401 | 403 => "forbidden",
            429 | 500.. => "unavailable",
            _ => "ok",
        },
        Err(error) => error.outcome().as_str(),
    };
    metrics::histogram!("dovetail_bff_call_seconds", "downstream" => downstream.to_owned())
        .record(elapsed.as_secs_f64());
    metrics::counter!(
        "dovetail_bff_calls_total",
        "downstream" => downstream.to_owned(),
        "outcome" => outcome
    )
    .increment(1);
    metrics::gauge!("dovetail_bff_breaker_state", "downstream" => downstream.to_owned())
        .set(breaker.as_gauge());
}

/// Counts a hedge: a second attempt sent because the first was slow.
#[cfg(feature = "metrics")]
pub(crate) fn hedge(downstream: &str) {
    metrics::counter!("dovetail_bff_hedges_total", "downstream" => downstream.to_owned())
        .increment(1);
}

/// Without the `metrics` feature nothing is recorded.
#[cfg(not(feature = "metrics"))]
pub(crate) fn hedge(_downstream: &str) {}

/// Without the `metrics` feature nothing is recorded.
#[cfg(not(feature = "metrics"))]
pub(crate) fn call(
    _downstream: &str,
    _elapsed: Duration,
    _result: &Result<Answer, CallError>,
    _breaker: BreakerState,
) {
}

/// Describes the metrics to the installed recorder (units and help text).
#[cfg(feature = "metrics")]
pub fn describe_metrics() {
    use metrics::Unit;
    metrics::describe_histogram!(
        "dovetail_bff_call_seconds",
        Unit::Seconds,
        "Latency of calls to a downstream, retries and backoff included."
    );
    metrics::describe_counter!(
        "dovetail_bff_calls_total",
        "Calls to a downstream by outcome: ok, timeout, circuit_open, unavailable, forbidden."
    );
    metrics::describe_counter!(
        "dovetail_bff_hedges_total",
        "Second attempts of slow reads sent to a downstream (hedged reads)."
    );
    metrics::describe_gauge!(
        "dovetail_bff_breaker_state",
        "A downstream's circuit breaker: 0 closed, 1 half-open, 2 open."
    );
}
