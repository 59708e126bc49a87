//! `POST /sessions` (log in: an access token and a refresh token),
//! `POST /sessions/refresh` (rotate the refresh token) and `POST /sessions/logout`.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dovetail_service_kit::{ApiJson, Problem};
use serde::Deserialize;

use super::client_address::ClientAddress;
use super::problems::session_problem;
use crate::sessions::{SessionTokens, Sessions};

/// The body of `POST /sessions`. No `Debug`: it holds a password.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

/// The body of `POST /sessions/refresh` and `POST /sessions/logout`. No `Debug`: it
/// holds a refresh token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Presented {
    refresh_token: String,
}

/// `{access_token, token_type: "Bearer", expires_in, refresh_token, refresh_expires_in}`,
/// never cached (RFC 6749 §5.1); the same 401 problem for an unknown email, a wrong
/// password and a disabled user; 429 when throttled.
pub(super) async fn log_in(
    State(sessions): State<Sessions>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<Response, Problem> {
    let tokens = sessions
        .log_in(&body.email, body.password, client)
        .await
        .map_err(session_problem)?;
    Ok(answer(tokens))
}

/// The same answer as a log-in, for the family's next refresh token; 401 for a token
/// that is unknown, expired, or revoked (a reuse revokes its family).
pub(super) async fn refresh(
    State(sessions): State<Sessions>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<Presented>,
) -> Result<Response, Problem> {
    let tokens = sessions
        .refresh(&body.refresh_token, client)
        .await
        .map_err(session_problem)?;
    Ok(answer(tokens))
}

/// Revokes the token's family: 204, whether or not the token named one.
pub(super) async fn log_out(
    State(sessions): State<Sessions>,
    ApiJson(body): ApiJson<Presented>,
) -> Result<StatusCode, Problem> {
    sessions
        .log_out(&body.refresh_token)
        .await
        .map_err(session_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

fn answer(tokens: SessionTokens) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(tokens),
    )
        .into_response()
}
