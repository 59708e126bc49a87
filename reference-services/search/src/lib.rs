//! The search reference service: indexes policy and claim events into a search index and
//! serves a scoped full-text search over them.
//!
//! A [`consumer`] of policy and claim events turns each event's snapshot into a
//! [`SearchDocument`](document::SearchDocument) and writes it to the [`index`] with the
//! aggregate's sequence as an external version, so duplicates and reordering are
//! harmless. The consumer runs behind dovetail-events' idempotent consumer
//! ([`IdempotencyLayer`] over a SQLite file, or a DynamoDB table every instance shares:
//! [`idempotency`]): a redelivered event is answered without touching the index, and an
//! event id reused with another payload is dead-lettered.
//! The index is tantivy in a directory (default, no server) or OpenSearch, chosen by
//! configuration. The [`http`] API searches within the scope of the caller's verified
//! bearer token (a customer their own documents, staff everything).
//! [`Application::build`] wires it all from a [`SearchConfig`].
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `opensearch` | on | the OpenSearch index (`index.backend = "opensearch"`) |
//! | `aws` | on | SQS as the events transport (`events.backend = "aws"`) and DynamoDB for the idempotency records (`idempotency.backend = "dynamodb"`) |
//!
//! ```no_run
//! use dovetail_search::{Application, SearchConfig};
//! use dovetail_service_kit::{Shutdown, cli};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = SearchConfig::default();
//! let transport = cli::transport(&config.events)?;
//! let app = Application::build(config, &transport).await?;
//! println!("search service on http://{}", app.local_addr());
//! app.run_until_stopped(Shutdown::new()).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod consumer;
pub mod document;
pub mod http;
pub mod idempotency;
pub mod index;
pub mod rebuild_jobs;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_events::idempotency::{DynIdempotencyStore, IdempotencyLayer};
use dovetail_http::identity::IdentityLayer;
use dovetail_service_kit::admin::Admin;
use dovetail_service_kit::events::{EventSource, Transport};
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

pub use config::SearchConfig;
use config::{IndexBackend, IndexConfig};
use index::{AnyIndex, Batching, SearchIndex, TantivyIndex};

/// The service's name: its `service` metrics label, and the audience its bearer tokens
/// must name.
pub const SERVICE: &str = "search-service";

/// The namespace of the consumer's idempotency keys (the event ids of both sources).
pub const IDEMPOTENCY_NAMESPACE: &str = "search-service.events";

/// The idempotent consumer's layer: one per service instance, shared by its sources, over
/// the store the configuration picked ([`idempotency::open`]).
pub type SearchIdempotency = IdempotencyLayer<Arc<dyn DynIdempotencyStore>>;

/// The search service, bound and wired, not yet running.
pub struct Application {
    http: ServiceHttp,
    rebuilds: rebuild_jobs::RebuildJobs,
    index: AnyIndex,
    sources: Vec<EventSource>,
    outage_patience: std::time::Duration,
    idempotency: SearchIdempotency,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("http", &self.http)
            .field("index", &self.index)
            .field("idempotency", &self.idempotency.stats())
            .finish_non_exhaustive()
    }
}

/// Opens the index `config` names.
///
/// # Errors
/// When the tantivy directory cannot be opened, the OpenSearch node does not answer, or
/// OpenSearch is asked for in a build without the `opensearch` feature.
pub async fn open_index(config: &IndexConfig) -> anyhow::Result<AnyIndex> {
    match config.backend {
        IndexBackend::Tantivy => Ok(AnyIndex::Tantivy(TantivyIndex::open(&config.tantivy_path)?)),
        #[cfg(feature = "opensearch")]
        IndexBackend::Opensearch => {
            let client = index::OpenSearchIndex::client(&config.opensearch_url)?;
            let settings = index::opensearch::OpenSearchSettings {
                alias: config.opensearch_alias.clone(),
                refresh_interval: config.refresh_interval.clone(),
                replicas: config.replicas,
            };
            Ok(AnyIndex::OpenSearch(
                index::OpenSearchIndex::open(client, &settings).await?,
            ))
        }
        #[cfg(not(feature = "opensearch"))]
        IndexBackend::Opensearch => anyhow::bail!(
            "index.backend = opensearch needs the `opensearch` feature of dovetail-search \
             (built without it)"
        ),
    }
}

impl Application {
    /// Opens the index, subscribes to policy and claim events, binds the listener.
    ///
    /// # Errors
    /// When the index or the idempotency records cannot be opened, the subscriptions
    /// created, or the address bound; the message says which.
    pub async fn build(config: SearchConfig, transport: &Transport) -> anyhow::Result<Self> {
        let index = open_index(&config.index).await?;
        let idempotency = idempotency::open(&config, transport).await?;
        let sources = vec![
            transport
                .events(&config.events)
                .subscribe(&config::event_subscription(config.consumer_in_flight))
                .await?,
        ];
        let verifier = config
            .identity
            .verifier(SERVICE)
            .context("building the verifier of bearer tokens (identity.jwks_url)")?;
        let rebuilds = rebuild_jobs::RebuildJobs::new(index.clone());
        let readiness =
            Readiness::default().check_with("index", index.clone(), |index| async move {
                index.ping().await
            });
        let http = ServiceHttp::bind(
            SERVICE,
            config.listen,
            http::router(index.clone(), rebuilds.clone(), verifier.clone()).merge(
                sources
                    .iter()
                    .fold(Admin::default(), |admin, source| {
                        admin.consumer(source.clone())
                    })
                    .router(IdentityLayer::new(verifier)),
            ),
            readiness,
        )
        .await?;
        Ok(Self {
            http,
            rebuilds,
            index,
            sources,
            outage_patience: std::time::Duration::from_secs(config.index_outage_patience_secs),
            idempotency,
        })
    }

    /// This instance's rebuild jobs (the API's `/admin/rebuilds` runs them).
    pub fn rebuilds(&self) -> &rebuild_jobs::RebuildJobs {
        &self.rebuilds
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The API's router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.http.router()
    }

    /// The index the service writes (for tests and benchmarks).
    pub fn index(&self) -> &AnyIndex {
        &self.index
    }

    /// The consumer's idempotency layer; its [`stats`](IdempotencyLayer::stats) say how
    /// many events were handled and how many answered as duplicates (for tests).
    pub fn idempotency(&self) -> &SearchIdempotency {
        &self.idempotency
    }

    /// Serves searches and indexes events until `shutdown`, then drains requests and the
    /// consumers in that order.
    ///
    /// # Errors
    /// When the server or a consumer fails.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut background = Background::default();
        // The handlers in flight share one writer: one `_bulk` or commit per batch.
        let batching =
            Batching::with_parallel_batches(self.index.clone(), self.index.parallel_batches());
        for source in self.sources {
            let index = batching.clone();
            let idempotency = self.idempotency.clone();
            let patience = self.outage_patience;
            // Duplicates stop at the idempotency layer; the version check behind it stays
            // as the defence in depth (records expire, other instances have their own).
            let handler = tower::ServiceBuilder::new()
                .map_result({
                    let idempotency = self.idempotency.clone();
                    move |result| {
                        consumer::record_idempotency_stats(idempotency.stats());
                        result
                    }
                })
                .layer(idempotency)
                .layer(EnvelopeLayer)
                .service(tower::service_fn(move |envelope: Envelope| {
                    let index = index.clone();
                    async move {
                        consumer::apply_patiently(&index, envelope, patience).await?;
                        Ok::<(), HandlerError>(())
                    }
                }));
            background = background.consumer(source.name().to_owned(), move |stop| async move {
                source
                    .run(handler, async move { stop.cancelled().await })
                    .await
                    .map(|_| ())
            });
        }
        Ok(self.http.run_until_stopped(background, shutdown).await?)
    }
}
