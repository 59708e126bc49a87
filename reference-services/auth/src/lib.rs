//! The auth reference service: registers users, hashes their passwords with argon2id,
//! and issues the EdDSA access tokens every other service verifies against its JWKS
//! (`GET /.well-known/jwks.json`) with `dovetail_http::identity`.
//!
//! Log-in answers a refresh token too; refresh tokens rotate in families, with reuse
//! detection, revocation and log-in throttling in the [`sessions`] store (SQLite by
//! default, Redis at scale). Users live in the service's SQLite file, or its DynamoDB
//! table (`storage.backend`); `user.registered`, `user.disabled` and `user.role_changed`
//! go out through the transactional outbox (embedded bus by default). No event, log line or
//! metric carries a password, a hash or a token. [`Application::build`] wires it from an
//! [`AuthConfig`]; `main.rs` only loads the configuration and waits for a signal.
//!
//! ```no_run
//! use dovetail_auth::{Application, AuthConfig};
//! use dovetail_service_kit::events::Transport;
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = AuthConfig::default();
//! let bus = dovetail_events::bus::EmbeddedBus::open(&config.events.bus_path)?;
//! let app = Application::build(config, &Transport::Embedded(bus)).await?;
//! println!("auth service on http://{}", app.local_addr());
//! app.run_until_stopped(dovetail_service_kit::Shutdown::new()).await?;
//! # Ok(())
//! # }
//! ```

pub mod accounts;
pub mod config;
pub mod domain;
pub mod hashing;
pub mod http;
pub mod keys;
pub mod sessions;
pub mod store;
pub mod tokens;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use dovetail_events::envelope::Source;
use dovetail_http::identity::VerifierConfig;
use dovetail_service_kit::events::{OutboxRelay, Transport};
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

pub use accounts::Accounts;
pub use config::AuthConfig;
use hashing::PasswordHasher;
use keys::KeyRing;
use sessions::{AnySessionStore, SessionStore, Sessions};
use store::UserStore;
use tokens::TokenIssuer;

/// The service's name: the `source` of its events, its `service` metrics label, and the
/// audience it verifies its own tokens for.
pub const SERVICE: &str = "auth-service";

/// How long after its retirement a key stays in the JWKS beyond the tokens' lifetime:
/// covers the verifiers' clock leeway (30 s by default).
pub const RETIREMENT_MARGIN: Duration = Duration::from_secs(60);

/// The auth service, bound and wired, not yet running.
pub struct Application {
    http: ServiceHttp,
    relay: OutboxRelay,
    admin: Admin,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

/// What an operator does without an HTTP route: add staff users, rotate the signing key.
/// Cheap to clone; stays usable while the application runs.
#[derive(Debug, Clone)]
pub struct Admin {
    accounts: Accounts,
    keys: KeyRing,
}

impl Admin {
    /// Registers a staff user.
    ///
    /// # Errors
    /// See [`Accounts::register_staff`].
    pub async fn register_staff(
        &self,
        email: &str,
        password: &str,
    ) -> Result<store::Registration, accounts::AccountError> {
        self.accounts
            .register_staff(email, password.to_owned())
            .await
    }

    /// Registers a customer user bound to an existing `customer_id` (open registration
    /// always makes a new customer).
    ///
    /// # Errors
    /// See [`Accounts::register_customer`].
    pub async fn register_customer(
        &self,
        email: &str,
        password: &str,
        customer_id: &str,
    ) -> Result<store::Registration, accounts::AccountError> {
        self.accounts
            .register_customer(email, password.to_owned(), customer_id)
            .await
    }

    /// Makes a new signing key; returns its kid. It is published at once and signs
    /// `tokens.signing_key_publish_ahead_seconds` later; the old key signs until then and
    /// verifies until the tokens it signed have expired.
    ///
    /// # Errors
    /// See [`keys::KeyError`]; the keys in use do not change when it fails.
    pub async fn rotate_signing_key(&self) -> Result<String, keys::KeyError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || keys.rotate())
            .await
            .map_err(keys::KeyError::Task)?
    }

    /// How many passwords the service has checked since it started.
    pub fn password_checks(&self) -> u64 {
        self.accounts.hasher().checks()
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }
}

impl Application {
    /// Opens the storage and the signing keys (making the first one), creates the topic,
    /// binds the listener.
    ///
    /// # Errors
    /// When the configuration is inconsistent, the database or keys cannot be opened, the
    /// topic created, or the address bound; the message says which.
    pub async fn build(config: AuthConfig, transport: &Transport) -> anyhow::Result<Self> {
        if !config.tokens.audiences.iter().any(|a| a == SERVICE) {
            anyhow::bail!(
                "tokens.audiences must include {SERVICE:?}, or this service refuses its own \
                 tokens; it has {:?}",
                config.tokens.audiences
            );
        }
        let source = Source::parse(SERVICE)?;
        let publisher = transport
            .events(&config.events)
            .publisher(dovetail_contracts::user::TOPIC)
            .await?;
        let opened = UserStore::open(&config.storage, transport, source).await?;
        let timing = keys::KeyTiming {
            retention: config.tokens.access_ttl() + RETIREMENT_MARGIN,
            publish_ahead: config.tokens.signing_key_publish_ahead(),
        };
        let keys_dir = config.keys_dir.clone();
        let keys = tokio::task::spawn_blocking(move || KeyRing::open(&keys_dir, timing)).await??;
        let hasher = PasswordHasher::new(&config.password_hashing).await?;
        let verifier = http::SelfVerifier::new(
            keys.clone(),
            VerifierConfig::new(config.tokens.issuer.clone(), SERVICE),
        )?;
        let tokens = TokenIssuer::new(config.tokens, keys.clone());
        let accounts = Accounts::new(opened.store.clone(), hasher, tokens);
        let session_store = AnySessionStore::open(&config.sessions)?;
        let sessions = Sessions::new(session_store.clone(), accounts.clone(), &config.sessions);
        let readiness = Readiness::default()
            .check_with("database", opened.store, |store| async move {
                store.ping().await
            })
            .check_with("sessions", session_store, |store| async move {
                store.ping().await
            });
        let http = ServiceHttp::bind(
            SERVICE,
            config.listen,
            http::router(
                sessions,
                keys.clone(),
                verifier,
                &config.http.trusted_proxies,
                dovetail_service_kit::admin::Admin::default().outbox(opened.relay_store.clone()),
            ),
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
            admin: Admin { accounts, keys },
        })
    }

    /// Where the API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The API's router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.http.router()
    }

    /// The operator's handle: staff users and key rotation.
    pub fn admin(&self) -> Admin {
        self.admin.clone()
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
