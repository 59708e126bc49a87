//! The auth service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_AUTH__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_AUTH__TOKENS__ACCESS_TTL_SECONDS=300`, or
//! `DOVETAIL_AUTH__STORAGE__BACKEND=dynamodb`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::{EventsConfig, RelayTuning, StorageConfig};
use serde::Deserialize;

pub use crate::hashing::HashingConfig;
pub use crate::sessions::SessionsConfig;
pub use crate::tokens::TokenConfig;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_AUTH";

/// Everything the auth service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8084`).
    pub listen: SocketAddr,
    /// Where users and the outbox are kept: `backend = "sqlite"` (default) in
    /// `sqlite_path` (default `data/auth.db`), or `backend = "dynamodb"` in the table
    /// `dynamodb_table` (default `dovetail-auth`, created when missing; needs the AWS
    /// events transport and the `aws` feature).
    pub storage: StorageConfig,
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
    /// The argon2id parameters (default OWASP's minimum: m=19456 KiB, t=2, p=1) and how
    /// many hashes run at once.
    pub password_hashing: HashingConfig,
    /// Where refresh-token families, revocations and log-in failure counters live
    /// (default the SQLite file `data/auth-sessions.db`; `backend = "redis"` with `url`
    /// at scale), their lifetimes and the throttling limits. When the store is
    /// unreachable, log-in, refresh and log-out fail closed with 503 and `Retry-After`.
    pub sessions: SessionsConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            storage: StorageConfig::default(),
            keys_dir: PathBuf::from("data/auth-keys"),
            events: EventsConfig::default(),
            relay: RelayTuning::default(),
            tokens: TokenConfig::default(),
            password_hashing: HashingConfig::default(),
            sessions: SessionsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_port_8084_fifteen_minute_tokens_and_owasps_minimum() {
        let config = AuthConfig::default();
        assert_eq!(config.listen.port(), 8084);
        assert_eq!(config.tokens.access_ttl_seconds, 900);
        assert!(config.tokens.audiences.iter().any(|a| a == crate::SERVICE));
        assert_eq!(config.password_hashing, HashingConfig::default());
        assert_eq!(
            config.storage.sqlite_path("auth"),
            PathBuf::from("data/auth.db")
        );
    }

    #[test]
    fn storage_moves_to_dynamodb_by_configuration() {
        let env = [
            ("DOVETAIL_AUTH__STORAGE__BACKEND", "dynamodb"),
            ("DOVETAIL_AUTH__STORAGE__DYNAMODB_TABLE", "users-prod"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let config: AuthConfig =
            dovetail_service_kit::config::load_from(None, ENV_PREFIX, env).unwrap();
        assert_eq!(
            config.storage.backend,
            dovetail_service_kit::config::StorageBackend::Dynamodb
        );
        assert_eq!(config.storage.dynamodb_table("auth"), "users-prod");
    }

    #[test]
    fn variables_override_nested_settings() {
        let env = [
            ("DOVETAIL_AUTH__TOKENS__ACCESS_TTL_SECONDS", "300"),
            ("DOVETAIL_AUTH__PASSWORD_HASHING__MEMORY_KIB", "65536"),
            ("DOVETAIL_AUTH__KEYS_DIR", "/var/lib/auth/keys"),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned()));
        let config: AuthConfig =
            dovetail_service_kit::config::load_from(None, ENV_PREFIX, env).unwrap();
        assert_eq!(config.tokens.access_ttl_seconds, 300);
        assert_eq!(config.password_hashing.memory_kib, 65_536);
        assert_eq!(config.password_hashing.iterations, 2);
        assert_eq!(config.keys_dir, PathBuf::from("/var/lib/auth/keys"));
    }
}
