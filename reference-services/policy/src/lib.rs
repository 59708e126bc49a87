//! The policy reference service: drafts, issues, updates and cancels insurance policies.
//!
//! Every change commits with its event through the transactional outbox (SQLite by
//! default, DynamoDB by configuration), and a relay in the same process publishes the
//! events (embedded bus by default, SNS by configuration). [`Application::build`] wires
//! it from a [`PolicyConfig`]; `main.rs` only loads the configuration and waits for a
//! signal.
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

use anyhow::Context;
use axum::Router;
use dovetail_events::envelope::Source;
use dovetail_outbox::relay::RelayConfig;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_service_kit::config::StorageBackend;
use dovetail_service_kit::events::{OutboxRelay, RelayStore, Transport};
use dovetail_service_kit::ops::{self, Readiness};
use dovetail_service_kit::{Background, Shutdown};
use tokio::net::TcpListener;

pub use config::PolicyConfig;
use store::PolicyStore;

/// The service's name: the `source` of its events and its `service` metrics label.
pub const SERVICE: &str = "policy-service";

/// The policy service, bound and wired, not yet running.
pub struct Application {
    listener: TcpListener,
    router: Router,
    readiness: Readiness,
    relay: OutboxRelay,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("listener", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the storage, creates the topic, binds the listener.
    ///
    /// # Errors
    /// When the database cannot be opened, the topic created, or the address bound; the
    /// message says which.
    pub async fn build(config: PolicyConfig, transport: &Transport) -> anyhow::Result<Self> {
        let source = Source::parse(SERVICE)?;
        let publisher = transport
            .publisher(
                &config
                    .events
                    .transport_name(dovetail_contracts::policy::TOPIC),
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let mut relay_config = RelayConfig::default();
        relay_config.name = SERVICE.to_owned();
        relay_config.poll_interval = config.relay.poll_interval();
        relay_config.batch_size = config.relay.batch_size;
        let (store, outbox_store) = match config.storage.backend {
            StorageBackend::Sqlite => {
                let path = &config.storage.sqlite_path("policy");
                if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("creating the data directory {}", dir.display())
                    })?;
                }
                let outbox = SqliteOutbox::new(OutboxConfig::new(source));
                relay_config.wake = Some(outbox.commits());
                let store = store::sqlite::SqlitePolicyStore::open(path, outbox)?;
                let relay_store = SqliteOutboxStore::open(path, format!("{SERVICE}.relay"))?;
                (PolicyStore::Sqlite(store), RelayStore::Sqlite(relay_store))
            }
            #[cfg(feature = "aws")]
            StorageBackend::Dynamodb => {
                let Transport::Aws(clients) = transport else {
                    anyhow::bail!(
                        "storage.backend = dynamodb needs AWS clients: set events.backend = aws \
                         too (the stack's --aws switch sets both)"
                    );
                };
                let (store, outbox_store) = store::dynamodb::DynamoDbPolicyStore::open(
                    clients,
                    &config.storage.dynamodb_table("policy"),
                    source,
                )
                .await?;
                relay_config.wake = Some(store.commits());
                (
                    PolicyStore::DynamoDb(store),
                    RelayStore::DynamoDb(outbox_store),
                )
            }
            #[cfg(not(feature = "aws"))]
            StorageBackend::Dynamodb => anyhow::bail!(
                "storage.backend = dynamodb needs the `aws` feature of dovetail-policy \
                 (built without it)"
            ),
        };
        let ready_store = store.clone();
        let readiness = Readiness::default().check("database", move || {
            let store = ready_store.clone();
            async move { store.ping().await.map_err(|error| error.to_string()) }
        });
        let router = http::router(store)
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
                store: outbox_store,
                publisher,
                config: relay_config,
            },
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

    /// Serves requests and relays events until `shutdown`, then stops taking requests,
    /// finishes those in flight and stops the relay.
    ///
    /// # Errors
    /// When the server or the relay fails.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let background = Background::default().relay(self.relay);
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
