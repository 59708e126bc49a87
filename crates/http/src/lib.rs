//! HTTP conventions every Dovetail API shares, so a service and its gateway check callers
//! and answer errors the same way:
//!
//! - [`Problem`]: RFC 9457 `application/problem+json` errors whose detail says what to do;
//! - [`identity`]: verified identity on every API. [`identity::IdentityLayer`] checks the
//!   `Authorization: Bearer` JWT against the auth service's JWKS
//!   ([`identity::JwtVerifier`], [`identity::JwksSource`]) and puts the caller's
//!   [`identity::Identity`] into the request; a handler takes it as an extractor, checks
//!   roles with [`Identity::require`](identity::Identity::require) and ownership with
//!   [`Identity::may_act_for_customer`](identity::Identity::may_act_for_customer).
//!   No endpoint behind the layer sees an identity that was not verified;
//! - [`deadline`]: how long a request may still take, carried downstream in the
//!   `dovetail-deadline-ms` header, honoured by [`deadline::DeadlineLayer`] (work past
//!   the deadline stops; the answer is a 504 problem);
//! - [`request_id`]: the id of a request in every log line and every answer
//!   (`x-request-id`), given by [`request_id::RequestIdLayer`].
//!
//! # Example
//!
//! An API behind the layer, with the operations endpoints left open:
//!
//! ```
//! use axum::{Router, routing::get};
//! use dovetail_http::Problem;
//! use dovetail_http::identity::{
//!     Identity, IdentityLayer, JwksConfig, JwksSource, JwtVerifier, Role, VerifierConfig,
//! };
//!
//! async fn customer_claims(
//!     identity: Identity,
//!     axum::extract::Path(customer): axum::extract::Path<String>,
//! ) -> Result<String, Problem> {
//!     if !identity.may_act_for_customer(&customer) {
//!         return Err(Problem::not_found(format!("no customer {customer} among yours")));
//!     }
//!     Ok(format!("claims of {customer}"))
//! }
//!
//! async fn all_claims(identity: Identity) -> Result<&'static str, Problem> {
//!     identity.require(Role::Staff)?;
//!     Ok("every claim")
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = JwksSource::from_url("http://127.0.0.1:8080/.well-known/jwks.json", JwksConfig::default())?;
//! let verifier = JwtVerifier::new(
//!     VerifierConfig::new("https://auth.dovetail.internal", "claim-service"),
//!     keys,
//! );
//! let api = Router::new()
//!     .route("/customers/{customer}/claims", get(customer_claims))
//!     .route("/claims", get(all_claims))
//!     .layer(IdentityLayer::new(verifier));
//! let app: Router = Router::new()
//!     .route("/healthz", get(|| async { "ok" }))
//!     .merge(api);
//! # let _ = app; Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `rustls-tls` | HTTPS JWKS URLs (reqwest with rustls and the webpki roots) |
//!
//! Signatures are verified by `jsonwebtoken` with its `aws_lc_rs` backend. Do not enable
//! `jsonwebtoken`'s `rust_crypto` feature in the same build: with both, it has no
//! default backend and every verification fails.
//!
//! The book's page `http/identity.md` has the checks and the threat table.

pub mod deadline;
pub mod identity;
mod problem;
pub mod request_id;

pub use problem::{FieldProblem, Problem};

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
