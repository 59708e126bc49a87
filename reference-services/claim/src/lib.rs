//! The claim reference service: files claims against its own replica of policies, then
//! reviews, approves, rejects and pays them.
//!
//! Every change commits with its event through the transactional outbox (SQLite by
//! default, DynamoDB by configuration) and a relay publishes them. A consumer of policy
//! events keeps the [`replica`] of policies the filing rules are checked against; see
//! there what happens when it has not caught up. [`Application::build`] wires it all
//! from a [`ClaimConfig`].
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
pub mod replica;
pub mod store;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use dovetail_events::bus::{BusSubscription, SubscriptionFilter};
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::{Envelope, Source};
use dovetail_outbox::relay::RelayConfig;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_service_kit::config::StorageBackend;
use dovetail_service_kit::events::{EventSource, OutboxRelay, RelayStore, Transport};
use dovetail_service_kit::ops::{self, Readiness};
use dovetail_service_kit::{Background, Shutdown};
use tokio::net::TcpListener;

pub use config::ClaimConfig;
use store::ClaimStore;

/// The service's name: the `source` of its events and its `service` metrics label.
pub const SERVICE: &str = "claim-service";

/// The claim service, bound and wired, not yet running.
pub struct Application {
    listener: TcpListener,
    router: Router,
    readiness: Readiness,
    relay: OutboxRelay,
    policy_events: EventSource,
    store: ClaimStore,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the storage, creates the topic and the subscription to policy events, binds
    /// the listener.
    ///
    /// # Errors
    /// When the database cannot be opened, the topic or subscription created, or the
    /// address bound; the message says which.
    pub async fn build(config: ClaimConfig, transport: &Transport) -> anyhow::Result<Self> {
        let source = Source::parse(SERVICE)?;
        let publisher = transport
            .publisher(
                &config
                    .events
                    .transport_name(dovetail_contracts::claim::TOPIC),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let policy_events = policy_events(&config, transport).await?;
        let mut relay_config = RelayConfig::default();
        relay_config.name = SERVICE.to_owned();
        relay_config.poll_interval = config.relay.poll_interval();
        relay_config.batch_size = config.relay.batch_size;
        let (store, relay_store) = match config.storage.backend {
            StorageBackend::Sqlite => {
                let path = config.storage.sqlite_path("claim");
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating the data directory {}", dir.display())
                    })?;
                }
                let outbox = SqliteOutbox::new(OutboxConfig::new(source));
                relay_config.wake = Some(outbox.commits());
                let store = store::sqlite::SqliteClaimStore::open(&path, outbox)?;
                let relay_store = SqliteOutboxStore::open(&path, format!("{SERVICE}.relay"))?;
                (ClaimStore::Sqlite(store), RelayStore::Sqlite(relay_store))
            }
            #[cfg(feature = "aws")]
            StorageBackend::Dynamodb => {
                let Transport::Aws(clients) = transport else {
                    anyhow::bail!(
                        "storage.backend = dynamodb needs AWS clients: set events.backend = aws \
                         too (the stack's --aws switch sets both)"
                    );
                };
                let (store, outbox_store) = store::dynamodb::DynamoDbClaimStore::open(
                    clients,
                    &config.storage.dynamodb_table("claim"),
                    source,
                )
                .await?;
                relay_config.wake = Some(store.commits());
                (
                    ClaimStore::DynamoDb(store),
                    RelayStore::DynamoDb(outbox_store),
                )
            }
            #[cfg(not(feature = "aws"))]
            StorageBackend::Dynamodb => anyhow::bail!(
                "storage.backend = dynamodb needs the `aws` feature of dovetail-claim (built \
                 without it)"
            ),
        };
        let ready_store = store.clone();
        let readiness = Readiness::default().check("database", move || {
            let store = ready_store.clone();
            async move { store.ping().await.map_err(|error| error.to_string()) }
        });
        let router = http::router(store.clone())
            .merge(ops::router(readiness.clone()))
            .layer(axum::middleware::from_fn(|request, next| {
                ops::track_http(SERVICE, request, next)
            }));
        let listener = dovetail_service_kit::bind(config.listen).await?;
        Ok(Self {
            listener,
            router,
            readiness,
            relay: OutboxRelay {
                store: relay_store,
                publisher,
                config: relay_config,
            },
            policy_events,
            store,
        })
    }

    /// Where the API listens.
    ///
    /// # Panics
    /// Never: the listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The API's router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.router.clone()
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
        let background = Background::default()
            .relay(self.relay)
            .consumer(policy_events.name().to_owned(), move |stop| async move {
                policy_events.run(handler, stop).await.map(|_| ())
            });
        dovetail_service_kit::run_until_stopped(
            self.listener,
            self.router,
            self.readiness,
            background,
            shutdown,
        )
        .await
    }
}

/// The source of policy events: a subscription of the embedded bus, or an SQS queue
/// subscribed to the policy topic (both created when missing).
async fn policy_events(config: &ClaimConfig, transport: &Transport) -> anyhow::Result<EventSource> {
    let topic = config
        .events
        .transport_name(dovetail_contracts::policy::TOPIC);
    let subscription = config
        .events
        .transport_name(config::POLICY_EVENTS_SUBSCRIPTION);
    match transport {
        Transport::Embedded(bus) => {
            bus.create_topic(&topic).await?;
            bus.subscribe(BusSubscription {
                name: subscription.clone(),
                topic,
                filter: SubscriptionFilter::from_json(&serde_json::json!({
                    "type": [{ "prefix": "policy." }]
                }))?,
                max_receives: 10,
            })
            .await?;
            Ok(EventSource::Bus {
                bus: bus.clone(),
                subscription,
            })
        }
        #[cfg(feature = "aws")]
        Transport::Aws(clients) => clients
            .subscribed_queue(&topic, &subscription, &["policy."])
            .await
            .map_err(anyhow::Error::msg),
        #[cfg(not(feature = "aws"))]
        #[allow(unreachable_patterns)]
        _ => anyhow::bail!(
            "events.backend = aws needs the `aws` feature of dovetail-claim (built without it)"
        ),
    }
}
