//! The Redis idempotency store against a real Redis: the contract suite, and what the
//! keys look like on the server.

use std::time::Duration;

use dovetail_events::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyStore, LeaseOwner, RedisIdempotencyConfig,
    RedisIdempotencyStore, StoredOutcome,
};
use dovetail_testkit::idempotency_contract::fresh_key;
use redis::aio::MultiplexedConnection;

async fn fresh_store() -> RedisIdempotencyStore<MultiplexedConnection> {
    let redis = dovetail_testkit::redis().await;
    RedisIdempotencyStore::new(
        redis.connection().await,
        RedisIdempotencyConfig::new(redis.key("idem:")),
    )
}

async fn pttl(connection: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query_async(connection)
        .await
        .unwrap()
}

mod contract {
    dovetail_testkit::idempotency_contract_tests!(super::fresh_store);
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_expire_with_pexpire() {
    let redis = dovetail_testkit::redis().await;
    let mut connection = redis.connection().await;
    let prefix = redis.key("idem:");
    let manager = redis::aio::ConnectionManager::new(redis.client().clone())
        .await
        .unwrap();
    let store = RedisIdempotencyStore::new(manager, RedisIdempotencyConfig::new(&prefix));
    let key = fresh_key("pexpire");
    let redis_key = format!("{prefix}{key}");
    let claim = store
        .try_claim(
            &key,
            &Fingerprint::of(b"{}"),
            &LeaseOwner::random(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let ClaimOutcome::Claimed { lease, .. } = claim else {
        panic!("expected a claim, got {claim:?}");
    };
    let in_progress = pttl(&mut connection, &redis_key).await;
    assert!(
        in_progress > 3_600_000 && in_progress <= 3_610_000,
        "an in-progress record outlives its lease by an hour, PTTL = {in_progress}"
    );

    store
        .complete(
            &lease,
            StoredOutcome::from("done"),
            Duration::from_secs(120),
        )
        .await
        .unwrap();
    let processed = pttl(&mut connection, &redis_key).await;
    assert!(
        processed > 110_000 && processed <= 120_000,
        "a processed record lives for its retention, PTTL = {processed}"
    );

    let state: Option<String> = redis::cmd("HGET")
        .arg(&redis_key)
        .arg("state")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(state.as_deref(), Some("processed"));
}

#[tokio::test]
async fn a_processed_record_with_zero_retention_is_gone_at_once() {
    let store = fresh_store().await;
    let key = fresh_key("zero-retain");
    let fingerprint = Fingerprint::of(b"{}");
    let claim = store
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let lease = claim.lease().unwrap().clone();
    store
        .complete(&lease, StoredOutcome::empty(), Duration::ZERO)
        .await
        .unwrap();
    let again = store
        .try_claim(
            &key,
            &fingerprint,
            &LeaseOwner::random(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        matches!(
            again,
            ClaimOutcome::Claimed {
                taken_over_from: None,
                ..
            }
        ),
        "{again:?}"
    );
}
