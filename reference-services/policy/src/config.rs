//! The policy service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_POLICY__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_POLICY__STORAGE__BACKEND=dynamodb`).

use std::net::SocketAddr;
use std::path::PathBuf;

use dovetail_service_kit::config::{EventsBackend, RelayTuning, StorageBackend};
use serde::Deserialize;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_POLICY";

/// Everything the policy service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8081`).
    pub listen: SocketAddr,
    /// Where policies are kept.
    pub storage: StorageConfig,
    /// Where events go.
    pub events: EventsConfig,
    /// How the outbox relay works.
    pub relay: RelayTuning,
}

/// Which database holds the policies (and their outbox).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `sqlite` (default) or `dynamodb`.
    pub backend: StorageBackend,
    /// The SQLite file (default `data/policy.db`).
    pub sqlite_path: PathBuf,
    /// The DynamoDB table (default `dovetail-policy`), created when missing.
    pub dynamodb_table: String,
}

/// Where the service publishes its events.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `embedded` (default: the embedded bus) or `aws` (SNS).
    pub backend: EventsBackend,
    /// The embedded bus's file (default `data/bus.db`).
    pub bus_path: PathBuf,
    /// The topic's name (default `policy-events`; on AWS, the SNS topic, created when
    /// missing).
    pub topic: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
            relay: RelayTuning::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Sqlite,
            sqlite_path: PathBuf::from("data/policy.db"),
            dynamodb_table: "dovetail-policy".to_owned(),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            backend: EventsBackend::Embedded,
            bus_path: PathBuf::from("data/bus.db"),
            topic: "policy-events".to_owned(),
        }
    }
}
