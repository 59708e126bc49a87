//! The integration tests of dovetail-http: real keys, a real JWKS server on loopback, the
//! layer in front of a small axum router.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod identity;
mod support;
