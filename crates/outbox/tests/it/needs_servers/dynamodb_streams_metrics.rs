//! The Streams relay's backlog gauges (feature `metrics`) against the AWS emulator: the
//! same `dovetail_outbox_pending` and `_oldest_pending_seconds` as the polling relay,
//! read every `backlog_every`: up while the broker is down, back to zero once it is up.

use std::time::Duration;

use dovetail_events::publish::MemoryPublisher;

use super::dynamodb_store::fresh_outbox;
use super::dynamodb_streams::{Running, commit_rounds, config, wait_until};
use crate::relay::metrics::Recorded;

#[test]
fn the_streams_relay_gauges_the_backlog() {
    let recorded = Recorded::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorded, || {
        runtime.block_on(async {
            let outbox = fresh_outbox("outbox-streams-metrics").await;
            let publisher = MemoryPublisher::new();
            publisher.set_unavailable(true);
            commit_rounds(&outbox, &["pol-1", "pol-2"], 3).await;

            let mut config = config("streams-metrics");
            config.relay.name = "test-outbox".into();
            config.backlog_every = Duration::from_millis(100);
            // Retried in place while the broker is down, never parked.
            config.relay.max_attempts = u32::MAX;
            let relay = Running::start(&outbox, publisher.clone(), config).await;
            wait_until("the gauge shows six pending events", || {
                recorded.last("dovetail_outbox_pending") == Some(6.0)
            })
            .await;
            assert!(
                recorded
                    .last("dovetail_outbox_oldest_pending_seconds")
                    .is_some_and(|seconds| seconds >= 0.0)
            );

            publisher.set_unavailable(false);
            wait_until("the gauge drops to zero once published", || {
                recorded.last("dovetail_outbox_pending") == Some(0.0)
            })
            .await;
            assert_eq!(publisher.published().len(), 6);
            relay.stop().await;
        });
    });
}
