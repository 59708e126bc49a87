//! How account errors become problem+json.

use axum::http::StatusCode;
use dovetail_service_kit::Problem;

use crate::accounts::AccountError;
use crate::domain::{DomainError, RoleChangeRefused};

/// The one 401 for unknown email, wrong password and disabled user.
pub(super) fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "Invalid credentials",
    )
    .detail(
        "the email and password do not match an enabled account; check both and retry, \
         or register with POST /users",
    )
}

/// The problem a client gets for `error`.
pub(super) fn account_problem(error: AccountError) -> Problem {
    match error {
        AccountError::Invalid(DomainError::Invalid { field, message }) => {
            Problem::invalid(format!("{field} is invalid: {message}")).field(field, message)
        }
        AccountError::InvalidCredentials => invalid_credentials(),
        AccountError::NotFound { user_id } => Problem::not_found(format!(
            "no user has the id {user_id:?}; a user's id is the sub claim of their tokens"
        )),
        AccountError::Concurrent { user_id } => Problem::conflict(
            "concurrent-change",
            format!("user {user_id} changed while this request ran; retry"),
        ),
        AccountError::RoleRefused(refused) => {
            let kind = match &refused {
                RoleChangeRefused::Disabled { .. } => "user-disabled",
                RoleChangeRefused::OtherCustomer { .. } => "other-customer",
            };
            Problem::conflict(kind, refused.to_string())
        }
        AccountError::OwnRole { user_id } => {
            Problem::new(StatusCode::FORBIDDEN, "own-role", "Forbidden").detail(format!(
                "user {user_id} cannot change their own role; another staff user can"
            ))
        }
        AccountError::Store(error) => error.into_problem(),
        error => {
            let error = anyhow::Error::from(error);
            tracing::error!(error = format!("{error:#}"), "account operation failed");
            Problem::unavailable("the service cannot check passwords right now; retry in a moment")
        }
    }
}
