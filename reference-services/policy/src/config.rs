//! The policy service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_POLICY__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_POLICY__STORAGE__BACKEND=dynamodb`).

use std::net::SocketAddr;

use dovetail_service_kit::config::{EventsConfig, IdentityConfig, RelayTuning, StorageConfig};
use serde::Deserialize;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_POLICY";

/// Everything the policy service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8081`).
    pub listen: SocketAddr,
    /// Where policies are kept (default `data/policy.db`).
    pub storage: StorageConfig,
    /// Where events go (default: the embedded bus in `data/bus.db`, topic
    /// `policy-events`).
    pub events: EventsConfig,
    /// How the outbox relay works.
    pub relay: RelayTuning,
    /// Whose tokens the API accepts (default: the auth service on `127.0.0.1:8084`);
    /// for example `DOVETAIL_POLICY__IDENTITY__JWKS_URL`.
    pub identity: IdentityConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
            relay: RelayTuning::default(),
            identity: IdentityConfig::default(),
        }
    }
}
