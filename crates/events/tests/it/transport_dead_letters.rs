//! The dead letters of an event source on the embedded bus: their depth as read and as
//! the `dovetail_consumer_dead_letters` gauge, and the redrive back to the consumer.

use std::time::{Duration, Instant};

use dovetail_events::bus::EmbeddedBus;
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::publish::Publisher;
use dovetail_events::transport::{Subscription, Transport, TypeFilter, record_dead_letters};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::sync::oneshot;

use crate::support::policy_event;

/// `dovetail_consumer_dead_letters` as a Prometheus scrape of `depths` shows it.
pub(crate) fn scraped_gauge(
    depths: &[dovetail_events::transport::DeadLetterDepth],
    queue: &str,
) -> Option<f64> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || record_dead_letters(depths));
    let prefix = format!("dovetail_consumer_dead_letters{{queue=\"{queue}\"}} ");
    handle.render().lines().find_map(|line| {
        line.strip_prefix(&prefix)
            .map(|value| value.parse().unwrap())
    })
}

#[tokio::test]
async fn rejected_events_show_as_dead_letters_until_redriven() {
    let bus = EmbeddedBus::open_in_memory().unwrap();
    let transport = Transport::embedded(bus.clone());
    let source = transport
        .subscribe(&Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All))
        .await
        .unwrap();
    let queue = "claim-service-policy-events";
    assert_eq!(source.parts(), [queue]);
    let before = source.dead_letters().await.unwrap();
    assert_eq!(before[0].depth, 0);
    assert_eq!(scraped_gauge(&before, queue), Some(0.0));

    let publisher = transport.publisher("policy-events").await.unwrap();
    let events = [policy_event("p-1", 1, 0), policy_event("p-2", 1, 0)];
    for result in publisher.publish_batch(&events).await {
        result.unwrap();
    }
    let rejecting = tower::service_fn(|_: Delivery| async {
        Err::<(), _>(HandlerError::rejected("unknown product"))
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(source.clone().run(rejecting, async move {
        let _ = stopped.await;
    }));
    let started = Instant::now();
    while bus.dead_letters(queue).await.unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "both events dead-lettered within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();

    let depths = source.dead_letters().await.unwrap();
    assert_eq!(depths[0].queue, queue);
    assert_eq!(depths[0].depth, 2);
    assert_eq!(scraped_gauge(&depths, queue), Some(2.0));

    assert_eq!(source.redrive_dead_letters(queue).await.unwrap(), Some(2));
    assert_eq!(source.dead_letters().await.unwrap()[0].depth, 0);
    assert_eq!(
        bus.backlog(queue).await.unwrap().pending,
        2,
        "back in the subscription"
    );
    assert_eq!(
        source.redrive_dead_letters("another-queue").await.unwrap(),
        None
    );
}
