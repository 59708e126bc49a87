//! [`SessionsConfig`]: where sessions live (`sqlite` file or `redis` URL), how long
//! refresh tokens and families last, and the throttling limits.
//!
//! When the session store is unreachable the service fails closed: log-in, refresh and
//! log-out answer 503 with `Retry-After` (see the `sessions` module documentation).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which store keeps sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SessionBackend {
    /// A SQLite file (embedded, the default).
    #[default]
    Sqlite,
    /// A Redis server (several instances of the service share it).
    Redis,
}

/// Where sessions live and how long they last. Variables:
/// `DOVETAIL_AUTH__SESSIONS__BACKEND=redis`, `DOVETAIL_AUTH__SESSIONS__URL=redis://…`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// `sqlite` (default) or `redis`.
    pub backend: SessionBackend,
    /// The SQLite file (default `data/auth-sessions.db`), for `backend = "sqlite"`.
    pub path: PathBuf,
    /// The Redis URL (`redis://host:6379/0`, `rediss://` for TLS), for
    /// `backend = "redis"`. A password in it never appears in logs or `Debug` output.
    pub url: Option<String>,
    /// The prefix of every Redis key (default `dovetail:auth:sessions:`).
    pub key_prefix: String,
    /// How long an unused refresh token is accepted, in seconds (default 1209600: 14
    /// days). Each refresh issues a new one with a fresh lifetime.
    pub refresh_ttl_seconds: u64,
    /// How long a family (one log-in) lasts however often it is refreshed, in seconds
    /// (default 2592000: 30 days); then the user logs in again.
    pub family_ttl_seconds: u64,
    /// Failed log-ins and refreshes allowed per window.
    pub throttle: ThrottleConfig,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            backend: SessionBackend::Sqlite,
            path: PathBuf::from("data/auth-sessions.db"),
            url: None,
            key_prefix: "dovetail:auth:sessions:".to_owned(),
            refresh_ttl_seconds: 14 * 24 * 3600,
            family_ttl_seconds: 30 * 24 * 3600,
            throttle: ThrottleConfig::default(),
        }
    }
}

impl SessionsConfig {
    /// The refresh tokens' lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_seconds)
    }

    /// The families' absolute lifetime.
    pub fn family_ttl(&self) -> Duration {
        Duration::from_secs(self.family_ttl_seconds)
    }
}

impl std::fmt::Debug for SessionsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionsConfig")
            .field("backend", &self.backend)
            .field("path", &self.path)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("key_prefix", &self.key_prefix)
            .field("refresh_ttl_seconds", &self.refresh_ttl_seconds)
            .field("family_ttl_seconds", &self.family_ttl_seconds)
            .field("throttle", &self.throttle)
            .finish()
    }
}

/// `url` with any user and password replaced by `<redacted>`.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}<redacted>{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// At most `max_failures` failures in a fixed window of `window_seconds`; past that,
/// attempts are refused with 429 until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Failures allowed in one window.
    pub max_failures: u32,
    /// The window's length, in seconds, from the first failure.
    pub window_seconds: u64,
}

impl Limit {
    /// The window's length.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_seconds)
    }
}

/// Throttling limits. A window ends `window_seconds` after the first failure that opened
/// it, however many attempts follow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failed log-ins per account (the normalised email, whether or not it has an
    /// account), default 5 per 15 minutes. A successful log-in clears it.
    pub per_account: Limit,
    /// Failed log-ins per client address, default 50 per 15 minutes.
    pub per_address: Limit,
    /// Failed refreshes per client address, default 30 per 15 minutes.
    pub refresh_per_address: Limit,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_account: Limit {
                max_failures: 5,
                window_seconds: 900,
            },
            per_address: Limit {
                max_failures: 50,
                window_seconds: 900,
            },
            refresh_per_address: Limit {
                max_failures: 30,
                window_seconds: 900,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password_of_the_redis_url() {
        let config = SessionsConfig {
            backend: SessionBackend::Redis,
            url: Some("redis://user:s3cret@cache.internal:6379/0".to_owned()),
            ..SessionsConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("redis://<redacted>@cache.internal:6379/0"),
            "{shown}"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_defaults_are_sqlite_fourteen_day_tokens_and_five_failures_per_account() {
        let config = SessionsConfig::default();
        assert_eq!(config.backend, SessionBackend::Sqlite);
        assert_eq!(config.path, PathBuf::from("data/auth-sessions.db"));
        assert_eq!(config.refresh_ttl(), Duration::from_secs(1_209_600));
        assert_eq!(config.throttle.per_account.max_failures, 5);
        assert_eq!(config.throttle.per_address.max_failures, 50);
    }
}
