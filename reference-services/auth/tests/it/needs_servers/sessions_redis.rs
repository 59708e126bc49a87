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

/// A redis-server of this test's own on a free port, without persistence, that the test
/// can kill and start again.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start_on(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (cargo xtask servers installs it)");
        Self {
            port,
            child: Some(child),
        }
    }

    async fn wait_ready(&self) {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).unwrap();
        for _ in 0..250 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!(
            "the test's redis-server on port {} never answered",
            self.port
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn a_redis_that_dies_mid_run_fails_closed_and_is_used_again_once_it_is_back() {
    // The shared server must be there too: this test runs where the others do.
    dovetail_testkit::redis().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = OwnRedis::start_on(port);
    redis.wait_ready().await;
    let service = crate::support::Service::start_with(|config| {
        config.sessions.backend = dovetail_auth::sessions::SessionBackend::Redis;
        config.sessions.url = Some(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    let credentials =
        serde_json::json!({"email": "ada@example.com", "password": crate::support::PASSWORD});
    let log_in = || service.post("/sessions", &credentials);
    let before = log_in().await;
    assert_eq!(before.status(), 200);
    let refresh_token = before.json::<serde_json::Value>().await.unwrap()["refresh_token"].clone();

    redis.kill();
    let down = log_in().await;
    assert_eq!(down.status(), 503, "fails closed while Redis is gone");
    assert_eq!(down.headers()["retry-after"], "5");
    let refresh = service
        .post(
            "/sessions/refresh",
            &serde_json::json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(refresh.status(), 503);

    // Back, empty (no persistence): the service reconnects by itself; the sessions kept in
    // the lost server are gone, so that refresh token is refused and a log-in works.
    let _redis = OwnRedis::start_on(port);
    _redis.wait_ready().await;
    let mut status = 0;
    for _ in 0..100 {
        status = log_in().await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the service uses Redis again once it is back");
    let lost = service
        .post(
            "/sessions/refresh",
            &serde_json::json!({"refresh_token": refresh_token}),
        )
        .await;
    assert_eq!(lost.status(), 401, "a session of the lost server is gone");
    service.stop().await;
}
