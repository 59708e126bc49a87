//! The policy service's events: each carries the policy as it is after the change.

use dovetail_events::envelope::{Envelope, Event};
use serde::{Deserialize, Serialize};
use time::Date;

use crate::Money;

/// The topic policy events are published to.
pub const TOPIC: &str = "policy-events";

/// The aggregate type of policy events.
pub const AGGREGATE_TYPE: &str = "policy";

/// Where a policy is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    /// Being prepared; covers nothing yet.
    Draft,
    /// Issued: covers incidents between its effective and expiry dates.
    Active,
    /// Cancelled before it expired; covers nothing from then on.
    Cancelled,
    /// Past its expiry date.
    Expired,
}

impl PolicyStatus {
    /// The status as it appears in JSON (`"active"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }
}

/// A policy as the policy service holds it at one version: what every policy event
/// carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySnapshot {
    /// The policy's id.
    pub policy_id: String,
    /// The customer who holds it.
    pub customer_id: String,
    /// What it insures, such as `home` or `motor`.
    pub product_line: String,
    /// The most a claim can pay before the deductible.
    pub coverage_limit: Money,
    /// What the customer pays of each claim.
    pub deductible: Money,
    /// The yearly premium.
    pub premium: Money,
    /// The first day covered.
    #[serde(with = "crate::date")]
    pub effective_date: Date,
    /// The last day covered.
    #[serde(with = "crate::date")]
    pub expiry_date: Date,
    /// The stored status (an active policy past its expiry date is still `active` here).
    pub status: PolicyStatus,
    /// The policy's version: the sequence of the event that carries this snapshot.
    pub version: u64,
}

/// A draft policy was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDrafted {
    /// The policy after the change.
    pub policy: PolicySnapshot,
}

impl Event for PolicyDrafted {
    const TYPE: &'static str = "policy.drafted";
    const VERSION: u32 = 1;
}

/// A policy was issued: it is active from its effective date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyIssued {
    /// The policy after the change.
    pub policy: PolicySnapshot,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

/// A policy's terms changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyUpdated {
    /// The policy after the change.
    pub policy: PolicySnapshot,
}

impl Event for PolicyUpdated {
    const TYPE: &'static str = "policy.updated";
    const VERSION: u32 = 1;
}

/// A policy was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCancelled {
    /// The policy after the change.
    pub policy: PolicySnapshot,
    /// Why, as the caller said.
    pub reason: Option<String>,
}

impl Event for PolicyCancelled {
    const TYPE: &'static str = "policy.cancelled";
    const VERSION: u32 = 1;
}

/// Any policy event, read from an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// See [`PolicyDrafted`].
    Drafted(PolicyDrafted),
    /// See [`PolicyIssued`].
    Issued(PolicyIssued),
    /// See [`PolicyUpdated`].
    Updated(PolicyUpdated),
    /// See [`PolicyCancelled`].
    Cancelled(PolicyCancelled),
}

impl PolicyEvent {
    /// The policy as the event left it.
    pub fn snapshot(&self) -> &PolicySnapshot {
        match self {
            Self::Drafted(event) => &event.policy,
            Self::Issued(event) => &event.policy,
            Self::Updated(event) => &event.policy,
            Self::Cancelled(event) => &event.policy,
        }
    }

    /// Reads the policy event in `envelope`.
    ///
    /// # Errors
    /// [`crate::ContractError`] when the envelope holds another type or a payload that
    /// does not match its schema: not retriable, the message belongs in a dead-letter
    /// queue.
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, crate::ContractError> {
        let upcasters = dovetail_events::envelope::Upcasters::new();
        let decoded = match envelope.event_type().as_str() {
            PolicyDrafted::TYPE => envelope.decode(&upcasters).map(Self::Drafted),
            PolicyIssued::TYPE => envelope.decode(&upcasters).map(Self::Issued),
            PolicyUpdated::TYPE => envelope.decode(&upcasters).map(Self::Updated),
            PolicyCancelled::TYPE => envelope.decode(&upcasters).map(Self::Cancelled),
            other => return Err(crate::ContractError::UnknownType(other.to_owned())),
        };
        decoded.map_err(|error| crate::ContractError::Payload(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
    use time::macros::date;

    use super::{PolicyEvent, PolicyIssued, PolicySnapshot, PolicyStatus};
    use crate::ContractError;

    fn snapshot() -> PolicySnapshot {
        PolicySnapshot {
            policy_id: "pol-1".into(),
            customer_id: "cust-1".into(),
            product_line: "home".into(),
            coverage_limit: "10000.00".parse().unwrap(),
            deductible: "250.00".parse().unwrap(),
            premium: "120.00".parse().unwrap(),
            effective_date: date!(2026 - 01 - 01),
            expiry_date: date!(2026 - 12 - 31),
            status: PolicyStatus::Active,
            version: 2,
        }
    }

    fn envelope<E: dovetail_events::envelope::Event>(event: &E) -> Envelope {
        Envelope::new(
            Source::parse("policy-service").unwrap(),
            AggregateRef::parse("policy", "pol-1").unwrap(),
            Sequence::new(2).unwrap(),
            event,
            EventMetadata::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_policy_event_reads_back_with_its_snapshot_and_dates_as_text() {
        let issued = PolicyIssued { policy: snapshot() };
        let envelope = envelope(&issued);
        assert_eq!(envelope.payload()["policy"]["effective_date"], "2026-01-01");
        assert_eq!(envelope.payload()["policy"]["coverage_limit"], "10000.00");
        let read = PolicyEvent::from_envelope(&envelope).unwrap();
        assert_eq!(read, PolicyEvent::Issued(issued));
        assert_eq!(read.snapshot().version, 2);
    }

    #[test]
    fn other_types_and_broken_payloads_are_refused_with_the_reason() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Renamed {
            name: String,
        }
        impl dovetail_events::envelope::Event for Renamed {
            const TYPE: &'static str = "policy.renamed";
            const VERSION: u32 = 1;
        }
        let error =
            PolicyEvent::from_envelope(&envelope(&Renamed { name: "x".into() })).unwrap_err();
        assert_eq!(error, ContractError::UnknownType("policy.renamed".into()));

        #[derive(serde::Serialize, serde::Deserialize)]
        struct BadIssued {
            policy: String,
        }
        impl dovetail_events::envelope::Event for BadIssued {
            const TYPE: &'static str = "policy.issued";
            const VERSION: u32 = 1;
        }
        let error =
            PolicyEvent::from_envelope(&envelope(&BadIssued { policy: "x".into() })).unwrap_err();
        assert!(matches!(error, ContractError::Payload(_)), "{error}");
    }
}
