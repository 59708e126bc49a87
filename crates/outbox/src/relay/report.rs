//! [`RelayReport`]: what a relay did between its start and its stop, and the `Meter` that
//! counts it and mirrors the counts as metrics (feature `metrics`).

use std::time::Duration;

use crate::OutboxBacklog;

/// Counts of what a relay did, returned when it stops.
///
/// # Example
/// ```
/// use dovetail_outbox::relay::RelayReport;
///
/// let report = RelayReport::default();
/// assert_eq!(report.published, 0);
/// assert!(report.is_clean());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// Events the broker accepted. An event published again after a lost mark (a crash, a
    /// lost lease, a store failure) counts each time.
    pub published: u64,
    /// Failed publishes recorded in the outbox as attempts (parked ones included). Events
    /// only held back behind an earlier failure are not attempts (see `held_back`).
    pub failed_attempts: u64,
    /// Events parked, after `max_attempts` failures or at once for an error that is not
    /// retriable.
    pub parked: u64,
    /// Events not sent because an earlier event of their aggregate failed in the same batch
    /// (`PublishError::EarlierEventFailed`). They are left as they were, not counted as
    /// attempts, and go out after the earlier event.
    pub held_back: u64,
    /// Batches fetched and handed to the publisher.
    pub batches: u64,
    /// Times this relay took the lease with a new fencing token (at its start, after a
    /// loss, or from a relay that died).
    pub lease_takeovers: u64,
    /// Times this relay stopped publishing because its lease was taken over or lapsed
    /// before it could renew it.
    pub leases_lost: u64,
    /// Outbox operations that failed (fetch, marks, lease calls, backlog); each was retried.
    pub store_errors: u64,
}

impl RelayReport {
    /// Whether nothing happened that an operator should look at: no event parked, no store
    /// error, no lease lost.
    pub fn is_clean(&self) -> bool {
        self.parked == 0 && self.store_errors == 0 && self.leases_lost == 0
    }
}

/// Counts into a [`RelayReport`]; with the `metrics` feature, the same counts as counters
/// labelled with the outbox's name, publish latency as a histogram and the backlog as
/// gauges.
#[derive(Debug)]
pub(crate) struct Meter {
    /// The `outbox` label.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    outbox: String,
    report: RelayReport,
}

impl Meter {
    pub(crate) fn new(outbox: &str) -> Self {
        #[cfg(feature = "metrics")]
        describe();
        Self {
            outbox: outbox.to_owned(),
            report: RelayReport::default(),
        }
    }

    pub(crate) fn report(&self) -> RelayReport {
        self.report
    }

    pub(crate) fn batch(&mut self) {
        self.report.batches += 1;
    }

    pub(crate) fn lease_taken(&mut self) {
        self.report.lease_takeovers += 1;
    }

    pub(crate) fn lease_lost(&mut self) {
        self.report.leases_lost += 1;
    }

    pub(crate) fn store_error(&mut self) {
        self.report.store_errors += 1;
    }

    pub(crate) fn held_back(&mut self, count: u64) {
        self.report.held_back += count;
    }

    pub(crate) fn published(&mut self, count: u64) {
        self.report.published += count;
        #[cfg(feature = "metrics")]
        metrics::counter!("dovetail_outbox_published_total", "outbox" => self.outbox.clone())
            .increment(count);
    }

    /// `failed` attempts recorded, of which `parked` parked their record.
    pub(crate) fn failed(&mut self, failed: u64, parked: u64) {
        self.report.failed_attempts += failed;
        self.report.parked += parked;
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("dovetail_outbox_publish_failures_total", "outbox" => self.outbox.clone())
                .increment(failed);
            metrics::counter!("dovetail_outbox_parked_total", "outbox" => self.outbox.clone())
                .increment(parked);
        }
    }

    /// How long the publisher took for one batch.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn publish_time(&self, elapsed: Duration) {
        #[cfg(feature = "metrics")]
        metrics::histogram!("dovetail_outbox_publish_seconds", "outbox" => self.outbox.clone())
            .record(elapsed.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = elapsed;
    }

    /// The lag gauges.
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn backlog(&self, backlog: &OutboxBacklog) {
        #[cfg(feature = "metrics")]
        {
            #[allow(clippy::cast_precision_loss)] // counts far below 2^52
            let (pending, parked) = (backlog.pending as f64, backlog.parked as f64);
            let oldest = backlog.oldest_pending.unwrap_or_default().as_secs_f64();
            metrics::gauge!("dovetail_outbox_pending", "outbox" => self.outbox.clone())
                .set(pending);
            metrics::gauge!("dovetail_outbox_parked", "outbox" => self.outbox.clone()).set(parked);
            metrics::gauge!("dovetail_outbox_oldest_pending_seconds", "outbox" => self.outbox.clone())
                .set(oldest);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = backlog;
    }
}

/// Units and descriptions of the relay's metrics, for recorders that export them.
#[cfg(feature = "metrics")]
fn describe() {
    use metrics::Unit;
    metrics::describe_counter!(
        "dovetail_outbox_published_total",
        Unit::Count,
        "Outbox events the broker accepted (republished ones count again)."
    );
    metrics::describe_counter!(
        "dovetail_outbox_publish_failures_total",
        Unit::Count,
        "Failed publish attempts of outbox events."
    );
    metrics::describe_counter!(
        "dovetail_outbox_parked_total",
        Unit::Count,
        "Outbox events parked after too many failures or a non-retriable error."
    );
    metrics::describe_histogram!(
        "dovetail_outbox_publish_seconds",
        Unit::Seconds,
        "Time the publisher took for one batch of outbox events."
    );
    metrics::describe_gauge!(
        "dovetail_outbox_pending",
        Unit::Count,
        "Committed outbox events not yet published, parked ones included."
    );
    metrics::describe_gauge!(
        "dovetail_outbox_oldest_pending_seconds",
        Unit::Seconds,
        "Age of the oldest committed outbox event not yet published (0 when none)."
    );
    metrics::describe_gauge!(
        "dovetail_outbox_parked",
        Unit::Count,
        "Outbox events parked, waiting for an operator."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_counts_into_the_report() {
        let mut meter = Meter::new("test");
        meter.batch();
        meter.published(3);
        meter.failed(2, 1);
        meter.held_back(4);
        meter.lease_taken();
        meter.publish_time(Duration::from_millis(5));
        let report = meter.report();
        assert_eq!(
            (
                report.batches,
                report.published,
                report.failed_attempts,
                report.parked
            ),
            (1, 3, 2, 1)
        );
        assert_eq!((report.held_back, report.lease_takeovers), (4, 1));
        assert!(!report.is_clean(), "a parked event needs an operator");
    }
}
