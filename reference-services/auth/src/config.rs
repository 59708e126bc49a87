//! The auth service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_AUTH__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_AUTH__TOKENS__ACCESS_TTL_SECONDS=300`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::{EventsConfig, RelayTuning};
use serde::Deserialize;

pub use crate::hashing::HashingConfig;
pub use crate::tokens::TokenConfig;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_AUTH";

/// Everything the auth service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8084`).
    pub listen: SocketAddr,
    /// The SQLite file of users and the outbox (default `data/auth.db`).
    pub database: PathBuf,
    /// The directory of the signing keys (default `data/auth-keys`), created mode 0700
    /// with each key in a 0600 file. Keep it out of version control and backups that
    /// others can read.
    pub keys_dir: PathBuf,
    /// Where events go (default: the embedded bus in `data/bus.db`, topic `user-events`).
    pub events: EventsConfig,
    /// How the outbox relay works.
    pub relay: RelayTuning,
    /// Issuer, audiences and lifetime of access tokens.
    pub tokens: TokenConfig,
    /// The argon2id parameters (default OWASP's minimum: m=19456 KiB, t=2, p=1).
    pub password_hashing: HashingConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            database: PathBuf::from("data/auth.db"),
            keys_dir: PathBuf::from("data/auth-keys"),
            events: EventsConfig::default(),
            relay: RelayTuning::default(),
            tokens: TokenConfig::default(),
            password_hashing: HashingConfig::default(),
        }
    }
}
