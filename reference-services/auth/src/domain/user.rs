//! [`User`]: who can log in, as what, and whether they still may; each change returns
//! the event to publish ([`UserChange`]), and the version counts the events.

pub use dovetail_contracts::user::UserRole;
use dovetail_contracts::user::{UserDisabled, UserRegistered, UserSnapshot};

use super::{DomainError, Email};

/// The longest customer id accepted.
const MAX_CUSTOMER_ID: usize = 100;

/// A user: their id, normalised email, role (a customer user bound to one customer id),
/// and whether they are disabled. The password hash is not part of it: it lives only in
/// the store, so no event or view can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    snapshot: UserSnapshot,
}

/// A change to a user, as the event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserChange {
    /// `user.registered`.
    Registered(UserRegistered),
    /// `user.disabled`.
    Disabled(UserDisabled),
}

impl UserChange {
    /// The user after the change.
    pub fn snapshot(&self) -> &UserSnapshot {
        match self {
            Self::Registered(event) => &event.user,
            Self::Disabled(event) => &event.user,
        }
    }
}

impl User {
    /// A new customer user bound to `customer_id`.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on `customer_id` when it is empty or too long.
    pub fn register_customer(
        email: Email,
        customer_id: &str,
    ) -> Result<(Self, UserChange), DomainError> {
        let customer_id = customer_id.trim();
        if customer_id.is_empty() || customer_id.chars().count() > MAX_CUSTOMER_ID {
            return Err(DomainError::invalid(
                "customer_id",
                format!("give the customer's id, 1 to {MAX_CUSTOMER_ID} characters"),
            ));
        }
        Ok(Self::register(
            email,
            UserRole::Customer,
            Some(customer_id.to_owned()),
        ))
    }

    /// A new staff user.
    pub fn register_staff(email: Email) -> (Self, UserChange) {
        Self::register(email, UserRole::Staff, None)
    }

    fn register(email: Email, role: UserRole, customer_id: Option<String>) -> (Self, UserChange) {
        let user = Self {
            snapshot: UserSnapshot {
                user_id: format!("usr-{}", uuid::Uuid::now_v7()),
                email: email.into_string(),
                role,
                customer_id,
                disabled: false,
                version: 1,
            },
        };
        let change = UserChange::Registered(UserRegistered {
            user: user.snapshot.clone(),
        });
        (user, change)
    }

    /// The user as stored and published.
    pub fn from_snapshot(snapshot: UserSnapshot) -> Self {
        Self { snapshot }
    }

    /// The user disabled, with its event; `None` when already disabled (nothing changes).
    pub fn disable(&self) -> Option<(Self, UserChange)> {
        if self.snapshot.disabled {
            return None;
        }
        let mut snapshot = self.snapshot.clone();
        snapshot.disabled = true;
        snapshot.version += 1;
        let change = UserChange::Disabled(UserDisabled {
            user: snapshot.clone(),
        });
        Some((Self { snapshot }, change))
    }

    /// The user's state.
    pub fn snapshot(&self) -> &UserSnapshot {
        &self.snapshot
    }

    /// The user's id.
    pub fn id(&self) -> &str {
        &self.snapshot.user_id
    }

    /// Whether the user may no longer log in.
    pub fn is_disabled(&self) -> bool {
        self.snapshot.disabled
    }

    /// How many events the user has had.
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email::parse("ada@example.com").unwrap()
    }

    #[test]
    fn a_customer_registers_bound_to_their_customer() {
        let (user, change) = User::register_customer(email(), " cust-1 ").unwrap();
        assert_eq!(user.snapshot().customer_id.as_deref(), Some("cust-1"));
        assert_eq!(user.snapshot().role, UserRole::Customer);
        assert_eq!(user.version(), 1);
        assert_eq!(change.snapshot(), user.snapshot());
        assert!(user.id().starts_with("usr-"));
    }

    #[test]
    fn a_customer_needs_a_customer_id() {
        assert!(User::register_customer(email(), "  ").is_err());
    }

    #[test]
    fn disabling_counts_once() {
        let (user, _) = User::register_staff(email());
        let (disabled, change) = user.disable().unwrap();
        assert!(disabled.is_disabled());
        assert_eq!(disabled.version(), 2);
        assert!(matches!(change, UserChange::Disabled(_)));
        assert!(disabled.disable().is_none());
    }
}
