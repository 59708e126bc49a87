//! How account errors become problem+json.

use axum::http::StatusCode;
use dovetail_service_kit::Problem;

use crate::accounts::AccountError;
use crate::domain::{DomainError, RoleChangeRefused};
use crate::sessions::SessionError;

/// How long a client waits before retrying when the session store is unreachable.
const STORE_RETRY_AFTER_SECONDS: u32 = 5;

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

/// The problem a client gets for a session `error`.
pub(super) fn session_problem(error: SessionError) -> Problem {
    match error {
        SessionError::Account(error) => account_problem(error),
        SessionError::Throttled { retry_after } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-attempts",
            "Too many failed attempts",
        )
        .detail(
            "too many failed attempts for this account or from this address; wait for the \
             Retry-After seconds, then retry",
        )
        .retry_after(crate::sessions::retry_after_seconds(retry_after)),
        SessionError::InvalidRefreshToken => Problem::new(
            StatusCode::UNAUTHORIZED,
            "invalid-refresh-token",
            "Invalid refresh token",
        )
        .detail("the refresh token is unknown or expired; log in again with POST /sessions"),
        SessionError::Revoked => Problem::new(
            StatusCode::UNAUTHORIZED,
            "session-revoked",
            "Session revoked",
        )
        .detail(
            "this session was revoked (its refresh token was used twice, or the user logged \
             out, changed their password or was disabled); log in again with POST /sessions",
        ),
        SessionError::Store(error) => {
            let error = anyhow::Error::from(error);
            tracing::error!(error = format!("{error:#}"), "the session store failed");
            Problem::unavailable(
                "the session store is unreachable, so no session can be started, refreshed or \
                 ended right now; retry after the Retry-After seconds. Access tokens already \
                 issued stay valid until they expire.",
            )
            .retry_after(STORE_RETRY_AFTER_SECONDS)
        }
        error => {
            let error = anyhow::Error::from(error);
            tracing::error!(error = format!("{error:#}"), "session operation failed");
            Problem::unavailable("the service cannot start a session right now; retry in a moment")
        }
    }
}
