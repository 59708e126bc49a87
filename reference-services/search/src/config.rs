//! The search service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_SEARCH__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_SEARCH__INDEX__BACKEND=opensearch`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::EventsConfig;
use serde::Deserialize;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_SEARCH";

/// The subscriptions (embedded bus) through which the search service receives policy and
/// claim events, and the queue (SQS) subscribed to both topics.
pub const POLICY_EVENTS_SUBSCRIPTION: &str = "search-service-policy-events";
/// See [`POLICY_EVENTS_SUBSCRIPTION`].
pub const CLAIM_EVENTS_SUBSCRIPTION: &str = "search-service-claim-events";
/// See [`POLICY_EVENTS_SUBSCRIPTION`].
pub const EVENTS_QUEUE: &str = "search-service-events";

/// Everything the search service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8083`).
    pub listen: SocketAddr,
    /// Which index and where (default: tantivy in `data/search`).
    pub index: IndexConfig,
    /// Where events come from (default: the embedded bus in `data/bus.db`).
    pub events: EventsConfig,
    /// Events handled at once per source (default 256): the handlers in flight share one
    /// batching writer, so this bounds the size of a batch.
    pub consumer_in_flight: usize,
    /// The SQLite file of the idempotent consumer's records (default: `idempotency.db` in
    /// `index.tantivy_path`, i.e. `data/search/idempotency.db`); created when missing, on
    /// every backend.
    pub idempotency_path: Option<PathBuf>,
}

impl SearchConfig {
    /// Where the idempotent consumer keeps its records: `idempotency_path`, or
    /// `idempotency.db` in the tantivy directory.
    pub fn idempotency_path(&self) -> PathBuf {
        self.idempotency_path
            .clone()
            .unwrap_or_else(|| self.index.tantivy_path.join("idempotency.db"))
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            index: IndexConfig::default(),
            events: EventsConfig::default(),
            consumer_in_flight: 256,
            idempotency_path: None,
        }
    }
}

/// The search index backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    /// tantivy, in a directory: no server.
    #[default]
    Tantivy,
    /// An OpenSearch node or cluster (needs the `opensearch` feature, on by default).
    Opensearch,
}

/// Where the index lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// `tantivy` (default) or `opensearch`.
    pub backend: IndexBackend,
    /// tantivy's directory (default `data/search`).
    pub tantivy_path: PathBuf,
    /// The OpenSearch node (default `http://127.0.0.1:9200`).
    pub opensearch_url: String,
    /// The alias the service reads and writes (default `dovetail-search`).
    pub opensearch_alias: String,
    /// `refresh_interval` of a new OpenSearch index (default `1s`).
    pub refresh_interval: String,
    /// `number_of_replicas` of a new OpenSearch index (default 0, for one node).
    pub replicas: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            backend: IndexBackend::default(),
            tantivy_path: PathBuf::from("data/search"),
            opensearch_url: "http://127.0.0.1:9200".to_owned(),
            opensearch_alias: "dovetail-search".to_owned(),
            refresh_interval: "1s".to_owned(),
            replicas: 0,
        }
    }
}
