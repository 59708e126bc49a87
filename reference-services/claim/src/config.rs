//! The claim service's configuration: defaults, then a TOML file, then variables
//! `DOVETAIL_CLAIM__<FIELD>[__<SUBFIELD>]` (for example
//! `DOVETAIL_CLAIM__STORAGE__BACKEND=dynamodb`).

use std::net::SocketAddr;

use dovetail_events::transport::{Subscription, TypeFilter};
use dovetail_service_kit::config::{EventsConfig, IdentityConfig, RelayTuning, StorageConfig};
use serde::Deserialize;

/// The prefix of the service's environment variables.
pub const ENV_PREFIX: &str = "DOVETAIL_CLAIM";

/// The consumer name of the claim service's subscription: the stem of its resources.
pub const CONSUMER: &str = "claim-service";

/// The subscription (embedded bus) or queue (SQS) through which the claim service
/// receives policy events, as [`policy_events`] names it.
pub const POLICY_EVENTS_SUBSCRIPTION: &str = "claim-service-policy-events";

/// What the claim service reads: the policy events that feed its replica.
///
/// ```
/// use dovetail_claim::config::{POLICY_EVENTS_SUBSCRIPTION, policy_events};
///
/// assert_eq!(policy_events().queue_name(), POLICY_EVENTS_SUBSCRIPTION);
/// ```
pub fn policy_events() -> Subscription {
    Subscription::new(CONSUMER).to_topic(
        dovetail_contracts::policy::TOPIC,
        TypeFilter::prefixes(["policy."]),
    )
}

/// Everything the claim service can be told.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimConfig {
    /// Where the HTTP API listens (default `127.0.0.1:8082`).
    pub listen: SocketAddr,
    /// Where claims and the policy replica are kept (default `data/claim.db`).
    pub storage: StorageConfig,
    /// Where events go and come from (default: the embedded bus in `data/bus.db`).
    pub events: EventsConfig,
    /// How the outbox relay works.
    pub relay: RelayTuning,
    /// Whose tokens the API accepts (default: the auth service on `127.0.0.1:8084`);
    /// for example `DOVETAIL_CLAIM__IDENTITY__JWKS_URL`.
    pub identity: IdentityConfig,
}

impl Default for ClaimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            storage: StorageConfig::default(),
            events: EventsConfig::default(),
            relay: RelayTuning::default(),
            identity: IdentityConfig::default(),
        }
    }
}
