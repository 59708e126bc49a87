//! The session store contract on a real Redis, in a key namespace of the test's own,
//! where every key it leaves has a TTL; and the HTTP session flow on Redis.

use dovetail_auth::sessions::RedisSessionStore;

use crate::sessions_api::{rotation_and_reuse, start_on_redis};
use crate::sessions_contract::contract;

async fn redis() -> (RedisSessionStore, dovetail_testkit::RedisFixture) {
    let fixture = dovetail_testkit::redis().await;
    let endpoint = dovetail_testkit::require(dovetail_testkit::Backend::Redis).await;
    let store = RedisSessionStore::open(&endpoint, fixture.key("sessions:")).unwrap();
    (store, fixture)
}

#[tokio::test]
async fn the_redis_session_store_passes_the_contract_and_every_key_has_a_ttl() {
    let (store, fixture) = redis().await;
    contract(store).await;
    let mut connection = fixture.connection().await;
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}:*", fixture.namespace()))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(keys.len() > 10, "the suite leaves keys behind: {keys:?}");
    for kind in [":t:", ":f:", ":u:", ":w:"] {
        assert!(
            keys.iter().any(|key| key.contains(kind)),
            "no {kind} key in {keys:?}"
        );
    }
    for key in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test]
async fn on_redis_log_in_refresh_and_reuse_behave_as_on_sqlite() {
    let fixture = dovetail_testkit::redis().await;
    let service = start_on_redis(&fixture).await;
    rotation_and_reuse(&service).await;
    service.stop().await;
}
