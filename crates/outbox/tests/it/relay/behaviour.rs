//! The relay's behaviour, one rule per test, on the memory outbox and the memory broker:
//! wake-ups, retries with backoff, parking, per-aggregate order under failures, leases
//! between relays, renewal during long batches, and shutdown.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dovetail_events::consumer::RetryBackoff;
use dovetail_events::envelope::Envelope;
use dovetail_outbox::relay::{Relay, RelayConfig};
use dovetail_outbox::{OutboxError, OutboxStore};

use super::fixtures::{
    Controls, Entry, Refusal, World, event, eventually, fast_config, key, lease_is_free,
    now_or_never, wake,
};

const SECOND: Duration = Duration::from_secs(1);

fn keys(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(aggregate, sequence)| ((*aggregate).to_owned(), *sequence))
        .collect()
}

#[tokio::test]
async fn a_commit_wakes_the_relay_at_once_while_polling_is_slow() {
    let world = World::new();
    let signal = wake();
    let mut config = fast_config("r0");
    config.poll_interval = Duration::from_secs(60);
    config.wake = Some(Arc::clone(&signal));
    let relay = world.start(0, config);
    tokio::time::sleep(Duration::from_millis(50)).await; // it took the lease, found nothing, and sleeps

    world.store.commit(vec![event("c-1", 1)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        world.published().is_empty(),
        "without a wake-up it waits for its poll"
    );

    let woken = Instant::now();
    signal.notify_one();
    eventually("the woken relay published", SECOND, || {
        !world.published().is_empty()
    })
    .await;
    assert!(
        woken.elapsed() < Duration::from_millis(500),
        "{:?}",
        woken.elapsed()
    );

    // A wake-up given while the relay is busy is kept (notify_one), not lost.
    world.store.commit(vec![event("c-1", 2)]);
    signal.notify_one();
    signal.notify_one();
    eventually("the second commit is published", SECOND, || {
        world.published().len() == 2
    })
    .await;

    let report = relay.stop().await;
    assert_eq!(report.published, 2);
    assert_eq!(report.lease_takeovers, 1);
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn failed_publishes_are_retried_after_a_growing_backoff() {
    let world = World::new();
    let mut config = fast_config("r0");
    config.poll_interval = Duration::from_secs(60); // only the retry time can bring it back
    config.backoff = RetryBackoff::new(Duration::from_millis(40), SECOND);
    config.max_attempts = 10;
    world.broker.set_unavailable(true);
    world.store.commit(vec![event("c-1", 1)]);
    let relay = world.start(0, config);

    let failures = || {
        world
            .journal
            .entries()
            .into_iter()
            .filter_map(|entry| match entry {
                Entry::Failed {
                    failures,
                    at,
                    result,
                    ..
                } => {
                    assert_eq!(result, Ok(()));
                    assert_eq!(failures.len(), 1);
                    Some((at, failures[0].retry_at.expect("retriable")))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    eventually("three attempts failed", 2 * SECOND, || {
        failures().len() >= 3
    })
    .await;
    world.broker.set_unavailable(false);
    eventually("the event is published", 2 * SECOND, || {
        world.published().len() == 1
    })
    .await;

    let failures = failures();
    for (attempt, (at, retry_at)) in failures.iter().take(3).enumerate() {
        let expected = Duration::from_millis(40) * 2_u32.pow(u32::try_from(attempt).unwrap());
        let scheduled = retry_at.duration_since(*at).unwrap_or_default();
        assert!(
            scheduled <= expected && scheduled + Duration::from_millis(30) >= expected,
            "attempt {attempt}: retry in {scheduled:?}, expected {expected:?}"
        );
    }
    for pair in failures.windows(2).take(2) {
        let waited = pair[1].0.duration_since(pair[0].0).unwrap();
        let promised = pair[0].1.duration_since(pair[0].0).unwrap();
        assert!(
            waited + Duration::from_millis(5) >= promised,
            "retried after {waited:?}, before {promised:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "the retry came on time, not at the next poll"
        );
    }

    let report = relay.stop().await;
    assert_eq!(report.published, 1);
    assert_eq!(
        report.failed_attempts,
        u64::try_from(failures.len()).unwrap()
    );
    assert_eq!(report.parked, 0);
}

#[tokio::test]
async fn records_are_parked_after_max_attempts_until_unparked() {
    let world = World::new();
    let signal = wake();
    let mut config = fast_config("r0");
    config.max_attempts = 3;
    config.backoff = RetryBackoff::new(Duration::from_millis(1), Duration::from_millis(2));
    config.wake = Some(Arc::clone(&signal));
    world.broker.set_unavailable(true);
    world
        .store
        .commit(vec![event("a", 1), event("a", 2), event("b", 1)]);
    let relay = world.start(0, config);

    eventually("a:1 and b:1 are parked", 2 * SECOND, || {
        now_or_never(world.store.backlog()).unwrap().parked == 2
    })
    .await;
    world.broker.set_unavailable(false);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(
        world.published().is_empty(),
        "parked records and those behind them wait"
    );
    assert_eq!(world.backlog().await.pending, 3);

    assert_eq!(world.store.unpark_all().await.unwrap(), 2);
    signal.notify_one();
    eventually("everything is published", SECOND, || {
        world.published().len() == 3
    })
    .await;
    let published = world.published_keys();
    let a1 = published
        .iter()
        .position(|k| *k == ("a".into(), 1))
        .unwrap();
    let a2 = published
        .iter()
        .position(|k| *k == ("a".into(), 2))
        .unwrap();
    assert!(a1 < a2, "{published:?}");

    let report = relay.stop().await;
    assert_eq!(report.parked, 2);
    assert_eq!(
        report.failed_attempts, 6,
        "three attempts each for a:1 and b:1; a:2 never tried alone"
    );
    assert_eq!(report.published, 3);
    assert!(report.held_back >= 1, "a:2 was held back behind a:1");
    assert!(!report.is_clean());
}

#[tokio::test]
async fn an_error_that_is_not_retriable_parks_at_once() {
    let world = World::new();
    let batch = vec![event("a", 1), event("a", 2), event("b", 1)];
    world.reject_once(batch[0].id());
    world.store.commit(batch);
    let mut config = fast_config("r0");
    config.max_attempts = 10;
    let relay = world.start(0, config);

    eventually("b:1 is published", SECOND, || world.published().len() == 1).await;
    eventually("a:1 is parked", SECOND, || {
        now_or_never(world.store.backlog()).unwrap().parked == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        world.published_keys(),
        keys(&[("b", 1)]),
        "a:2 waits behind the parked a:1"
    );
    let parked_reason = world
        .journal
        .entries()
        .into_iter()
        .find_map(|entry| match entry {
            Entry::Failed { failures, .. } => Some(failures[0].clone()),
            _ => None,
        });
    let parked = parked_reason.unwrap();
    assert_eq!(parked.retry_at, None);
    assert!(parked.reason.contains("not retriable"), "{}", parked.reason);

    world.store.unpark_all().await.unwrap();
    eventually("a:1 and a:2 follow", SECOND, || {
        world.published().len() == 3
    })
    .await;
    assert_eq!(
        world.published_keys(),
        keys(&[("b", 1), ("a", 1), ("a", 2)])
    );
    let report = relay.stop().await;
    assert_eq!((report.failed_attempts, report.parked), (1, 1));
}

#[tokio::test]
async fn a_failure_holds_back_only_its_aggregate_and_order_is_kept() {
    let world = World::new();
    let batch = vec![
        event("a", 1),
        event("b", 1),
        event("a", 2),
        event("a", 3),
        event("b", 2),
    ];
    let a2 = batch[2].id();
    world.broker.fail_once(a2);
    let positions = world.store.commit(batch);
    let relay = world.start(0, fast_config("r0"));

    eventually("everything is published", SECOND, || {
        world.published().len() == 5
    })
    .await;
    assert_eq!(
        world.published_keys(),
        keys(&[("a", 1), ("b", 1), ("b", 2), ("a", 2), ("a", 3)]),
        "b goes on while a waits for a:2, and a:3 never overtakes a:2"
    );
    // Only a:2 failed as an attempt; a:3 (EarlierEventFailed) was left as it was.
    let failed: Vec<_> = world
        .journal
        .entries()
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Failed { failures, .. } => {
                Some(failures.iter().map(|f| f.position).collect::<Vec<_>>())
            }
            _ => None,
        })
        .collect();
    assert_eq!(failed, [vec![positions[2]]]);
    let report = relay.stop().await;
    assert_eq!(
        (report.failed_attempts, report.held_back, report.published),
        (1, 1, 5)
    );
}

#[tokio::test]
async fn order_is_kept_when_an_aggregate_spans_batches() {
    let world = World::new();
    let batch: Vec<Envelope> = (1..=6).map(|sequence| event("a", sequence)).collect();
    world.broker.fail_once(batch[3].id());
    world.store.commit(batch);
    let mut config = fast_config("r0");
    config.batch_size = 2;
    let relay = world.start(0, config);
    eventually("everything is published", SECOND, || {
        world.published().len() == 6
    })
    .await;
    let sequences: Vec<u64> = world.published().iter().map(|e| key(e).1).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    let report = relay.stop().await;
    assert_eq!(report.failed_attempts, 1);
}

#[tokio::test]
async fn a_lease_lost_at_mark_time_stops_the_batch_and_the_relay_takes_the_lease_again() {
    let world = World::new();
    let first = event("a", 1);
    let id = first.id();
    world.store.commit(vec![first]);
    let relay = world.start(0, fast_config("r0"));
    Controls::set(&relay.controls.lose_next_mark, true);

    eventually("a:1 is published and marked", SECOND, || {
        now_or_never(world.store.backlog()).unwrap().pending == 0
    })
    .await;
    let published: Vec<_> = world.published().iter().map(Envelope::id).collect();
    assert_eq!(
        published,
        [id, id],
        "published again after the refused mark: at least once"
    );
    let refused = world.journal.entries().into_iter().filter(|entry| {
        matches!(
            entry,
            Entry::Marked {
                result: Err(Refusal::LeaseLost),
                ..
            }
        )
    });
    assert_eq!(refused.count(), 1);
    let report = relay.stop().await;
    assert_eq!(report.leases_lost, 1);
    assert_eq!(report.published, 2);
}

#[tokio::test]
async fn only_the_holder_publishes_and_a_standby_takes_over_from_a_killed_relay() {
    let world = World::new();
    let signal = wake();
    let ttl = Duration::from_millis(300);
    let configs = ["r0", "r1"].map(|owner| {
        let mut config = fast_config(owner);
        config.lease_ttl = ttl;
        config.renew_every = Duration::from_millis(50);
        config.wake = Some(Arc::clone(&signal));
        config
    });
    let [first, second] = configs;
    let mut relays = vec![world.start(0, first), world.start(1, second)];

    for sequence in 1..=10 {
        world
            .store
            .commit(vec![event("a", sequence), event("b", sequence)]);
        signal.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("the first commits are published", SECOND, || {
        world.published().len() == 20
    })
    .await;
    let publishers = world.publishing_relays();
    let holder = publishers[0];
    assert!(
        publishers.iter().all(|relay| *relay == holder),
        "one relay at a time: {publishers:?}"
    );

    // The holder hangs between publish and mark, and dies there.
    let holder_index = relays.iter().position(|r| r.relay == holder).unwrap();
    let dying = relays.remove(holder_index);
    Controls::set(&dying.controls.hang_after_publish, true);
    let unmarked = event("a", 11);
    let unmarked_id = unmarked.id();
    world.store.commit(vec![unmarked]);
    signal.notify_one();
    eventually("the holder hangs mid-batch", SECOND, || {
        Controls::get(&dying.controls.hanging)
    })
    .await;
    dying.kill().await;
    let killed = Instant::now();

    world.store.commit(vec![event("b", 11)]);
    eventually("the standby published the rest", 3 * SECOND, || {
        now_or_never(world.store.backlog()).unwrap().pending == 0
    })
    .await;
    let took_over_after = killed.elapsed();
    assert!(
        took_over_after >= ttl - Duration::from_millis(100),
        "the standby waited for the dead relay's lease to lapse; it took over after {took_over_after:?}"
    );
    let survivor = relays.pop().unwrap();
    assert_ne!(world.publishing_relays().last(), Some(&holder));
    let times_published = world
        .published()
        .iter()
        .filter(|e| e.id() == unmarked_id)
        .count();
    assert_eq!(
        times_published, 2,
        "the dead relay's unmarked event is published again"
    );

    let report = survivor.stop().await;
    assert_eq!(report.lease_takeovers, 1);
    assert_eq!(report.published, 2);
}

#[tokio::test]
async fn the_lease_is_renewed_during_a_long_batch() {
    let world = World::new();
    let ttl = Duration::from_millis(120);
    let configs = ["r0", "r1"].map(|owner| {
        let mut config = fast_config(owner);
        config.lease_ttl = ttl;
        config.renew_every = Duration::from_millis(30);
        config
    });
    let [first, second] = configs;
    let (store, publisher, controls) = world.parts(0);
    controls.publish_delay_ms.store(500, Ordering::SeqCst); // four lease lifetimes
    world.store.commit(vec![event("a", 1)]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let slow = tokio::spawn(Relay::new(store, publisher, first).run(async move {
        stopped.await.ok();
    }));
    eventually("the slow relay is publishing", SECOND, || {
        Controls::get(&controls.publishing)
    })
    .await;
    let standby = world.start(1, second);

    eventually("a:1 is marked", 2 * SECOND, || {
        now_or_never(world.store.backlog()).unwrap().pending == 0
    })
    .await;
    assert_eq!(
        world.published().len(),
        1,
        "the standby never took over the live relay's lease"
    );
    stop.send(()).ok();
    let report = slow.await.unwrap().unwrap();
    assert_eq!((report.published, report.leases_lost), (1, 0));
    let standby_report = standby.stop().await;
    assert_eq!(standby_report.published, 0);
}

#[tokio::test]
async fn shutdown_finishes_the_batch_and_releases_the_lease() {
    let world = World::new();
    let mut config = fast_config("r0");
    config.lease_ttl = Duration::from_secs(30);
    config.renew_every = Duration::from_secs(10);
    let relay = world.start(0, config);
    Controls::set(&relay.controls.publishing, false);
    relay.controls.publish_delay_ms.store(100, Ordering::SeqCst);
    world.store.commit(vec![event("a", 1), event("a", 2)]);
    eventually("a batch is being published", SECOND, || {
        Controls::get(&relay.controls.publishing)
    })
    .await;

    let report = relay.stop().await;
    assert_eq!(report.published, 2, "the batch in hand was finished");
    assert_eq!(world.backlog().await.pending, 0, "and marked");
    assert!(
        lease_is_free(&world.store).await,
        "the lease was released, not left to lapse"
    );
}

#[tokio::test]
async fn a_relay_in_standby_stops_at_once() {
    let world = World::new();
    let holder = world
        .store
        .acquire_lease("someone-else", Duration::from_secs(30))
        .await;
    assert!(holder.unwrap().is_some());
    let relay = world.start(0, fast_config("r0"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let report = relay.stop().await;
    assert_eq!((report.lease_takeovers, report.batches), (0, 0));
}

#[tokio::test]
async fn a_configuration_that_cannot_work_is_refused() {
    let world = World::new();
    let (store, publisher, _) = world.parts(0);
    let mut config = RelayConfig::default();
    config.renew_every = config.lease_ttl;
    let error = Relay::new(store, publisher, config)
        .run(std::future::pending::<()>())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, OutboxError::InvalidConfig { reason } if reason.contains("renew_every")),
        "{error}"
    );
}
