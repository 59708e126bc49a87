//! Layered configuration: defaults, then a TOML file, then environment variables.
//!
//! A service describes its configuration as a `serde` struct with defaults; [`load`]
//! reads the file (when given) over the defaults and then every variable
//! `<PREFIX>__<FIELD>[__<SUBFIELD>]` over that, so one variable changes one field
//! without a file:
//!
//! ```
//! use dovetail_service_kit::config;
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Config { port: u16, storage: Storage }
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Storage { path: String }
//! impl Default for Config { fn default() -> Self { Self { port: 8081, storage: Storage::default() } } }
//! impl Default for Storage { fn default() -> Self { Self { path: "data/policy.db".into() } } }
//!
//! let env = [("POLICY__STORAGE__PATH".to_owned(), "/tmp/p.db".to_owned())];
//! let config: Config = config::load_from(None, "POLICY", env)?;
//! assert_eq!((config.port, config.storage.path.as_str()), (8081, "/tmp/p.db"));
//! # Ok::<(), config::ConfigError>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dovetail_outbox::relay::RelayConfig;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use toml::{Table, Value};

/// Why the configuration cannot be loaded; the message names the file or variable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("the configuration file {path} is not valid TOML: {message}")]
    NotToml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value does not fit its field.
    #[error("invalid configuration ({origin}): {message}")]
    Invalid {
        /// Where the values came from.
        origin: String,
        /// What does not fit.
        message: String,
    },
}

/// Loads a `T` from its defaults, the TOML file at `file` and the process's environment
/// variables under `prefix`.
///
/// # Errors
/// See [`ConfigError`].
pub fn load<T: DeserializeOwned>(file: Option<&Path>, prefix: &str) -> Result<T, ConfigError> {
    load_from(file, prefix, std::env::vars())
}

/// [`load`] with the environment given.
///
/// # Errors
/// See [`ConfigError`].
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
                path: path.to_owned(),
                source,
            })?;
            text.parse::<Table>()
                .map_err(|error| ConfigError::NotToml {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?
        }
        None => Table::new(),
    };
    let mut variables = Vec::new();
    let head = format!("{prefix}__");
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(&head) else {
            continue;
        };
        let keys: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(&mut table, &keys, scalar(&value));
        variables.push(name);
    }
    let origin = match (file, variables.is_empty()) {
        (Some(path), true) => format!("file {}", path.display()),
        (Some(path), false) => format!(
            "file {} and variables {}",
            path.display(),
            variables.join(", ")
        ),
        (None, false) => format!("variables {}", variables.join(", ")),
        (None, true) => "defaults".to_owned(),
    };
    Value::Table(table)
        .try_into()
        .map_err(|error: toml::de::Error| ConfigError::Invalid {
            origin,
            // The message and the field it concerns (`... in `index.backend``), on one line.
            message: error.to_string().trim().replace('\n', " "),
        })
}

/// A variable's text as the TOML value it most plausibly means.
fn scalar(text: &str) -> Value {
    if let Ok(number) = text.parse::<i64>() {
        return Value::Integer(number);
    }
    match text {
        "true" => Value::Boolean(true),
        "false" => Value::Boolean(false),
        _ => Value::String(text.to_owned()),
    }
}

fn set_path(table: &mut Table, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            table.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

/// Which database holds a service's data (and its outbox).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` (default) or `dynamodb`.
    pub backend: StorageBackend,
    /// The SQLite file (default `data/<service>.db`).
    pub sqlite_path: Option<PathBuf>,
    /// The DynamoDB table (default `dovetail-<service>`), created when missing.
    pub dynamodb_table: Option<String>,
}

impl StorageConfig {
    /// The SQLite file of `service` (such as `policy`).
    pub fn sqlite_path(&self, service: &str) -> PathBuf {
        self.sqlite_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("data/{service}.db")))
    }

    /// The DynamoDB table of `service`.
    pub fn dynamodb_table(&self, service: &str) -> String {
        self.dynamodb_table
            .clone()
            .unwrap_or_else(|| format!("dovetail-{service}"))
    }
}

/// Where a service's events go and come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `embedded` (default: the embedded bus) or `aws` (SNS and SQS).
    pub backend: EventsBackend,
    /// The embedded bus's file (default `data/bus.db`), shared by the services of a
    /// stack.
    pub bus_path: PathBuf,
    /// Prepended to every topic and queue name on AWS (default `dovetail-`), so several
    /// environments can share an account.
    pub aws_name_prefix: String,
}

impl EventsConfig {
    /// The transport's name of `name` (a topic or queue): itself on the embedded bus,
    /// prefixed with `aws_name_prefix` on AWS.
    pub fn transport_name(&self, name: &str) -> String {
        match self.backend {
            EventsBackend::Embedded => name.to_owned(),
            EventsBackend::Aws => format!("{}{name}", self.aws_name_prefix),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: EventsBackend::default(),
            bus_path: PathBuf::from("data/bus.db"),
            aws_name_prefix: "dovetail-".to_owned(),
        }
    }
}

/// A storage backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A SQLite file: no server.
    #[default]
    Sqlite,
    /// A DynamoDB table at `AWS_ENDPOINT_URL[_DYNAMODB]` or in AWS.
    Dynamodb,
}

/// An events transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsBackend {
    /// The embedded bus: no server.
    #[default]
    Embedded,
    /// SNS topics and SQS queues at `AWS_ENDPOINT_URL[_SNS|_SQS]` or in AWS.
    Aws,
}

/// The relay's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayTuning {
    /// How often the relay looks for events committed by other processes, in
    /// milliseconds (default 1000; commits of this process wake it at once).
    pub poll_interval_ms: u64,
    /// The most events published per batch (default 100).
    pub batch_size: usize,
}

impl Default for RelayTuning {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1000,
            batch_size: 100,
        }
    }
}

impl RelayTuning {
    /// The polling interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(1))
    }

    /// The configuration of the relay named `name` (the service's name), tuned by these
    /// settings and woken by `wake` (the signal its store's commits give); the rest as
    /// [`RelayConfig::default`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use dovetail_service_kit::config::RelayTuning;
    ///
    /// let config = RelayTuning::default().relay_config("policy-service", Arc::default());
    /// assert_eq!((config.name.as_str(), config.batch_size), ("policy-service", 100));
    /// ```
    pub fn relay_config(&self, name: &str, wake: Arc<Notify>) -> RelayConfig {
        let mut config = RelayConfig::default();
        config.name = name.to_owned();
        config.poll_interval = self.poll_interval();
        config.batch_size = self.batch_size;
        config.wake = Some(wake);
        config
    }
}

/// How a service verifies its callers: the auth service's issuer and where its JWKS is.
/// The audience is the service's own name, so a token minted for another service is
/// refused. Variables: `<PREFIX>__IDENTITY__JWKS_URL` and so on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// The only accepted `iss` (default `https://auth.dovetail.internal`, the auth
    /// service's default).
    pub issuer: String,
    /// The auth service's key set (default
    /// `http://127.0.0.1:8084/.well-known/jwks.json`). Fetched on the first token, again
    /// for an unknown `kid` (at most once per `jwks_refetch_interval_seconds`) and when
    /// older than `jwks_max_age_seconds`; while it cannot be reached, tokens of keys
    /// already fetched still verify and others are refused.
    pub jwks_url: String,
    /// At most one JWKS fetch per this many seconds (default 30).
    pub jwks_refetch_interval_seconds: u64,
    /// The key set is fetched again when older than this many seconds (default 300).
    pub jwks_max_age_seconds: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            issuer: "https://auth.dovetail.internal".to_owned(),
            jwks_url: "http://127.0.0.1:8084/.well-known/jwks.json".to_owned(),
            jwks_refetch_interval_seconds: 30,
            jwks_max_age_seconds: 300,
        }
    }
}

impl IdentityConfig {
    /// The verifier of tokens for `audience` (the service's name, such as
    /// `policy-service`). Fetches nothing yet.
    ///
    /// # Errors
    /// When the JWKS client cannot be built (no TLS backend, for example).
    pub fn verifier(
        &self,
        audience: &str,
    ) -> Result<dovetail_http::identity::JwtVerifier, dovetail_http::identity::JwksError> {
        use dovetail_http::identity::{JwksConfig, JwksSource, JwtVerifier, VerifierConfig};
        let mut jwks = JwksConfig::default();
        jwks.refetch_interval = Duration::from_secs(self.jwks_refetch_interval_seconds);
        jwks.max_age = Duration::from_secs(self.jwks_max_age_seconds);
        let keys = JwksSource::from_url(&self.jwks_url, jwks)?;
        Ok(JwtVerifier::new(
            VerifierConfig::new(&self.issuer, audience),
            keys,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{ConfigError, load_from};

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        port: u16,
        name: String,
    }

    impl Default for Config {
        fn default() -> Self {
            Self {
                port: 1,
                name: "a".into(),
            }
        }
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_defaults() {
        let path = std::env::temp_dir().join(format!("kit-config-{}.toml", std::process::id()));
        std::fs::write(&path, "port = 2\nname = \"file\"\n").unwrap();
        let env = [("SVC__NAME".to_owned(), "env".to_owned())];
        let config: Config = load_from(Some(&path), "SVC", env).unwrap();
        assert_eq!(
            config,
            Config {
                port: 2,
                name: "env".into()
            }
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_bad_value_names_its_origin_and_field() {
        let env = [("SVC__PORT".to_owned(), "eighty".to_owned())];
        let error = load_from::<Config>(None, "SVC", env).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, ConfigError::Invalid { .. }));
        assert!(message.contains("SVC__PORT"), "{message}");
        assert!(message.contains("in `port`"), "{message}");
        let env = [("SVC__COLOUR".to_owned(), "red".to_owned())];
        let message = load_from::<Config>(None, "SVC", env)
            .unwrap_err()
            .to_string();
        assert!(message.contains("unknown field `colour`"), "{message}");
    }
}
