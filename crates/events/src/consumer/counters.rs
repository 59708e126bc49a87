//! The counts behind a [`ConsumerReport`], and the same counts and handling times as
//! metrics through the `metrics` facade (feature `metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::ConsumerReport;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Handled,
    Retried,
    DeadLettered,
    Failed,
    #[cfg_attr(not(feature = "sqs"), allow(dead_code))]
    Released,
}

impl Outcome {
    /// The value of the `outcome` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Handled => "handled",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Failed => "failed",
            Self::Released => "released",
        }
    }
}

/// Counters shared by a consumer's tasks.
///
/// With the `metrics` feature, each count is also a counter
/// `dovetail_consumer_messages_total{queue, outcome}`, handling times a histogram
/// `dovetail_consumer_handling_seconds{queue, outcome}` (seconds), visibility extensions a
/// counter `dovetail_consumer_visibility_extensions_total{queue}` and failed deletes
/// `dovetail_consumer_delete_failures_total{queue}`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    handled: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    failed: AtomicU64,
    released: AtomicU64,
    delete_failures: AtomicU64,
    visibility_extensions: AtomicU64,
}

fn add(counter: &AtomicU64, count: u64) {
    counter.fetch_add(count, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn received(&self) {
        add(&self.received, 1);
    }

    pub(crate) fn settled(&self, queue: &str, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Handled => &self.handled,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Failed => &self.failed,
            Outcome::Released => &self.released,
        };
        add(counter, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "dovetail_consumer_messages_total",
            "queue" => queue.to_owned(),
            "outcome" => outcome.label()
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = queue;
    }

    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn handling_time(&self, queue: &str, outcome: Outcome, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        metrics::histogram!(
            "dovetail_consumer_handling_seconds",
            "queue" => queue.to_owned(),
            "outcome" => outcome.label()
        )
        .record(elapsed.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = (queue, outcome, elapsed);
    }

    pub(crate) fn visibility_extended(&self, queue: &str) {
        add(&self.visibility_extensions, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!("dovetail_consumer_visibility_extensions_total", "queue" => queue.to_owned())
            .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = queue;
    }

    pub(crate) fn delete_failures(&self, queue: &str, count: usize) {
        let count = u64::try_from(count).unwrap_or(u64::MAX);
        add(&self.delete_failures, count);
        #[cfg(feature = "metrics")]
        metrics::counter!("dovetail_consumer_delete_failures_total", "queue" => queue.to_owned())
            .increment(count);
        #[cfg(not(feature = "metrics"))]
        let _ = queue;
    }

    /// The report so far; messages received and not settled count as abandoned.
    pub(crate) fn report(&self) -> ConsumerReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut report = ConsumerReport {
            received: load(&self.received),
            handled: load(&self.handled),
            retried: load(&self.retried),
            dead_lettered: load(&self.dead_lettered),
            failed: load(&self.failed),
            released: load(&self.released),
            abandoned: 0,
            delete_failures: load(&self.delete_failures),
            visibility_extensions: load(&self.visibility_extensions),
        };
        report.abandoned = report.received.saturating_sub(report.settled());
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsettled_messages_are_abandoned() {
        let counters = Counters::default();
        for _ in 0..4 {
            counters.received();
        }
        counters.settled("q", Outcome::Handled);
        counters.settled("q", Outcome::DeadLettered);
        counters.visibility_extended("q");
        counters.delete_failures("q", 2);
        let report = counters.report();
        assert_eq!(report.received, 4);
        assert_eq!(report.handled, 1);
        assert_eq!(report.dead_lettered, 1);
        assert_eq!(report.abandoned, 2);
        assert_eq!(report.delete_failures, 2);
        assert_eq!(report.visibility_extensions, 1);
        assert!(!report.is_clean());
    }
}
