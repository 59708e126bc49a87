//! The auth service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_AUTH__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_AUTH__TOKENS__ACCESS_TTL_SECONDS=300`, or
//! `DOVETAIL_AUTH__STORAGE__BACKEND=dynamodb`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::{EventsConfig, RelayTuning, StorageConfig};
use serde::Deserialize;

pub use crate::hashing::HashingConfig;
pub use crate::http::{TrustedProxy, TrustedProxyError};
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
    /// Who the HTTP API believes about client addresses.
    pub http: HttpConfig,
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
            http: HttpConfig::default(),
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

/// The `http` section: what the API believes of the requests it gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The proxies (the gateway, a load balancer) whose `X-Forwarded-For` names the
    /// client that log-in and refresh throttling count per address: IP addresses or CIDR
    /// blocks, such as `["10.0.0.0/8", "2001:db8::7"]`. Default none: the client is the
    /// TCP peer and `X-Forwarded-For` is ignored, so that no caller picks its own address.
    /// Behind a gateway, list the gateway (only): else every caller shares its address.
    /// From a trusted peer the client is the rightmost entry that is not itself a
    /// trusted proxy; a header that cannot be read there means the peer.
    ///
    /// In a variable, separated by commas:
    /// `DOVETAIL_AUTH__HTTP__TRUSTED_PROXIES=10.0.0.5,10.1.0.0/16`.
    #[serde(deserialize_with = "proxy_list")]
    pub trusted_proxies: Vec<TrustedProxy>,
}

/// A list of proxies, as TOML's list of strings or one string of comma-separated ones (as
/// an environment variable holds it).
fn proxy_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<TrustedProxy>, D::Error> {
    struct Proxies;

    impl<'de> serde::de::Visitor<'de> for Proxies {
        type Value = Vec<TrustedProxy>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(
                "a list of IP addresses or CIDR blocks, such as [\"10.0.0.5\", \"10.1.0.0/16\"], \
                 or one string of them separated by commas",
            )
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.split(',')
                .filter(|entry| !entry.trim().is_empty())
                .map(|entry| entry.parse().map_err(E::custom))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut proxies = Vec::new();
            while let Some(proxy) = seq.next_element()? {
                proxies.push(proxy);
            }
            Ok(proxies)
        }
    }

    deserializer.deserialize_any(Proxies)
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
    fn trusted_proxies_are_none_by_default_and_read_from_a_file_or_a_variable() {
        assert!(AuthConfig::default().http.trusted_proxies.is_empty());
        let expected: Vec<TrustedProxy> = ["10.0.0.5", "10.1.0.0/16", "2001:db8::/32"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();

        let dir = std::env::temp_dir().join(format!("auth-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auth.toml");
        std::fs::write(
            &file,
            "[http]\ntrusted_proxies = [\"10.0.0.5\", \"10.1.0.0/16\", \"2001:db8::/32\"]\n",
        )
        .unwrap();
        let config: AuthConfig =
            dovetail_service_kit::config::load_from(Some(&file), ENV_PREFIX, []).unwrap();
        assert_eq!(config.http.trusted_proxies, expected);

        let env = [(
            "DOVETAIL_AUTH__HTTP__TRUSTED_PROXIES".to_owned(),
            " 10.0.0.5, 10.1.0.0/16 ,2001:db8::/32".to_owned(),
        )];
        let config: AuthConfig =
            dovetail_service_kit::config::load_from(None, ENV_PREFIX, env).unwrap();
        assert_eq!(config.http.trusted_proxies, expected);

        // A wrong entry names itself and what to write instead.
        for (name, value) in [
            ("DOVETAIL_AUTH__HTTP__TRUSTED_PROXIES", "10.0.0.5,gateway"),
            ("DOVETAIL_AUTH__HTTP__TRUSTED_PROXIES", "10.0.0.0/40"),
        ] {
            let env = [(name.to_owned(), value.to_owned())];
            let error =
                dovetail_service_kit::config::load_from::<AuthConfig>(None, ENV_PREFIX, env)
                    .unwrap_err()
                    .to_string();
            assert!(error.contains("is not a trusted proxy"), "{value}: {error}");
            assert!(error.contains("CIDR block"), "{value}: {error}");
        }
        std::fs::write(&file, "[http]\ntrusted_proxies = [\"10.0.0.5\", 7]\n").unwrap();
        let error =
            dovetail_service_kit::config::load_from::<AuthConfig>(Some(&file), ENV_PREFIX, [])
                .unwrap_err()
                .to_string();
        assert!(error.contains("trusted_proxies"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
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
