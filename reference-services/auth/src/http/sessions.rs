//! `POST /sessions`: log in with email and password, get an access token.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use dovetail_service_kit::{ApiJson, Problem};
use serde::Deserialize;

use super::problems::account_problem;
use crate::accounts::Accounts;

/// The body of `POST /sessions`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

/// `{access_token, token_type: "Bearer", expires_in}`, never cached (RFC 6749 §5.1); the
/// same 401 problem for an unknown email, a wrong password and a disabled user.
pub(super) async fn log_in(
    State(accounts): State<Accounts>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, Problem> {
    let token = accounts
        .log_in(&body.email, body.password)
        .await
        .map_err(account_problem)?;
    Ok((
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(token),
    )
        .into_response())
}
