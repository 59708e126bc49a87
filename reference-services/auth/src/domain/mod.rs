//! The auth service's domain: [`Email`] and [`Password`] that parse into valid values
//! only, and [`User`], whose changes each return the event to publish.

mod email;
mod password;
mod user;

pub use email::Email;
pub use password::{MAX_CHARS, MIN_CHARS, PASSWORD_RULE, Password};
pub use user::{RoleAssignment, RoleChangeRefused, User, UserChange, UserRole};

/// Why a request's content is not a valid user, email or password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// `field` is invalid: `message` says how to fix it.
    ///
    /// ### Handling
    /// 422 naming the field; the client fixes its input.
    #[error("{field} is invalid: {message}")]
    Invalid {
        /// The request field (`email`, `password`, `customer_id`).
        field: &'static str,
        /// What is wrong and what a valid value looks like.
        message: String,
    },
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}
