//! The gateway's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_GATEWAY__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_GATEWAY__SERVICES__POLICY=http://10.0.0.5:8081`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use dovetail_bff::{BreakerConfig, DownstreamConfig, RetryConfig};
use dovetail_service_kit::config::IdentityConfig;
use serde::Deserialize;

/// The prefix of the gateway's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_GATEWAY";

/// Everything the gateway can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where it listens (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The services behind it.
    pub services: ServiceUrls,
    /// Whose tokens the composed pages accept (the proxied routes leave verification to
    /// the service behind them); default: the auth service on `127.0.0.1:8084`.
    pub identity: IdentityConfig,
    /// How long things may take, and how downstreams are protected.
    pub calls: CallTuning,
    /// The secret that signs consistency tokens.
    pub consistency: ConsistencyConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            services: ServiceUrls::default(),
            identity: IdentityConfig::default(),
            calls: CallTuning::default(),
            consistency: ConsistencyConfig::default(),
        }
    }
}

/// The base URL of each service behind the gateway (`http://host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceUrls {
    /// Default `http://127.0.0.1:8084`.
    pub auth: String,
    /// Default `http://127.0.0.1:8081`.
    pub policy: String,
    /// Default `http://127.0.0.1:8082`.
    pub claim: String,
    /// Default `http://127.0.0.1:8083`.
    pub search: String,
}

impl Default for ServiceUrls {
    fn default() -> Self {
        Self {
            auth: "http://127.0.0.1:8084".to_owned(),
            policy: "http://127.0.0.1:8081".to_owned(),
            claim: "http://127.0.0.1:8082".to_owned(),
            search: "http://127.0.0.1:8083".to_owned(),
        }
    }
}

/// Deadlines and the protection of each downstream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallTuning {
    /// The longest a composed page may take, in milliseconds; a caller's
    /// `dovetail-deadline-ms` may shorten it (default 2000).
    pub page_budget_ms: u64,
    /// The longest a proxied call may take, in milliseconds (default 10000).
    pub proxy_budget_ms: u64,
    /// The longest one attempt at a downstream may take, in milliseconds (default 5000;
    /// the request's deadline caps it further).
    pub attempt_timeout_ms: u64,
    /// Calls in flight to one downstream at most (default 64).
    pub concurrency: usize,
    /// Retries of an idempotent call at most (default 2).
    pub max_retries: u32,
    /// Retries allowed per call over ten seconds (default 0.2: 20% extra load at most).
    pub retry_budget_percent: u32,
    /// Downstream failures in a row that open its breaker (default 5).
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls, in milliseconds (default 5000).
    pub breaker_open_ms: u64,
    /// How often a read-your-writes read asks a replica for its version, in
    /// milliseconds (default 20).
    pub version_poll_ms: u64,
    /// Hedged reads: a GET that has not answered after this many milliseconds gets a
    /// second attempt, paid from the retry budget (default 0: off).
    pub hedge_after_ms: u64,
}

impl Default for CallTuning {
    fn default() -> Self {
        Self {
            page_budget_ms: 2000,
            proxy_budget_ms: 10_000,
            attempt_timeout_ms: 5000,
            concurrency: 64,
            max_retries: 2,
            retry_budget_percent: 20,
            breaker_failures: 5,
            breaker_open_ms: 5000,
            version_poll_ms: 20,
            hedge_after_ms: 0,
        }
    }
}

impl CallTuning {
    /// The client configuration of the downstream `name` at `base_url`.
    pub fn downstream(&self, name: &str, base_url: &str) -> DownstreamConfig {
        DownstreamConfig {
            call_timeout: Duration::from_millis(self.attempt_timeout_ms),
            concurrency: self.concurrency.max(1),
            retry: RetryConfig {
                max_retries: self.max_retries,
                budget_ratio: f32::from(u16::try_from(self.retry_budget_percent).unwrap_or(1000))
                    / 100.0,
                ..RetryConfig::default()
            },
            breaker: BreakerConfig {
                failure_threshold: self.breaker_failures.max(1),
                open_for: Duration::from_millis(self.breaker_open_ms),
            },
            hedge_after: (self.hedge_after_ms > 0)
                .then(|| Duration::from_millis(self.hedge_after_ms)),
            ..DownstreamConfig::new(name, base_url)
        }
    }

    /// The page budget.
    pub fn page_budget(&self) -> Duration {
        Duration::from_millis(self.page_budget_ms)
    }

    /// The proxy budget.
    pub fn proxy_budget(&self) -> Duration {
        Duration::from_millis(self.proxy_budget_ms)
    }

    /// How often a replica's version is asked.
    pub fn version_poll(&self) -> Duration {
        Duration::from_millis(self.version_poll_ms.max(1))
    }
}

/// Where the consistency tokens' secret is kept.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsistencyConfig {
    /// A file of 32 bytes or more (default `data/gateway-consistency.key`): made with 32
    /// random bytes (mode 0600) when missing. Every instance of the gateway needs the
    /// same file, or a token one signed is refused by another.
    pub secret_file: PathBuf,
}

impl Default for ConsistencyConfig {
    fn default() -> Self {
        Self {
            secret_file: PathBuf::from("data/gateway-consistency.key"),
        }
    }
}
