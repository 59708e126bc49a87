//! The auth service's events about users: each carries the user as they are after the
//! change. Never a password, its hash or a token: what a consumer needs is who the user
//! is and whether they may still log in.

use dovetail_events::envelope::{Envelope, Event};
use serde::{Deserialize, Serialize};

/// The topic user events are published to.
pub const TOPIC: &str = "user-events";

/// The aggregate type of user events.
pub const AGGREGATE_TYPE: &str = "user";

/// What a user may do, as their access tokens' `roles` claim says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRole {
    /// A customer, acting for the one customer id they are bound to.
    Customer,
    /// Staff, acting for any customer.
    Staff,
}

impl UserRole {
    /// The role as the `roles` claim and the database spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
        }
    }
}

/// A user as they are after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    /// The user's id (`usr-<uuid>`), the `sub` of their tokens.
    pub user_id: String,
    /// The normalised email (trimmed, lowercased).
    pub email: String,
    /// Customer or staff.
    pub role: UserRole,
    /// The customer a customer user acts for; `None` for staff.
    pub customer_id: Option<String>,
    /// Whether the user is disabled (can no longer log in).
    pub disabled: bool,
    /// How many events the user has had.
    pub version: u64,
}

/// A user registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The user after the change.
    pub user: UserSnapshot,
}

impl Event for UserRegistered {
    const TYPE: &'static str = "user.registered";
    const VERSION: u32 = 1;
}

/// A user was disabled by staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDisabled {
    /// The user after the change.
    pub user: UserSnapshot,
}

impl Event for UserDisabled {
    const TYPE: &'static str = "user.disabled";
    const VERSION: u32 = 1;
}

/// Staff changed a user's role: promoted a customer user to staff, or made a staff user
/// a customer user bound to a customer id. The snapshot holds the new role and customer
/// id (`None` for staff); `previous_role` says what they were, so a consumer can tell a
/// promotion from a demotion without keeping history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    /// The user after the change.
    pub user: UserSnapshot,
    /// The role the user had before the change.
    pub previous_role: UserRole,
}

impl Event for UserRoleChanged {
    const TYPE: &'static str = "user.role_changed";
    const VERSION: u32 = 1;
}

/// Any user event, read from an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    /// See [`UserRegistered`].
    Registered(UserRegistered),
    /// See [`UserDisabled`].
    Disabled(UserDisabled),
    /// See [`UserRoleChanged`].
    RoleChanged(UserRoleChanged),
}

impl UserEvent {
    /// The user as the event left them.
    pub fn snapshot(&self) -> &UserSnapshot {
        match self {
            Self::Registered(event) => &event.user,
            Self::Disabled(event) => &event.user,
            Self::RoleChanged(event) => &event.user,
        }
    }

    /// Reads the user event in `envelope`.
    ///
    /// # Errors
    /// [`crate::ContractError`] when the envelope holds another type or a payload that
    /// does not match its schema: not retriable, the message belongs in a dead-letter
    /// queue.
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, crate::ContractError> {
        let upcasters = dovetail_events::envelope::Upcasters::new();
        let decoded = match envelope.event_type().as_str() {
            UserRegistered::TYPE => envelope.decode(&upcasters).map(Self::Registered),
            UserDisabled::TYPE => envelope.decode(&upcasters).map(Self::Disabled),
            UserRoleChanged::TYPE => envelope.decode(&upcasters).map(Self::RoleChanged),
            other => return Err(crate::ContractError::UnknownType(other.to_owned())),
        };
        decoded.map_err(|error| crate::ContractError::Payload(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};

    use super::{UserDisabled, UserEvent, UserRole, UserRoleChanged, UserSnapshot};
    use crate::ContractError;

    fn envelope<E: dovetail_events::envelope::Event>(event: &E) -> Envelope {
        Envelope::new(
            Source::parse("auth-service").unwrap(),
            AggregateRef::parse("user", "usr-1").unwrap(),
            Sequence::new(2).unwrap(),
            event,
            EventMetadata::default(),
        )
        .unwrap()
    }

    #[test]
    fn a_user_event_reads_back_with_its_snapshot() {
        let disabled = UserDisabled {
            user: UserSnapshot {
                user_id: "usr-1".into(),
                email: "ada@example.com".into(),
                role: UserRole::Customer,
                customer_id: Some("cust-1".into()),
                disabled: true,
                version: 2,
            },
        };
        let envelope = envelope(&disabled);
        assert_eq!(envelope.payload()["user"]["role"], "customer");
        let read = UserEvent::from_envelope(&envelope).unwrap();
        assert_eq!(read, UserEvent::Disabled(disabled));
        assert!(read.snapshot().disabled);
    }

    #[test]
    fn a_role_change_reads_back_with_the_previous_role_and_no_secret() {
        let promoted = UserRoleChanged {
            user: UserSnapshot {
                user_id: "usr-1".into(),
                email: "ada@example.com".into(),
                role: UserRole::Staff,
                customer_id: None,
                disabled: false,
                version: 2,
            },
            previous_role: UserRole::Customer,
        };
        let envelope = envelope(&promoted);
        assert_eq!(envelope.event_type().as_str(), "user.role_changed");
        let payload = envelope.payload();
        assert_eq!(payload["user"]["role"], "staff");
        assert_eq!(payload["user"]["customer_id"], serde_json::Value::Null);
        assert_eq!(payload["previous_role"], "customer");
        let mut fields: Vec<&str> = payload["user"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "customer_id",
                "disabled",
                "email",
                "role",
                "user_id",
                "version"
            ],
            "a user event carries no password, hash or token"
        );
        let read = UserEvent::from_envelope(&envelope).unwrap();
        assert_eq!(read, UserEvent::RoleChanged(promoted));
        assert_eq!(read.snapshot().role, UserRole::Staff);
    }

    #[test]
    fn another_type_is_unknown() {
        let issued = crate::policy::PolicyCancelled {
            policy: serde_json::from_value(serde_json::json!({
                "policy_id": "p", "customer_id": "c", "product_line": "home",
                "coverage_limit": "1.00", "deductible": "1.00", "premium": "1.00",
                "effective_date": "2026-01-01", "expiry_date": "2026-12-31",
                "status": "cancelled", "version": 2
            }))
            .unwrap(),
            reason: None,
        };
        assert!(matches!(
            UserEvent::from_envelope(&envelope(&issued)),
            Err(ContractError::UnknownType(_))
        ));
    }
}
