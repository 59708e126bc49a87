//! The auth service's HTTP API: routes, the JSON they speak, and how account errors
//! become problem+json. See `openapi.json` beside this file for the contract.

mod authenticate;
mod client_address;
mod problems;
mod sessions;
mod users;

use axum::Router;
use axum::extract::FromRef;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use dovetail_service_kit::admin::Admin;

pub use authenticate::SelfVerifier;
pub use client_address::{TrustedProxy, TrustedProxyError};

use crate::accounts::Accounts;
use crate::keys::KeyRing;
use crate::sessions::Sessions;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the API's handlers share.
#[derive(Debug, Clone)]
struct ApiState {
    accounts: Accounts,
    sessions: Sessions,
}

impl FromRef<ApiState> for Accounts {
    fn from_ref(state: &ApiState) -> Self {
        state.accounts.clone()
    }
}

impl FromRef<ApiState> for Sessions {
    fn from_ref(state: &ApiState) -> Self {
        state.sessions.clone()
    }
}

/// The API's routes (operations endpoints are added by the application): registration,
/// log-in, refresh, log-out and the JWKS are open; changing a password, disabling a user
/// and changing a user's role need a bearer token this service issued, checked by
/// `verifier`. Log-in and refresh are throttled per client address: the TCP peer, or
/// what a peer among `trusted_proxies` forwards (see [`TrustedProxy`]).
pub fn router(
    sessions: Sessions,
    keys: KeyRing,
    verifier: SelfVerifier,
    trusted_proxies: &[TrustedProxy],
    admin: Admin,
) -> Router {
    let operators = admin.router_behind(axum::middleware::from_fn_with_state(
        verifier.clone(),
        authenticate::authenticate,
    ));
    let state = ApiState {
        accounts: sessions.accounts().clone(),
        sessions,
    };
    let authenticated = Router::new()
        .route("/users/me", get(users::me))
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
        .route("/sessions/refresh", post(sessions::refresh))
        .route("/sessions/logout", post(sessions::log_out))
        .merge(authenticated)
        .layer(axum::Extension(client_address::TrustedProxies(
            trusted_proxies.into(),
        )))
        .with_state(state)
        .merge(operators)
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
