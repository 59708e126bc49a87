//! The local stack: every reference service in one process, wired to one events
//! transport, on fixed documented ports.
//!
//! | service | port | data (embedded) |
//! |---|---|---|
//! | policy | 8081 | `data/policy.db` |
//! | claim | 8082 | `data/claim.db` |
//! | search | 8083 | `data/search/` (a tantivy index, and `idempotency.db`) |
//! | auth | 8084 | `data/auth.db` (users), `data/auth-sessions.db`, `data/auth-keys/` |
//! | gateway | 8080 | `data/gateway-consistency.key` (signs consistency tokens) |
//! | consistency runner | 8085 | `data/consistency.db` (run records, the runners' lease) |
//! | events | – | `data/bus.db` (the embedded bus) |
//!
//! Each service still owns its own database: the stack only saves starting them one by
//! one. The auth service starts first: every other service verifies its callers' bearer
//! tokens against its JWKS, and on the first start the stack makes a staff user and a demo
//! customer ([`users`]), whose credentials it prints once and keeps in
//! `data/credentials.json` (mode 0600). With [`Backends::Aws`] every service keeps its data in its own DynamoDB table and
//! publishes to SNS topics fanned out to SQS queues at `AWS_ENDPOINT_URL` (or in AWS),
//! creating what is missing, and the search service its idempotency records in the DynamoDB
//! table `dovetail-search-service-idempotency`. The search index is the tantivy directory
//! unless [`StackConfig::opensearch_url`] names an OpenSearch node (the alias and its index
//! are created when missing); the two choices are independent. The auth service's
//! refresh tokens and throttling counters go to Redis when
//! [`StackConfig::redis_url`] names one, and stay in SQLite otherwise.
//! The gateway starts last, in front of the others: one origin for all of them and the
//! composed pages; [`demo`] walks through the system over HTTP, through the gateway only.
//! The [`consistency`] runner checks the replicas against their owners every few minutes
//! and on a staff member's request; [`check`] asks it for a run and prints the report.

pub mod check;
pub mod consistency;
pub mod demo;
pub mod users;

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::{
    EventsBackend, EventsConfig, IdentityConfig, StorageBackend, StorageConfig,
};
use dovetail_service_kit::events::Transport;
use dovetail_service_kit::{Shutdown, cli};
use tokio::task::JoinHandle;

/// The policy service's port.
pub const POLICY_PORT: u16 = 8081;
/// The claim service's port.
pub const CLAIM_PORT: u16 = 8082;
/// The search service's port.
pub const SEARCH_PORT: u16 = 8083;
/// The auth service's port.
pub const AUTH_PORT: u16 = 8084;
/// The gateway's port: the stack's front door.
pub const GATEWAY_PORT: u16 = 8080;
/// The consistency runner's port (staff endpoints and metrics).
pub const CONSISTENCY_PORT: u16 = 8085;

/// Where the services keep their data and send their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// SQLite files and the embedded bus under the data directory: no server.
    Embedded,
    /// DynamoDB tables, SNS topics and SQS queues at `AWS_ENDPOINT_URL[_<SERVICE>]` or in
    /// AWS (credentials and region from the environment).
    Aws,
}

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The services' backends.
    pub backends: Backends,
    /// The directory of the embedded backends' files (default `data`).
    pub data_dir: PathBuf,
    /// The address the services listen on; ports 0 pick free ones (tests).
    pub host: std::net::IpAddr,
    /// The policy service's port.
    pub policy_port: u16,
    /// The claim service's port.
    pub claim_port: u16,
    /// The search service's port.
    pub search_port: u16,
    /// The auth service's port.
    pub auth_port: u16,
    /// The gateway's port.
    pub gateway_port: u16,
    /// The consistency runner's port.
    pub consistency_port: u16,
    /// How the consistency runner runs.
    pub consistency: consistency::ConsistencySettings,
    /// The auth service's session store (refresh tokens, revocations, throttling): Redis
    /// at this URL, or (`None`, the default) a SQLite file under `data_dir`.
    pub redis_url: Option<String>,
    /// How often relays poll for commits of other processes, in milliseconds.
    pub relay_poll_interval_ms: u64,
    /// The search service's index: its tantivy directory under `data_dir` (`None`, the
    /// default), or the OpenSearch node at this URL, behind the alias
    /// [`search_alias`](Self::search_alias).
    pub opensearch_url: Option<String>,
    /// The OpenSearch alias of the search index (default `dovetail-search`).
    pub search_alias: String,
    /// On AWS, put before every table, topic and queue name (default `dovetail-`), so
    /// that several stacks share an account: `staging-` gives `staging-policy`,
    /// `staging-policy-events` and so on.
    pub aws_name_prefix: String,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            backends: Backends::Embedded,
            data_dir: PathBuf::from("data"),
            host: [127, 0, 0, 1].into(),
            policy_port: POLICY_PORT,
            claim_port: CLAIM_PORT,
            search_port: SEARCH_PORT,
            auth_port: AUTH_PORT,
            gateway_port: GATEWAY_PORT,
            consistency_port: CONSISTENCY_PORT,
            consistency: consistency::ConsistencySettings::default(),
            redis_url: None,
            relay_poll_interval_ms: 1000,
            opensearch_url: None,
            search_alias: "dovetail-search".to_owned(),
            aws_name_prefix: "dovetail-".to_owned(),
        }
    }
}

/// A running stack.
#[derive(Debug)]
pub struct RunningStack {
    /// Where the policy service listens.
    pub policy: SocketAddr,
    /// Where the claim service listens.
    pub claim: SocketAddr,
    /// Where the search service listens.
    pub search: SocketAddr,
    /// Where the auth service listens.
    pub auth: SocketAddr,
    /// Where the gateway listens.
    pub gateway: SocketAddr,
    /// Where the consistency runner listens.
    pub consistency: SocketAddr,
    /// The staff user and the demo customer, and whether this start made them.
    pub users: users::Seeding,
    shutdown: Shutdown,
    services: Vec<RunningService>,
}

/// One service of a running stack: its own stop signal (a child of the stack's) and its
/// task.
#[derive(Debug)]
struct RunningService {
    name: &'static str,
    stop: Shutdown,
    task: JoinHandle<anyhow::Result<()>>,
}

impl StackConfig {
    /// The defaults with every service on a free port (port 0) and the data under
    /// `data_dir`: a stack beside another one, for tests, benchmarks and the demo's own.
    ///
    /// ```
    /// let config = dovetail_stack::StackConfig::on_free_ports("/tmp/stack-a");
    /// assert_eq!((config.gateway_port, config.auth_port), (0, 0));
    /// ```
    pub fn on_free_ports(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            policy_port: 0,
            claim_port: 0,
            search_port: 0,
            auth_port: 0,
            gateway_port: 0,
            consistency_port: 0,
            ..Self::default()
        }
    }

    fn storage(&self, service: &str) -> StorageConfig {
        StorageConfig {
            backend: match self.backends {
                Backends::Embedded => StorageBackend::Sqlite,
                Backends::Aws => StorageBackend::Dynamodb,
            },
            sqlite_path: Some(self.data_dir.join(format!("{service}.db"))),
            dynamodb_table: Some(format!("{}{service}", self.aws_name_prefix)),
        }
    }

    fn auth(&self) -> dovetail_auth::AuthConfig {
        let mut auth = dovetail_auth::AuthConfig {
            listen: SocketAddr::new(self.host, self.auth_port),
            storage: self.storage("auth"),
            keys_dir: self.data_dir.join("auth-keys"),
            events: self.events(),
            ..Default::default()
        };
        auth.relay.poll_interval_ms = self.relay_poll_interval_ms;
        // The gateway connects from the stack's address: its X-Forwarded-For names the
        // client the login throttling counts.
        auth.http.trusted_proxies = self
            .host
            .to_string()
            .parse()
            .map(|gateway| vec![gateway])
            .unwrap_or_default();
        auth.sessions.path = self.data_dir.join("auth-sessions.db");
        if let Some(url) = &self.redis_url {
            auth.sessions.backend = dovetail_auth::sessions::SessionBackend::Redis;
            auth.sessions.url = Some(url.clone());
        }
        auth
    }

    fn events(&self) -> EventsConfig {
        EventsConfig {
            backend: match self.backends {
                Backends::Embedded => EventsBackend::Embedded,
                Backends::Aws => EventsBackend::Aws,
            },
            bus_path: self.data_dir.join("bus.db"),
            aws_name_prefix: self.aws_name_prefix.clone(),
        }
    }
}

/// Starts every service; they run until [`RunningStack::stop`] or `shutdown`.
///
/// # Errors
/// When a service cannot start (its database, the transport, its port); the message names
/// the service.
pub async fn start(config: &StackConfig, shutdown: Shutdown) -> anyhow::Result<RunningStack> {
    std::fs::create_dir_all(&config.data_dir)?;
    let events = config.events();
    let transport: Transport = cli::transport(&events)?;

    let auth = dovetail_auth::Application::build(config.auth(), &transport)
        .await
        .map_err(|error| error.context("starting the auth service"))?;
    let users = users::seed(&auth.admin(), &config.data_dir).await?;
    let identity = IdentityConfig {
        issuer: dovetail_auth::AuthConfig::default().tokens.issuer,
        jwks_url: format!("http://{}/.well-known/jwks.json", auth.local_addr()),
        ..IdentityConfig::default()
    };

    let mut policy = dovetail_policy::PolicyConfig {
        listen: SocketAddr::new(config.host, config.policy_port),
        storage: config.storage("policy"),
        events: events.clone(),
        identity: identity.clone(),
        ..Default::default()
    };
    policy.relay.poll_interval_ms = config.relay_poll_interval_ms;
    let policy = dovetail_policy::Application::build(policy, &transport)
        .await
        .map_err(|error| error.context("starting the policy service"))?;

    let mut claim = dovetail_claim::ClaimConfig {
        listen: SocketAddr::new(config.host, config.claim_port),
        storage: config.storage("claim"),
        events,
        identity: identity.clone(),
        ..Default::default()
    };
    claim.relay.poll_interval_ms = config.relay_poll_interval_ms;
    let claim = dovetail_claim::Application::build(claim, &transport)
        .await
        .map_err(|error| error.context("starting the claim service"))?;

    let mut search = dovetail_search::SearchConfig {
        listen: SocketAddr::new(config.host, config.search_port),
        events: config.events(),
        identity: identity.clone(),
        ..Default::default()
    };
    search.index.tantivy_path = config.data_dir.join("search");
    if let Some(url) = &config.opensearch_url {
        search.index.backend = dovetail_search::config::IndexBackend::Opensearch;
        search.index.opensearch_url.clone_from(url);
        search
            .index
            .opensearch_alias
            .clone_from(&config.search_alias);
    }
    // On AWS the idempotency records go to a DynamoDB table every instance shares.
    search.idempotency.backend = match config.backends {
        Backends::Embedded => dovetail_search::config::IdempotencyBackend::Sqlite,
        Backends::Aws => dovetail_search::config::IdempotencyBackend::Dynamodb,
    };
    let search = dovetail_search::Application::build(search, &transport)
        .await
        .map_err(|error| error.context("starting the search service"))?;
    let consistency = consistency::ConsistencyService::build(
        SocketAddr::new(config.host, config.consistency_port),
        config.backends,
        &config.data_dir,
        &format!("{}{}", config.aws_name_prefix, consistency::RUNS_TABLE),
        &config.consistency,
        &identity,
        &consistency::Owners {
            policy: &policy,
            claim: &claim,
            search: &search,
        },
    )
    .await
    .map_err(|error| error.context("starting the consistency runner"))?;
    let gateway_identity = identity;

    let gateway = dovetail_gateway::Application::build(dovetail_gateway::GatewayConfig {
        listen: SocketAddr::new(config.host, config.gateway_port),
        services: dovetail_gateway::config::ServiceUrls {
            auth: format!("http://{}", auth.local_addr()),
            policy: format!("http://{}", policy.local_addr()),
            claim: format!("http://{}", claim.local_addr()),
            search: format!("http://{}", search.local_addr()),
        },
        identity: gateway_identity,
        consistency: dovetail_gateway::config::ConsistencyConfig {
            secret_file: config.data_dir.join("gateway-consistency.key"),
        },
        ..Default::default()
    })
    .await
    .map_err(|error| error.context("starting the gateway"))?;

    let (policy_addr, claim_addr, search_addr, auth_addr, gateway_addr, consistency_addr) = (
        policy.local_addr(),
        claim.local_addr(),
        search.local_addr(),
        auth.local_addr(),
        gateway.local_addr(),
        consistency.local_addr(),
    );
    let services = vec![
        RunningService::spawn("auth", &shutdown, |stop| auth.run_until_stopped(stop)),
        RunningService::spawn("policy", &shutdown, |stop| policy.run_until_stopped(stop)),
        RunningService::spawn("claim", &shutdown, |stop| claim.run_until_stopped(stop)),
        RunningService::spawn("search", &shutdown, |stop| search.run_until_stopped(stop)),
        RunningService::spawn("gateway", &shutdown, |stop| gateway.run_until_stopped(stop)),
        RunningService::spawn("consistency", &shutdown, |stop| {
            consistency.run_until_stopped(stop)
        }),
    ];
    Ok(RunningStack {
        policy: policy_addr,
        claim: claim_addr,
        search: search_addr,
        auth: auth_addr,
        gateway: gateway_addr,
        consistency: consistency_addr,
        users,
        shutdown,
        services,
    })
}

impl RunningStack {
    /// Stops every service (each drains its requests, consumers and relay) and waits.
    ///
    /// # Errors
    /// When a service failed; the message names it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until every service stopped (after the shutdown signal).
    ///
    /// # Errors
    /// When a service failed; the message names it.
    pub async fn wait(self) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        for service in self.services {
            if let Err(failure) = service.finish().await {
                failures.push(failure);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }

    /// Stops one service (`auth`, `policy`, `claim`, `search`, `gateway` or
    /// `consistency`) and waits
    /// for it, leaving the others running: what the demo and the tests do to show a
    /// partial answer.
    ///
    /// # Errors
    /// When there is no such service running, or it failed.
    pub async fn stop_service(&mut self, name: &str) -> anyhow::Result<()> {
        let at = self
            .services
            .iter()
            .position(|service| service.name == name)
            .ok_or_else(|| anyhow::anyhow!("the stack runs no {name} service"))?;
        let service = self.services.remove(at);
        service.stop.cancel();
        service
            .finish()
            .await
            .map_err(|failure| anyhow::anyhow!(failure))
    }
}

impl RunningService {
    /// Runs `run` with a stop signal of its own, cancelled with `parent`'s too.
    fn spawn<F, Fut>(name: &'static str, parent: &Shutdown, run: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let stop = parent.child_token();
        Self {
            name,
            task: tokio::spawn(run(stop.clone())),
            stop,
        }
    }

    /// Waits for the task; the failure, named, if it failed.
    async fn finish(self) -> Result<(), String> {
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("{} service: {error:#}", self.name)),
            Err(panic) => Err(format!("{} service panicked: {panic}", self.name)),
        }
    }
}
