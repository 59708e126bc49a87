//! The integration tests of dovetail-http: real keys, a real JWKS server on loopback, the
//! identity layer in front of a small axum router; the deadline and request-id layers in
//! front of another.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod deadline;
mod identity;
mod support;
