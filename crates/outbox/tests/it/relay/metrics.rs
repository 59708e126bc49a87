//! The relay's metrics (feature `metrics`), read from a recorder local to the test's thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

use super::fixtures::{World, event, eventually, fast_config};

/// Every metric's last value (gauges), total (counters) or samples (histograms), by name
/// and `outbox` label.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recorded(Arc<Mutex<HashMap<String, Vec<f64>>>>);

struct Handle {
    name: String,
    recorded: Recorded,
}

impl Recorded {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let outbox = key
            .labels()
            .find(|label| label.key() == "outbox")
            .map(|label| label.value().to_owned())
            .unwrap_or_default();
        Arc::new(Handle {
            name: format!("{}{{outbox={outbox}}}", key.name()),
            recorded: self.clone(),
        })
    }

    pub(crate) fn values(&self, name: &str) -> Vec<f64> {
        let metric = format!("{name}{{outbox=test-outbox}}");
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&metric)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn total(&self, name: &str) -> f64 {
        self.values(name).iter().sum()
    }

    pub(crate) fn last(&self, name: &str) -> Option<f64> {
        self.values(name).last().copied()
    }
}

impl Handle {
    fn push(&self, value: f64) {
        let mut recorded = self
            .recorded
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        recorded.entry(self.name.clone()).or_default().push(value);
    }
}

impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        #[allow(clippy::cast_precision_loss)]
        self.push(value as f64);
    }

    fn absolute(&self, _value: u64) {}
}

impl GaugeFn for Handle {
    fn increment(&self, _value: f64) {}

    fn decrement(&self, _value: f64) {}

    fn set(&self, value: f64) {
        self.push(value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[test]
fn the_relay_counts_publishes_failures_and_parks_and_gauges_the_backlog() {
    let recorded = Recorded::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorded, || {
        runtime.block_on(async {
            let world = World::new();
            let batch = vec![event("a", 1), event("b", 1), event("c", 1)];
            world.broker.fail_once(batch[0].id());
            world.reject_once(batch[1].id());
            world.store.commit(batch);
            let relay = world.start(0, fast_config("r0"));

            eventually("a:1 and c:1 are published", Duration::from_secs(2), || {
                world.published().len() == 2
            })
            .await;
            eventually(
                "the gauges show one parked record",
                Duration::from_secs(2),
                || {
                    recorded.last("dovetail_outbox_pending") == Some(1.0)
                        && recorded.last("dovetail_outbox_parked") == Some(1.0)
                },
            )
            .await;
            let report = relay.stop().await;
            assert_eq!(
                (report.published, report.failed_attempts, report.parked),
                (2, 2, 1)
            );
        });
    });

    assert!((recorded.total("dovetail_outbox_published_total") - 2.0).abs() < f64::EPSILON);
    assert!((recorded.total("dovetail_outbox_publish_failures_total") - 2.0).abs() < f64::EPSILON);
    assert!((recorded.total("dovetail_outbox_parked_total") - 1.0).abs() < f64::EPSILON);
    let latencies = recorded.values("dovetail_outbox_publish_seconds");
    assert!(latencies.len() >= 2, "one sample per batch: {latencies:?}");
    assert!(latencies.iter().all(|seconds| (0.0..1.0).contains(seconds)));
    let oldest = recorded.values("dovetail_outbox_oldest_pending_seconds");
    assert!(oldest.iter().all(|seconds| *seconds >= 0.0) && !oldest.is_empty());
}
