//! `POST /users` (register a customer), `GET /users/me` (who the caller is),
//! `POST /users/me/password` (change one's own password), `POST /users/{user_id}/disable` and `POST /users/{user_id}/role` (staff
//! only).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dovetail_http::identity::{Identity, Role};
use dovetail_service_kit::{ApiJson, Problem};
use serde::Deserialize;

use super::problems::account_problem;
use crate::accounts::Accounts;
use crate::domain::{RoleAssignment, UserRole};
use crate::sessions::Sessions;

/// The body of `POST /users`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Registration {
    email: String,
    password: String,
    /// Refused when present: a caller who could pick it could read that customer's data.
    #[serde(default)]
    customer_id: Option<serde::de::IgnoredAny>,
}

/// What `POST /users` answers, whether the email was new or taken.
const ACCEPTED: &str = r#"{"status":"accepted","detail":"if no account had this email, one was created for it: log in with POST /sessions. This answer is the same whether or not the email already had an account, so that it does not tell who has one; registering a taken email changes nothing."}"#;

/// Registers a customer user, a new customer with an id the service picks (the token
/// and `GET /users/me` say which). 202 with one body whether the email was new or taken
/// (a taken email creates nothing): the answer must not tell who has an account.
pub(super) async fn register(
    State(accounts): State<Accounts>,
    ApiJson(body): ApiJson<Registration>,
) -> Result<Response, Problem> {
    if body.customer_id.is_some() {
        let message = "customer ids are assigned by the service: leave customer_id out \
                       (staff bind a user to an existing customer with POST \
                       /users/{user_id}/role)";
        return Err(Problem::invalid(message).field("customer_id", message));
    }
    accounts
        .register_new_customer(&body.email, body.password)
        .await
        .map_err(account_problem)?;
    Ok((
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        ACCEPTED,
    )
        .into_response())
}

/// The caller as the service has them now (200): id, email, role, customer id, status.
/// A disabled or removed user's still-valid token gets 404.
pub(super) async fn me(
    State(accounts): State<Accounts>,
    identity: Identity,
) -> Result<Response, Problem> {
    let user = accounts
        .user(identity.subject())
        .await
        .map_err(account_problem)?
        .filter(|user| !user.is_disabled())
        .ok_or_else(|| {
            Problem::not_found(format!(
                "user {} has no enabled account any more: log in again",
                identity.subject()
            ))
        })?;
    Ok(axum::Json(user.snapshot().clone()).into_response())
}

/// The body of `POST /users/me/password`. No `Debug`: it holds passwords.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Changes the caller's own password (204); the current one must be given.
/// Every session of the user is revoked.
pub(super) async fn change_password(
    State(accounts): State<Accounts>,
    State(sessions): State<Sessions>,
    identity: Identity,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<StatusCode, Problem> {
    accounts
        .change_password(identity.subject(), body.current_password, body.new_password)
        .await
        .map_err(account_problem)?;
    sessions.revoke_user_after_change(identity.subject()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Disables a user (staff only): 200 with the user as they now are. Every session of the
/// user is revoked.
pub(super) async fn disable(
    State(accounts): State<Accounts>,
    State(sessions): State<Sessions>,
    identity: Identity,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let user = accounts.disable(&user_id).await.map_err(account_problem)?;
    sessions.revoke_user_after_change(&user_id).await;
    Ok(axum::Json(user.snapshot().clone()).into_response())
}

/// The body of `POST /users/{user_id}/role`: `{"role": "staff"}` or
/// `{"role": "customer", "customer_id": "..."}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleChange {
    role: UserRole,
    #[serde(default)]
    customer_id: Option<String>,
}

/// Changes a user's role (staff only, never one's own): 200 with the user as they now
/// are (or as they were, when they already had that role).
pub(super) async fn change_role(
    State(accounts): State<Accounts>,
    identity: Identity,
    Path(user_id): Path<String>,
    ApiJson(body): ApiJson<RoleChange>,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let to = RoleAssignment::parse(body.role, body.customer_id.as_deref())
        .map_err(|error| account_problem(error.into()))?;
    let user = accounts
        .change_role(identity.subject(), &user_id, &to)
        .await
        .map_err(account_problem)?;
    Ok(axum::Json(user.snapshot().clone()).into_response())
}
