//! The claim reference service: files claims against its own replica of policies, then
//! reviews, approves, rejects and pays them.
//!
//! Every change commits with its event through the transactional outbox (SQLite by
//! default, DynamoDB by configuration) and a relay publishes them. A consumer of policy
//! events keeps the [`replica`] of policies the filing rules are checked against; see
//! there what happens when it has not caught up, and how to check it against the policy
//! service's own policies. [`Application::build`] wires it all from a [`ClaimConfig`].
//!
//! ```no_run
//! use dovetail_claim::{Application, ClaimConfig};
//! use dovetail_service_kit::{Shutdown, cli};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = ClaimConfig::default();
//! let transport = cli::transport(&config.events)?;
//! let app = Application::build(config, &transport).await?;
//! println!("claim service on http://{}", app.local_addr());
//! app.run_until_stopped(Shutdown::new()).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod domain;
pub mod http;
pub mod invariants;
pub mod replica;
pub mod store;

use std::net::SocketAddr;

use axum::Router;
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::{Envelope, Source};
use dovetail_http::identity::IdentityLayer;
use dovetail_service_kit::admin::Admin;
use dovetail_service_kit::events::{EventSource, OutboxRelay, Transport};
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

pub use config::ClaimConfig;
use store::ClaimStore;

/// The service's name: the `source` of its events and its `service` metrics label.
pub const SERVICE: &str = "claim-service";

/// The claim service, bound and wired, not yet running.
pub struct Application {
    http: ServiceHttp,
    relay: OutboxRelay,
    policy_events: EventSource,
    store: ClaimStore,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the storage, creates the topic and the subscription to policy events, binds
    /// the listener. Every API route but `/openapi.json` verifies its caller's token
    /// against `config.identity`, with this service's name as the audience.
    ///
    /// # Errors
    /// When the database cannot be opened, the topic or subscription created, or the
    /// address bound; the message says which.
    pub async fn build(config: ClaimConfig, transport: &Transport) -> anyhow::Result<Self> {
        let source = Source::parse(SERVICE)?;
        let events = transport.events(&config.events);
        let publisher = events.publisher(dovetail_contracts::claim::TOPIC).await?;
        let policy_events = events.subscribe(&config::policy_events()).await?;
        let opened = ClaimStore::open(&config.storage, transport, source).await?;
        let store = opened.store;
        let readiness =
            Readiness::default().check_with("database", store.clone(), |store| async move {
                store.ping().await
            });
        let identity = IdentityLayer::new(config.identity.verifier(SERVICE)?);
        let admin = Admin::default()
            .outbox(opened.relay_store.clone())
            .consumer(policy_events.clone());
        let http = ServiceHttp::bind(
            SERVICE,
            config.listen,
            http::router(store.clone(), identity.clone()).merge(admin.router(identity)),
            readiness,
        )
        .await?;
        Ok(Self {
            http,
            relay: OutboxRelay::new(
                opened.relay_store,
                publisher,
                config.relay.relay_config(SERVICE, opened.commits),
            ),
            policy_events,
            store,
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The claims' store (with the policy replica): for a consistency runner, its views
    /// and the [claim-policy invariant](invariants::ClaimPolicyInvariant).
    pub fn store(&self) -> &ClaimStore {
        &self.store
    }

    /// The API's router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.http.router()
    }

    /// Serves requests, keeps the policy replica and relays events until `shutdown`,
    /// then drains requests, the consumer and the relay in that order.
    ///
    /// # Errors
    /// When the server, the consumer or the relay fails.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let store = self.store;
        let handler = tower::ServiceBuilder::new()
            .layer(EnvelopeLayer)
            .service(tower::service_fn(move |envelope: Envelope| {
                let store = store.clone();
                async move {
                    replica::apply(&store, envelope).await?;
                    Ok::<(), HandlerError>(())
                }
            }));
        let policy_events = self.policy_events;
        let background = Background::default().relay(self.relay).consumer(
            policy_events.name().to_owned(),
            move |stop| async move {
                policy_events
                    .run(handler, async move { stop.cancelled().await })
                    .await
                    .map(|_| ())
            },
        );
        Ok(self.http.run_until_stopped(background, shutdown).await?)
    }
}
