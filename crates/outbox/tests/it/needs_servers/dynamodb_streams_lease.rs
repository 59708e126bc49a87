//! The Streams relay keeps its lease through a publish longer than the lease (it renews
//! while the broker call is in flight), against the AWS emulator: a standby relay never
//! takes over, and every event goes out once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{MemoryPublisher, PublishResult, Publisher};

use super::dynamodb_store::fresh_outbox;
use super::dynamodb_streams::{Running, all_published, commit_rounds, config, wait_until};

const LEASE_TTL: Duration = Duration::from_millis(600);

/// A broker whose every call takes two and a half leases.
#[derive(Debug, Clone, Default)]
struct Slow {
    inner: MemoryPublisher,
    called: Arc<AtomicBool>,
}

impl Publisher for Slow {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        self.called.store(true, Ordering::SeqCst);
        tokio::time::sleep(LEASE_TTL * 5 / 2).await;
        self.inner.publish_batch(envelopes).await
    }
}

#[tokio::test]
async fn a_publish_longer_than_the_lease_keeps_it() {
    let outbox = fresh_outbox("outbox-streams-lease").await;
    let events = commit_rounds(&outbox, &["pol-1", "pol-2"], 2).await;
    let short = |owner: &str| {
        let mut config = config(owner);
        config.relay.lease_ttl = LEASE_TTL;
        config.relay.renew_every = Duration::from_millis(150);
        config.relay.poll_interval = Duration::from_millis(50);
        config
    };
    let slow = Slow::default();
    let first = Running::start(&outbox, slow.clone(), short("slow")).await;
    wait_until("the slow relay is publishing", || {
        slow.called.load(Ordering::SeqCst)
    })
    .await;
    let standby_broker = MemoryPublisher::new();
    let standby = Running::start(&outbox, standby_broker.clone(), short("standby")).await;

    wait_until("every event is published", || {
        all_published(&slow.inner, &events)
    })
    .await;
    let first_report = first.stop().await;
    let standby_report = standby.stop().await;
    assert_eq!(first_report.leases_lost, 0, "{first_report:?}");
    assert!(
        standby_broker.published().is_empty(),
        "the standby relay took over: {standby_report:?}"
    );
    assert_eq!(
        slow.inner.published().len(),
        events.len(),
        "each event once"
    );
}
