//! [`User`]: who can log in, as what, and whether they still may; each change returns
//! the event to publish ([`UserChange`]), and the version counts the events.

pub use dovetail_contracts::user::UserRole;
use dovetail_contracts::user::{UserDisabled, UserRegistered, UserRoleChanged, UserSnapshot};

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
    /// `user.role_changed`.
    RoleChanged(UserRoleChanged),
}

/// The role a user is given by [`User::change_role`]: staff, or a customer user bound to
/// one customer id (which a customer role cannot be without).
///
/// ```
/// use dovetail_auth::domain::RoleAssignment;
///
/// assert!(RoleAssignment::customer(" cust-1 ").is_ok());
/// assert!(RoleAssignment::customer("").is_err());
/// let _ = RoleAssignment::Staff;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleAssignment {
    /// Staff, acting for any customer (no customer id).
    Staff,
    /// A customer user acting for `customer_id` only.
    Customer {
        /// The customer's id, trimmed, 1 to 100 characters.
        customer_id: String,
    },
}

impl RoleAssignment {
    /// The customer role bound to `customer_id` (trimmed).
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on `customer_id` when it is empty or too long.
    pub fn customer(customer_id: &str) -> Result<Self, DomainError> {
        Ok(Self::Customer {
            customer_id: parse_customer_id(customer_id)?,
        })
    }

    /// The assignment a request names: `role`, with `customer_id` for a customer and
    /// without one for staff.
    ///
    /// # Errors
    /// [`DomainError::Invalid`] on `customer_id` when a customer role has none (or an
    /// invalid one), or a staff role has one.
    pub fn parse(role: UserRole, customer_id: Option<&str>) -> Result<Self, DomainError> {
        match (role, customer_id) {
            (UserRole::Staff, None) => Ok(Self::Staff),
            (UserRole::Staff, Some(_)) => Err(DomainError::invalid(
                "customer_id",
                "staff act for every customer: leave customer_id out for role staff",
            )),
            (UserRole::Customer, Some(customer_id)) => Self::customer(customer_id),
            (UserRole::Customer, None) => Err(DomainError::invalid(
                "customer_id",
                format!(
                    "role customer needs the id of the customer the user acts for, 1 to \
                     {MAX_CUSTOMER_ID} characters"
                ),
            )),
        }
    }

    /// The role this assignment gives.
    pub fn role(&self) -> UserRole {
        match self {
            Self::Staff => UserRole::Staff,
            Self::Customer { .. } => UserRole::Customer,
        }
    }

    fn customer_id(&self) -> Option<&str> {
        match self {
            Self::Staff => None,
            Self::Customer { customer_id } => Some(customer_id),
        }
    }
}

/// Why [`User::change_role`] refused: the user's state does not allow the change. Nothing
/// changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleChangeRefused {
    /// The user is disabled: a disabled user keeps the role they had, so that disabling
    /// stays the last word on an account.
    ///
    /// ### Handling
    /// 409; there is no enabling yet, so nothing to retry.
    #[error("user {user_id} is disabled; a disabled user's role cannot change")]
    Disabled {
        /// The user.
        user_id: String,
    },
    /// The user is already a customer user, of another customer: a role change does not
    /// move a user between customers (their tokens, history and data belong to the
    /// first one).
    ///
    /// ### Handling
    /// 409; register a new user for the other customer instead.
    #[error(
        "user {user_id} is already a customer user of {current}; a role change cannot move \
         them to customer {requested}: register a separate user for {requested}"
    )]
    OtherCustomer {
        /// The user.
        user_id: String,
        /// The customer they act for.
        current: String,
        /// The customer asked for.
        requested: String,
    },
}

impl UserChange {
    /// The user after the change.
    pub fn snapshot(&self) -> &UserSnapshot {
        match self {
            Self::Registered(event) => &event.user,
            Self::Disabled(event) => &event.user,
            Self::RoleChanged(event) => &event.user,
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
        let customer_id = parse_customer_id(customer_id)?;
        Ok(Self::register(email, UserRole::Customer, Some(customer_id)))
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

    /// The user given the role `to`, with its `user.role_changed` event; `None` when they
    /// already have exactly that role (and customer id): nothing changes, as disabling a
    /// disabled user changes nothing.
    ///
    /// The rules:
    /// - customer → staff: the customer id is dropped (staff act for every customer);
    /// - staff → customer: the user is bound to the customer id given (a customer role
    ///   never exists without one, [`RoleAssignment::customer`] checks it);
    /// - customer → customer of another customer id: refused
    ///   ([`RoleChangeRefused::OtherCustomer`]), a role change does not move a user
    ///   between customers;
    /// - a disabled user: refused ([`RoleChangeRefused::Disabled`]).
    ///
    /// Who may change whose role (staff only, never their own) is decided by
    /// [`Accounts::change_role`](crate::Accounts::change_role), which knows the caller.
    ///
    /// # Errors
    /// [`RoleChangeRefused`].
    pub fn change_role(
        &self,
        to: &RoleAssignment,
    ) -> Result<Option<(Self, UserChange)>, RoleChangeRefused> {
        let current = &self.snapshot;
        if current.disabled {
            return Err(RoleChangeRefused::Disabled {
                user_id: current.user_id.clone(),
            });
        }
        if current.role == to.role() && current.customer_id.as_deref() == to.customer_id() {
            return Ok(None);
        }
        if let (Some(current_customer), Some(requested)) =
            (current.customer_id.as_deref(), to.customer_id())
        {
            return Err(RoleChangeRefused::OtherCustomer {
                user_id: current.user_id.clone(),
                current: current_customer.to_owned(),
                requested: requested.to_owned(),
            });
        }
        let mut snapshot = current.clone();
        snapshot.role = to.role();
        snapshot.customer_id = to.customer_id().map(str::to_owned);
        snapshot.version += 1;
        let change = UserChange::RoleChanged(UserRoleChanged {
            user: snapshot.clone(),
            previous_role: current.role,
        });
        Ok(Some((Self { snapshot }, change)))
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

/// A customer id as given: trimmed, 1 to [`MAX_CUSTOMER_ID`] characters.
fn parse_customer_id(customer_id: &str) -> Result<String, DomainError> {
    let customer_id = customer_id.trim();
    if customer_id.is_empty() || customer_id.chars().count() > MAX_CUSTOMER_ID {
        return Err(DomainError::invalid(
            "customer_id",
            format!("give the customer's id, 1 to {MAX_CUSTOMER_ID} characters"),
        ));
    }
    Ok(customer_id.to_owned())
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

    #[test]
    fn a_customer_is_promoted_to_staff_and_loses_their_customer_id() {
        let (user, _) = User::register_customer(email(), "cust-1").unwrap();
        let (staff, change) = user.change_role(&RoleAssignment::Staff).unwrap().unwrap();
        assert_eq!(staff.snapshot().role, UserRole::Staff);
        assert_eq!(staff.snapshot().customer_id, None);
        assert_eq!(staff.version(), 2);
        let UserChange::RoleChanged(event) = change else {
            panic!("{change:?}")
        };
        assert_eq!(event.previous_role, UserRole::Customer);
        assert_eq!(&event.user, staff.snapshot());
        assert!(staff.change_role(&RoleAssignment::Staff).unwrap().is_none());
    }

    #[test]
    fn staff_become_a_customer_only_with_a_customer_id() {
        assert!(RoleAssignment::customer("  ").is_err());
        let (user, _) = User::register_staff(email());
        let to = RoleAssignment::customer(" cust-9 ").unwrap();
        let (customer, _) = user.change_role(&to).unwrap().unwrap();
        assert_eq!(customer.snapshot().customer_id.as_deref(), Some("cust-9"));
        assert!(customer.change_role(&to).unwrap().is_none());
    }

    #[test]
    fn a_role_change_neither_moves_a_customer_nor_touches_a_disabled_user() {
        let (user, _) = User::register_customer(email(), "cust-1").unwrap();
        let other = RoleAssignment::customer("cust-2").unwrap();
        assert!(matches!(
            user.change_role(&other),
            Err(RoleChangeRefused::OtherCustomer { .. })
        ));
        let (disabled, _) = user.disable().unwrap();
        assert!(matches!(
            disabled.change_role(&RoleAssignment::Staff),
            Err(RoleChangeRefused::Disabled { .. })
        ));
    }
}
