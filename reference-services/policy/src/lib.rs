//! The policy reference service: drafts, issues, updates and cancels insurance policies.
//!
//! Every change commits with its event through the transactional outbox (SQLite by
//! default, DynamoDB by configuration), and a relay in the same process publishes the
//! events (embedded bus by default, SNS by configuration). [`Application::build`] wires
//! it from a [`PolicyConfig`]; `main.rs` only loads the configuration and waits for a
//! signal.
//!
//! The service owns its policies, so it is the source of truth its replicas (the claim
//! service's) are checked against: on SQLite,
//! [`PolicyStore::consistency_view`](store::PolicyStore::consistency_view) gives the
//! [`dovetail_consistency::View`] of them, with one digest per bucket kept in each
//! write's transaction. The drift a check finds is repaired through this service, never by
//! writing a replica: [`PolicyStore::repair`](store::PolicyStore::repair) republishes the
//! drifted policies' current snapshots through the outbox, for the replicas' consumers to
//! apply.
//!
//! ```no_run
//! use dovetail_policy::{Application, PolicyConfig};
//! use dovetail_service_kit::events::Transport;
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = PolicyConfig::default();
//! let bus = dovetail_events::bus::EmbeddedBus::open(&config.events.bus_path)?;
//! let app = Application::build(config, &Transport::Embedded(bus)).await?;
//! println!("policy service on http://{}", app.local_addr());
//! app.run_until_stopped(dovetail_service_kit::Shutdown::new()).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod domain;
pub mod http;
pub mod store;

use std::net::SocketAddr;

use axum::Router;
use dovetail_events::envelope::Source;
use dovetail_http::identity::IdentityLayer;
use dovetail_service_kit::admin::Admin;
use dovetail_service_kit::events::{OutboxRelay, Transport};
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

pub use config::PolicyConfig;
use store::PolicyStore;

/// The service's name: the `source` of its events and its `service` metrics label.
pub const SERVICE: &str = "policy-service";

/// The policy service, bound and wired, not yet running.
pub struct Application {
    http: ServiceHttp,
    relay: OutboxRelay,
    store: PolicyStore,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the storage, creates the topic, binds the listener. Every API route but
    /// `/openapi.json` verifies its caller's token against `config.identity`, with this
    /// service's name as the audience.
    ///
    /// # Errors
    /// When the database cannot be opened, the topic created, or the address bound; the
    /// message says which.
    pub async fn build(config: PolicyConfig, transport: &Transport) -> anyhow::Result<Self> {
        let source = Source::parse(SERVICE)?;
        let publisher = transport
            .events(&config.events)
            .publisher(dovetail_contracts::policy::TOPIC)
            .await?;
        let opened = PolicyStore::open(&config.storage, transport, source).await?;
        let readiness =
            Readiness::default().check_with("database", opened.store.clone(), |store| async move {
                store.ping().await
            });
        let identity = IdentityLayer::new(config.identity.verifier(SERVICE)?);
        let http = ServiceHttp::bind(
            SERVICE,
            config.listen,
            http::router(opened.store.clone(), identity.clone()).merge(
                Admin::default()
                    .outbox(opened.relay_store.clone())
                    .router(identity),
            ),
            readiness,
        )
        .await?;
        Ok(Self {
            http,
            store: opened.store,
            relay: OutboxRelay::new(
                opened.relay_store,
                publisher,
                config.relay.relay_config(SERVICE, opened.commits),
            ),
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The policies' store: for a consistency runner, its
    /// [`consistency_view`](PolicyStore::consistency_view) and its repair.
    pub fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// The API's router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.http.router()
    }

    /// Serves requests and relays events until `shutdown`, then stops taking requests,
    /// finishes those in flight and stops the relay.
    ///
    /// # Errors
    /// When the server or the relay fails.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let background = Background::default().relay(self.relay);
        Ok(self.http.run_until_stopped(background, shutdown).await?)
    }
}
