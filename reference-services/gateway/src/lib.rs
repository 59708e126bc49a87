//! The gateway reference service: the stack's front door (port 8080), built with
//! dovetail-bff.
//!
//! - One origin: `/auth/...`, `/policies...`, `/claims...` and `/search` are passed to
//!   their service ([`proxy`]), each through its own [`Downstream`] (deadline, breaker,
//!   retries of idempotent calls within a budget, a concurrency limit).
//! - Composed pages under `/views` ([`views`]): a customer's dashboard, a policy with its
//!   claims and its copies, the staff review queue; one failed part leaves its section
//!   failed and the page answered.
//! - Read-your-writes: a write to the policy or claim service answers a signed
//!   `dovetail-consistency` token; a page read with it waits until the copies it reads
//!   have the write.
//! - One OpenAPI document for all of it at `/openapi.json` ([`openapi`]).
//!
//! ```no_run
//! use dovetail_gateway::{Application, GatewayConfig};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let app = Application::build(GatewayConfig::default()).await?;
//! println!("gateway on http://{}", app.local_addr());
//! app.run_until_stopped(dovetail_service_kit::Shutdown::new()).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod openapi;
pub mod proxy;
pub mod secret;
pub mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use dovetail_bff::{ConsistencyKey, Downstream, RequestIdLayer};
use dovetail_http::identity::IdentityLayer;
use dovetail_service_kit::ops::Readiness;
use dovetail_service_kit::{Background, ServiceHttp, Shutdown};

use config::CallTuning;
pub use config::GatewayConfig;

/// The gateway's name: the audience of the tokens its pages accept, and its `service`
/// metrics label.
pub const SERVICE: &str = "gateway-service";

/// What the handlers share: a client per service, the consistency key, the tuning.
#[derive(Debug, Clone)]
pub struct Gateway {
    auth: Downstream,
    policy: Downstream,
    claim: Downstream,
    search: Downstream,
    key: Arc<ConsistencyKey>,
    tuning: Arc<CallTuning>,
}

impl Gateway {
    /// The clients of the services `config` names, and `key`.
    ///
    /// # Errors
    /// When a service's URL is not `http://host:port`.
    pub fn new(config: &GatewayConfig, key: ConsistencyKey) -> anyhow::Result<Self> {
        let tuning = &config.calls;
        let urls = &config.services;
        let client = |name: &str, url: &str| Downstream::new(tuning.downstream(name, url));
        Ok(Self {
            auth: client("auth", &urls.auth)?,
            policy: client("policy", &urls.policy)?,
            claim: client("claim", &urls.claim)?,
            search: client("search", &urls.search)?,
            key: Arc::new(key),
            tuning: Arc::new(tuning.clone()),
        })
    }

    /// The client of the service `name` (`auth`, `policy`, `claim` or `search`).
    fn downstream(&self, name: &str) -> &Downstream {
        match name {
            "auth" => &self.auth,
            "policy" => &self.policy,
            "claim" => &self.claim,
            _ => &self.search,
        }
    }

    /// The gateway's routes: the proxied services, the composed pages behind
    /// `identity`, and `/openapi.json`.
    pub fn router(self, identity: IdentityLayer) -> Router {
        let document = openapi::document().to_string();
        Router::new()
            .merge(proxy::router(self.clone()))
            .merge(views::router(self, identity))
            .route(
                "/openapi.json",
                get(move || {
                    let document = document.clone();
                    async move { ([(header::CONTENT_TYPE, "application/json")], document) }
                }),
            )
    }
}

/// The gateway, bound and wired, not yet running.
#[derive(Debug)]
pub struct Application {
    http: ServiceHttp,
}

impl Application {
    /// Reads (or makes) the consistency secret, builds a client per service and binds the
    /// listener.
    ///
    /// # Errors
    /// When the secret cannot be read or made, a URL is wrong, or the address cannot be
    /// bound; the message says which.
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Self> {
        let key = secret::load_or_create(&config.consistency.secret_file)?;
        let gateway = Gateway::new(&config, key)?;
        let identity = IdentityLayer::new(config.identity.verifier(SERVICE)?);
        dovetail_bff::describe_metrics();
        let http = ServiceHttp::bind(
            SERVICE,
            config.listen,
            gateway.router(identity).layer(RequestIdLayer::new()),
            Readiness::default(),
        )
        .await?;
        Ok(Self { http })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// Serves until `shutdown`, then finishes the requests in flight.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        Ok(self
            .http
            .run_until_stopped(Background::default(), shutdown)
            .await?)
    }
}
