//! The idempotent consumer layer: duplicates have no second effect, failures release the
//! key, races between consumers run the handler once, heartbeats keep slow handlers'
//! leases, and bad keys are rejected — on the memory and SQLite stores, and end to end on
//! the embedded bus with duplicated publishes.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_events::idempotency::{
    IdempotencyConfig, IdempotencyLayer, IdempotencyStore, InProgressPolicy,
    MemoryIdempotencyStore, SqliteIdempotencyStore,
};
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};

use crate::support::policy_event;

impl Service<Delivery> for Effects {
    type Response = ();
    type Error = HandlerError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), HandlerError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), HandlerError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        Box::pin(self.clone().apply(delivery))
    }
}

fn delivery_of(envelope: &Envelope, message_id: &str) -> Delivery {
    Delivery::new(
        message_id,
        String::from_utf8(envelope.to_json_bytes()).unwrap(),
    )
}

fn config() -> IdempotencyConfig {
    let mut config = IdempotencyConfig::new("test-consumer");
    config.lease = Duration::from_millis(400);
    config.heartbeat_every = Duration::from_millis(100);
    config
}

/// A handler that counts its effects per event id, optionally slow or failing first.
#[derive(Clone, Default)]
struct Effects {
    applied: Arc<Mutex<HashMap<String, usize>>>,
    calls: Arc<AtomicUsize>,
    fail_first: Arc<AtomicUsize>,
    delay: Duration,
}

impl Effects {
    /// The handler: `Effects` is itself the service.
    fn handler(&self) -> Self {
        self.clone()
    }

    async fn apply(self, delivery: Delivery) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandlerError::retriable("the database is down"));
        }
        let envelope: Envelope = serde_json::from_str(&delivery.body).unwrap();
        *self
            .applied
            .lock()
            .unwrap()
            .entry(envelope.id().to_string())
            .or_default() += 1;
        Ok(())
    }

    fn applied(&self, envelope: &Envelope) -> usize {
        self.applied
            .lock()
            .unwrap()
            .get(&envelope.id().to_string())
            .copied()
            .unwrap_or(0)
    }
}

#[tokio::test]
async fn a_duplicate_has_no_second_effect_and_a_cached_one_costs_no_round_trip() {
    let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new(), config());
    let effects = Effects::default();
    let service = layer.layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);

    service
        .clone()
        .oneshot(delivery_of(&event, "m-1"))
        .await
        .unwrap();
    assert_eq!(
        layer.stats().store_calls(),
        2,
        "first delivery: claim + complete"
    );
    // The relay republished it: a new message id, the same event.
    service
        .clone()
        .oneshot(delivery_of(&event, "m-2"))
        .await
        .unwrap();

    assert_eq!(effects.applied(&event), 1);
    assert_eq!(layer.stats().duplicates_from_cache(), 1);
    assert_eq!(
        layer.stats().store_calls(),
        2,
        "the cached duplicate made no store call"
    );
}

#[tokio::test]
async fn without_the_cache_a_duplicate_is_answered_by_the_store() {
    let mut config = config();
    config.cache_capacity = None;
    let store = SqliteIdempotencyStore::open_in_memory().unwrap();
    let layer = IdempotencyLayer::new(store, config);
    let effects = Effects::default();
    let service = layer.layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);

    service
        .clone()
        .oneshot(delivery_of(&event, "m-1"))
        .await
        .unwrap();
    service
        .clone()
        .oneshot(delivery_of(&event, "m-2"))
        .await
        .unwrap();

    assert_eq!(effects.applied(&event), 1);
    assert_eq!(layer.stats().duplicates_from_store(), 1);
    assert_eq!(
        layer.stats().store_calls(),
        3,
        "claim + complete, then one claim"
    );
}

#[tokio::test]
async fn a_failed_handler_releases_the_key_so_the_redelivery_runs_at_once() {
    let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new(), config());
    let effects = Effects::default();
    effects.fail_first.store(1, Ordering::SeqCst);
    let service = layer.layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);

    let error = service
        .clone()
        .oneshot(delivery_of(&event, "m-1"))
        .await
        .unwrap_err();
    assert!(error.is_retriable());
    service
        .clone()
        .oneshot(delivery_of(&event, "m-1"))
        .await
        .unwrap();
    assert_eq!(effects.applied(&event), 1);
    assert_eq!(effects.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn two_consumers_racing_on_one_event_run_the_handler_once() {
    let store = Arc::new(MemoryIdempotencyStore::new());
    let effects = Effects {
        delay: Duration::from_millis(200),
        ..Effects::default()
    };
    let first = IdempotencyLayer::new(Arc::clone(&store), config()).layer(effects.handler());
    let mut waiting = config();
    waiting.in_progress = InProgressPolicy::Wait {
        poll: Duration::from_millis(20),
        max_wait: Duration::from_secs(2),
    };
    let second = IdempotencyLayer::new(Arc::clone(&store), waiting).layer(effects.handler());
    let third = IdempotencyLayer::new(Arc::clone(&store), config()).layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);

    let (a, b, c) = tokio::join!(
        first.oneshot(delivery_of(&event, "m-1")),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            second.oneshot(delivery_of(&event, "m-1")).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            third.oneshot(delivery_of(&event, "m-1")).await
        },
    );
    a.unwrap();
    b.expect("the waiting consumer sees the key processed");
    let retry_later = c.expect_err("the other is told to retry later");
    assert!(retry_later.is_retriable(), "{retry_later}");
    assert!(
        retry_later.reason().contains("another consumer"),
        "{retry_later}"
    );
    assert_eq!(effects.applied(&event), 1);
}

#[tokio::test]
async fn a_slow_handler_keeps_its_lease_by_heartbeat() {
    let store = Arc::new(MemoryIdempotencyStore::new());
    let effects = Effects {
        delay: Duration::from_millis(1_200),
        ..Effects::default()
    };
    let slow = IdempotencyLayer::new(Arc::clone(&store), config()).layer(effects.handler());
    let other = IdempotencyLayer::new(Arc::clone(&store), config()).layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);

    let (slow, other) = tokio::join!(slow.oneshot(delivery_of(&event, "m-1")), async {
        // Three lease lengths later, the lease would have expired without heartbeats.
        tokio::time::sleep(Duration::from_millis(900)).await;
        other.oneshot(delivery_of(&event, "m-1")).await
    });
    slow.unwrap();
    assert!(
        other.unwrap_err().is_retriable(),
        "still in progress, not taken over"
    );
    assert_eq!(effects.applied(&event), 1);
}

#[tokio::test]
async fn a_reused_event_id_with_another_body_and_a_body_without_id_are_rejected() {
    let layer = IdempotencyLayer::new(MemoryIdempotencyStore::new(), config());
    let effects = Effects::default();
    let service = layer.layer(effects.handler());
    let event = policy_event("pol-1", 1, 0);
    service
        .clone()
        .oneshot(delivery_of(&event, "m-1"))
        .await
        .unwrap();

    let forged = String::from_utf8(event.to_json_bytes())
        .unwrap()
        .replace("\"pol-1\"", "\"pol-9\"");
    let error = service
        .clone()
        .oneshot(Delivery::new("m-2", forged))
        .await
        .unwrap_err();
    assert!(
        !error.is_retriable() && error.reason().contains("different payload"),
        "{error}"
    );

    let error = service
        .clone()
        .oneshot(Delivery::new("m-3", "{}"))
        .await
        .unwrap_err();
    assert!(
        !error.is_retriable() && error.reason().contains("`id`"),
        "{error}"
    );
    assert_eq!(layer.stats().mismatches(), 1);
}

/// Deliveries of a few events, duplicated and shuffled, spread over three consumers that
/// share a store, some of whose handlers fail once: every event's effect lands exactly once.
fn run_schedule<St: IdempotencyStore + 'static>(
    store: &Arc<St>,
    schedule: &[(usize, usize)],
    failures: usize,
) -> Result<(), TestCaseError> {
    let events: Vec<Envelope> = (0..4)
        .map(|i| policy_event(&format!("p{i}"), 1, 0))
        .collect();
    let effects = Effects {
        delay: Duration::from_millis(1),
        ..Effects::default()
    };
    effects.fail_first.store(failures, Ordering::SeqCst);
    let mut config = config();
    config.cache_capacity = NonZeroUsize::new(2);
    let consumers: Vec<_> = (0..3)
        .map(|_| IdempotencyLayer::new(Arc::clone(store), config.clone()).layer(effects.handler()))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Every delivery is retried (as a broker would redeliver) until it is acknowledged.
        let deliveries = schedule.iter().map(|&(event, consumer)| {
            let service = consumers[consumer].clone();
            let delivery = delivery_of(&events[event], &format!("m-{event}"));
            async move {
                for _ in 0..200 {
                    match service.clone().oneshot(delivery.clone()).await {
                        Ok(()) => return,
                        Err(error) if error.is_retriable() => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(error) => panic!("rejected: {error}"),
                    }
                }
                panic!("never acknowledged");
            }
        });
        futures_join_all(deliveries).await;
    });
    for (index, event) in events.iter().enumerate() {
        let delivered = schedule.iter().any(|&(e, _)| e == index);
        prop_assert_eq!(
            effects.applied(event),
            usize::from(delivered),
            "event {}",
            index
        );
    }
    Ok(())
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    // Poll them concurrently on this task.
    std::future::poll_fn(|cx| {
        set.retain_mut(|future| future.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn exactly_one_effect_per_event_on_the_memory_store(
        schedule in proptest::collection::vec((0_usize..4, 0_usize..3), 1..16),
        failures in 0_usize..3,
    ) {
        run_schedule(&Arc::new(MemoryIdempotencyStore::new()), &schedule, failures)?;
    }

    #[test]
    fn exactly_one_effect_per_event_on_the_sqlite_store(
        schedule in proptest::collection::vec((0_usize..4, 0_usize..3), 1..16),
        failures in 0_usize..3,
    ) {
        run_schedule(&Arc::new(SqliteIdempotencyStore::open_in_memory().unwrap()), &schedule, failures)?;
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn on_the_embedded_bus_a_republished_batch_is_applied_once() {
    use dovetail_events::bus::{
        BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
    };
    use dovetail_events::publish::Publisher;

    let bus = EmbeddedBus::open_in_memory().unwrap();
    bus.create_topic("t").await.unwrap();
    bus.subscribe(BusSubscription {
        name: "s".into(),
        topic: "t".into(),
        filter: SubscriptionFilter::all(),
        max_receives: 5,
    })
    .await
    .unwrap();
    let events: Vec<Envelope> = (1..=20_u64)
        .map(|n| policy_event(&format!("p{}", n % 4), n, 0))
        .collect();
    let effects = Effects::default();
    let layer = IdempotencyLayer::new(SqliteIdempotencyStore::open_in_memory().unwrap(), config());

    for _ in 0..3 {
        // A relay that crashed after publishing, before recording it, publishes again.
        let results = bus.publisher("t").publish_batch(&events).await;
        assert!(results.iter().all(Result::is_ok));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let consumer = tokio::spawn(
            BusConsumer::new(bus.clone(), BusConsumerConfig::new("s"))
                .run(layer.layer(effects.handler()), stopped),
        );
        while bus.backlog("s").await.unwrap().pending > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = stop.send(());
        consumer.await.unwrap().unwrap();
    }
    for event in &events {
        assert_eq!(effects.applied(event), 1, "event {}", event.id());
    }
    assert_eq!(layer.stats().duplicates_from_cache(), 40);
}
