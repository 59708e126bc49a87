//! Publish policy events to the embedded bus and consume them idempotently.
//!
//! Run with: `cargo run -p example-events-embedded-bus`
//!
//! The consumer stacks two layers over a handler of typed events: the
//! [`IdempotencyLayer`] makes a republished event harmless, the [`EnvelopeLayer`] decodes
//! the body and traces the handling; the handler upcasts version-1 events to version 2.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::{
    AggregateRef, Envelope, Event, EventMetadata, Sequence, Source, Upcasters,
};
use dovetail_events::idempotency::{IdempotencyConfig, IdempotencyLayer, SqliteIdempotencyStore};
use dovetail_events::publish::Publisher;
use serde::{Deserialize, Serialize};

// ANCHOR: events
/// Version 1, as older producers still publish it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyIssuedV1 {
    /// The policy.
    pub policy_id: String,
}

impl Event for PolicyIssuedV1 {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

/// Version 2 added the product line.
#[derive(Debug, Serialize, Deserialize)]
pub struct PolicyIssued {
    /// The policy.
    pub policy_id: String,
    /// Its product line; `"unknown"` for events from version 1.
    pub product_line: String,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 2;
}

/// How version 1 becomes version 2 on read.
///
/// # Panics
/// Never: each version has one step, registered once.
pub fn upcasters() -> Upcasters {
    let mut upcasters = Upcasters::new();
    upcasters
        .register::<PolicyIssued>(1, |mut payload| {
            payload["product_line"] = "unknown".into();
            Ok(payload)
        })
        .expect("one step per version");
    upcasters
}
// ANCHOR_END: events

/// What the example did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Each event the handler applied: policy id and product line.
    pub applied: Vec<(String, String)>,
    /// Deliveries answered as duplicates.
    pub duplicates: u64,
}

/// Publishes three events (one of them twice, as a relay after a crash would) to a bus in
/// `dir`, consumes them, and says what was applied.
///
/// # Errors
/// When the bus cannot be opened or written.
pub async fn run(dir: &std::path::Path) -> anyhow::Result<Summary> {
    // ANCHOR: setup
    let bus = EmbeddedBus::open(dir.join("bus.db"))?;
    bus.create_topic("policy-events").await?;
    bus.subscribe(BusSubscription {
        name: "claim-service.policies".into(),
        topic: "policy-events".into(),
        filter: SubscriptionFilter::from_json(&serde_json::json!({ "type": ["policy.issued"] }))?,
        max_receives: 5,
    })
    .await?;
    // ANCHOR_END: setup

    // ANCHOR: publish
    let source = Source::parse("policy-service")?;
    let old = Envelope::new(
        source.clone(),
        AggregateRef::parse("policy", "pol-1")?,
        Sequence::FIRST,
        &PolicyIssuedV1 {
            policy_id: "pol-1".into(),
        },
        EventMetadata::default(),
    )?;
    let new = Envelope::new(
        source,
        AggregateRef::parse("policy", "pol-2")?,
        Sequence::FIRST,
        &PolicyIssued {
            policy_id: "pol-2".into(),
            product_line: "home".into(),
        },
        EventMetadata::default(),
    )?;
    let publisher = bus.publisher("policy-events");
    for result in publisher.publish_batch(&[old.clone(), new]).await {
        result?;
    }
    // ANCHOR_END: publish

    // ANCHOR: consume
    let applied = Arc::new(Mutex::new(Vec::new()));
    let upcasters = Arc::new(upcasters());
    let handler = {
        let applied = Arc::clone(&applied);
        tower::service_fn(move |envelope: Envelope| {
            let (applied, upcasters) = (Arc::clone(&applied), Arc::clone(&upcasters));
            async move {
                let event: PolicyIssued = envelope
                    .decode(&upcasters)
                    .map_err(|error| HandlerError::rejected(error.to_string()))?;
                applied
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((event.policy_id, event.product_line));
                Ok::<(), HandlerError>(())
            }
        })
    };
    let idempotency = IdempotencyLayer::new(
        SqliteIdempotencyStore::open(dir.join("idempotency.db"))?,
        IdempotencyConfig::new("claim-service.policies"),
    );
    let service = tower::ServiceBuilder::new()
        .layer(idempotency.clone())
        .layer(EnvelopeLayer)
        .service(handler);
    // ANCHOR_END: consume

    // The consumer runs until the subscription is drained, with a republication of the
    // first event in between, then shuts down gracefully.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(
        BusConsumer::new(
            bus.clone(),
            BusConsumerConfig::new("claim-service.policies"),
        )
        .run(service, stopped),
    );
    wait_until_drained(&bus).await?;
    publisher.publish(&old).await?;
    wait_until_drained(&bus).await?;
    let _ = stop.send(());
    consumer.await??;

    let applied = applied
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(Summary {
        applied,
        duplicates: idempotency.stats().duplicates_from_cache()
            + idempotency.stats().duplicates_from_store(),
    })
}

async fn wait_until_drained(bus: &EmbeddedBus) -> anyhow::Result<()> {
    for _ in 0..500 {
        if bus.backlog("claim-service.policies").await?.pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    anyhow::bail!("the subscription did not drain within 5 s")
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn each_event_is_applied_once_and_the_old_one_upcast() {
        let dir = std::env::temp_dir().join(format!("example-bus-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let summary = super::run(&dir).await.unwrap();
        let mut applied = summary.applied.clone();
        applied.sort();
        assert_eq!(
            applied,
            [
                ("pol-1".into(), "unknown".into()),
                ("pol-2".into(), "home".into())
            ]
        );
        assert_eq!(
            summary.duplicates, 1,
            "the republished event was a duplicate"
        );
    }
}
