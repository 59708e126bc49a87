//! The Redis fixture: a client for `DOVETAIL_REDIS_URL` and a key namespace unique to the test.

use crate::backend::{self, Backend};
use crate::error_chain;

/// A Redis client plus a namespace that keeps this test's keys apart from every other's.
#[derive(Debug, Clone)]
pub struct RedisFixture {
    client: ::redis::Client,
    url: String,
    namespace: String,
}

/// Connects to the Redis server named by `DOVETAIL_REDIS_URL`.
///
/// # Panics
/// When no endpoint is configured, it does not answer, or the URL is not a Redis URL.
///
/// # Example
/// ```no_run
/// # async fn example() {
/// let redis = dovetail_testkit::redis().await;
/// let mut connection = redis.connection().await;
/// let key = redis.key("lock");
/// let _: () = redis::cmd("SET").arg(&key).arg("held").query_async(&mut connection).await.unwrap();
/// # }
/// ```
pub async fn redis() -> RedisFixture {
    let endpoint = backend::require(Backend::Redis).await;
    let client = ::redis::Client::open(endpoint.as_str()).unwrap_or_else(|error| {
        panic!(
            "DOVETAIL_REDIS_URL={endpoint} is not a Redis URL: {}",
            error_chain(&error)
        )
    });
    RedisFixture {
        client,
        url: endpoint,
        namespace: crate::unique_name("redis"),
    }
}

impl RedisFixture {
    /// The server's URL, for a component under test that connects by itself.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The client, for opening further connections.
    pub fn client(&self) -> &::redis::Client {
        &self.client
    }

    /// A multiplexed async connection.
    ///
    /// # Panics
    /// When the connection cannot be opened.
    pub async fn connection(&self) -> ::redis::aio::MultiplexedConnection {
        self.client
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to Redis: {}", error_chain(&error)))
    }

    /// This test's namespace, e.g. `dvt-redis-1a2b3c4d5e6f`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `name` inside this test's namespace: `<namespace>:<name>`.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }
}
