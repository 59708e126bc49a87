//! The auth service's HTTP API: routes, the JSON they speak, and how account errors
//! become problem+json. See `openapi.json` beside this file for the contract.

mod authenticate;
mod problems;
mod sessions;
mod users;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use authenticate::SelfVerifier;

use crate::accounts::Accounts;
use crate::keys::KeyRing;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API's routes (operations endpoints are added by the application): registration,
/// log-in and the JWKS are open; changing a password, disabling a user and changing a
/// user's role need a bearer token this service issued, checked by `verifier`.
pub fn router(accounts: Accounts, keys: KeyRing, verifier: SelfVerifier) -> Router {
    let authenticated = Router::new()
        .route("/users/me/password", post(users::change_password))
        .route("/users/{user_id}/disable", post(users::disable))
        .route("/users/{user_id}/role", post(users::change_role))
        .route_layer(axum::middleware::from_fn_with_state(
            verifier,
            authenticate::authenticate,
        ));
    Router::new()
        .route("/users", post(users::register))
        .route("/sessions", post(sessions::log_in))
        .merge(authenticated)
        .with_state(accounts)
        .route("/.well-known/jwks.json", get(jwks).with_state(keys))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
}

/// The public keys of every token that can still be valid.
async fn jwks(axum::extract::State(keys): axum::extract::State<KeyRing>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        keys.jwks().to_string(),
    )
}
