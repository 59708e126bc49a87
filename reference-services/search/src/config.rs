//! The search service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_SEARCH__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_SEARCH__INDEX__BACKEND=opensearch`, `DOVETAIL_SEARCH__IDEMPOTENCY__BACKEND=dynamodb`
//! or `DOVETAIL_SEARCH__IDENTITY__JWKS_URL=http://auth:8084/.well-known/jwks.json`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_events::transport::{Subscription, TypeFilter};
use dovetail_service_kit::config::{EventsConfig, IdentityConfig};
use serde::Deserialize;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_SEARCH";

/// The consumer name of the search service's subscription: the stem of its resources.
pub const CONSUMER: &str = "search-service";

/// The subscriptions (embedded bus) through which the search service receives policy and
/// claim events, and the queue (SQS) subscribed to both topics, as
/// [`event_subscription`] names them.
pub const POLICY_EVENTS_SUBSCRIPTION: &str = "search-service-policy-events";
/// See [`POLICY_EVENTS_SUBSCRIPTION`].
pub const CLAIM_EVENTS_SUBSCRIPTION: &str = "search-service-claim-events";
/// See [`POLICY_EVENTS_SUBSCRIPTION`].
pub const EVENTS_QUEUE: &str = "search-service-events";

/// What the search service reads: policy events and claim events, filtered by type, with
/// up to `in_flight` handlers at once.
///
/// ```
/// use dovetail_search::config::{EVENTS_QUEUE, CLAIM_EVENTS_SUBSCRIPTION, event_subscription};
///
/// let subscription = event_subscription(256);
/// assert_eq!(subscription.queue_name(), EVENTS_QUEUE);
/// assert_eq!(subscription.bus_subscription_name("claim-events"), CLAIM_EVENTS_SUBSCRIPTION);
/// ```
pub fn event_subscription(in_flight: usize) -> Subscription {
    Subscription::new(CONSUMER)
        .to_topic(
            dovetail_contracts::policy::TOPIC,
            TypeFilter::prefixes(["policy."]),
        )
        .to_topic(
            dovetail_contracts::claim::TOPIC,
            TypeFilter::prefixes(["claim."]),
        )
        .with_max_in_flight(in_flight)
}

/// The DynamoDB table of the idempotent consumer's records, after `events.aws_name_prefix`
/// (default table `dovetail-search-service-idempotency`).
pub const IDEMPOTENCY_TABLE: &str = "search-service-idempotency";

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
    /// How long a handler waits out an unavailable index, retrying in place, before it
    /// gives its event back to the transport (default 300 s); see
    /// [`apply_patiently`](crate::consumer::apply_patiently).
    pub index_outage_patience_secs: u64,
    /// Where the idempotent consumer keeps its records (default: the SQLite file
    /// `idempotency.db` in `index.tantivy_path`).
    pub idempotency: IdempotencyStoreConfig,
    /// Who may call the API: the issuer and JWKS of the auth service whose bearer tokens
    /// (audience [`SERVICE`](crate::SERVICE), `search-service`) every API route but
    /// `/openapi.json` and the operations endpoints requires.
    pub identity: IdentityConfig,
}

impl SearchConfig {
    /// The SQLite file of the idempotent consumer's records (backend `sqlite`):
    /// `idempotency.path`, or `idempotency.db` in the tantivy directory.
    pub fn idempotency_path(&self) -> PathBuf {
        self.idempotency
            .path
            .clone()
            .unwrap_or_else(|| self.index.tantivy_path.join("idempotency.db"))
    }

    /// The DynamoDB table of the idempotent consumer's records (backend `dynamodb`):
    /// `idempotency.table`, or [`IDEMPOTENCY_TABLE`] after `events.aws_name_prefix`, as
    /// the service's queue is named.
    ///
    /// ```
    /// use dovetail_search::SearchConfig;
    ///
    /// let mut config = SearchConfig::default();
    /// assert_eq!(config.idempotency_table(), "dovetail-search-service-idempotency");
    /// config.events.aws_name_prefix = "staging-".to_owned();
    /// assert_eq!(config.idempotency_table(), "staging-search-service-idempotency");
    /// ```
    pub fn idempotency_table(&self) -> String {
        self.idempotency
            .table
            .clone()
            .unwrap_or_else(|| format!("{}{IDEMPOTENCY_TABLE}", self.events.aws_name_prefix))
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            index: IndexConfig::default(),
            events: EventsConfig::default(),
            consumer_in_flight: 256,
            index_outage_patience_secs: crate::consumer::INDEX_OUTAGE_PATIENCE.as_secs(),
            idempotency: IdempotencyStoreConfig::default(),
            identity: IdentityConfig::default(),
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

/// Where the idempotent consumer's records are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdempotencyBackend {
    /// A SQLite file: no server, records of this instance only.
    #[default]
    Sqlite,
    /// A DynamoDB table at `AWS_ENDPOINT_URL[_DYNAMODB]` or in AWS, shared by every
    /// instance (needs `events.backend = aws` and the `aws` feature, on by default).
    Dynamodb,
}

/// The idempotent consumer's store: `[idempotency]` in the file,
/// `DOVETAIL_SEARCH__IDEMPOTENCY__<FIELD>` in the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyStoreConfig {
    /// `sqlite` (default) or `dynamodb`.
    pub backend: IdempotencyBackend,
    /// The SQLite file (default `idempotency.db` in `index.tantivy_path`), created when
    /// missing; backend `sqlite` only.
    pub path: Option<PathBuf>,
    /// The DynamoDB table (default `<events.aws_name_prefix>search-service-idempotency`),
    /// created when missing; backend `dynamodb` only.
    pub table: Option<String>,
}
