//! The runner's metrics: names, descriptions, and recording.

/// Differences found by the latest run, per pair and kind (invariant violations too).
pub const DRIFT: &str = "dovetail_consistency_drift";
/// Keys left for the next run as writes in flight, per pair.
pub const RECHECK: &str = "dovetail_consistency_recheck";
/// How long runs take, by outcome.
pub const RUN_SECONDS: &str = "dovetail_consistency_run_seconds";
/// Runs finished, by outcome (`succeeded`, `failed`).
pub const RUNS_TOTAL: &str = "dovetail_consistency_runs_total";
/// Keys whose owner republished its state for a repair, per pair.
pub const REPAIRS_TOTAL: &str = "dovetail_consistency_repairs_total";
/// When the latest successful run finished (seconds since the Unix epoch).
pub const LAST_SUCCESS: &str = "dovetail_consistency_last_success_timestamp_seconds";

/// Describes the runner's metrics to the installed recorder (units and help texts).
pub fn describe_metrics() {
    metrics::describe_gauge!(
        DRIFT,
        "Differences the latest consistency run found, per source, replica and kind."
    );
    metrics::describe_gauge!(
        RECHECK,
        "Keys the latest consistency run left for the next (writes in flight)."
    );
    metrics::describe_histogram!(
        RUN_SECONDS,
        metrics::Unit::Seconds,
        "How long consistency runs take."
    );
    metrics::describe_counter!(RUNS_TOTAL, "Consistency runs finished, by outcome.");
    metrics::describe_counter!(
        REPAIRS_TOTAL,
        "Keys republished by their owner to repair a replica."
    );
    metrics::describe_gauge!(
        LAST_SUCCESS,
        metrics::Unit::Seconds,
        "When the latest successful consistency run finished."
    );
}

/// Sets the drift gauge of `kind` between `source` and `replica`.
#[allow(clippy::cast_precision_loss)] // counts far below 2^52
pub(crate) fn set_drift(source: &str, replica: &str, kind: &str, count: u64) {
    metrics::gauge!(DRIFT, "source" => source.to_owned(), "replica" => replica.to_owned(), "kind" => kind.to_owned())
        .set(count as f64);
}

/// Sets the recheck gauge between `source` and `replica`.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn set_recheck(source: &str, replica: &str, keys: usize) {
    metrics::gauge!(RECHECK, "source" => source.to_owned(), "replica" => replica.to_owned())
        .set(keys as f64);
}

/// Counts `keys` republished between `source` and `replica`.
pub(crate) fn count_repairs(source: &str, replica: &str, keys: usize) {
    metrics::counter!(REPAIRS_TOTAL, "source" => source.to_owned(), "replica" => replica.to_owned())
        .increment(u64::try_from(keys).unwrap_or(u64::MAX));
}

/// Records a finished run.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn run_finished(succeeded: bool, seconds: f64, finished_at_ms: u64) {
    let outcome = if succeeded { "succeeded" } else { "failed" };
    metrics::histogram!(RUN_SECONDS, "outcome" => outcome).record(seconds);
    metrics::counter!(RUNS_TOTAL, "outcome" => outcome).increment(1);
    if succeeded {
        metrics::gauge!(LAST_SUCCESS).set(finished_at_ms as f64 / 1000.0);
    }
}
