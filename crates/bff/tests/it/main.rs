//! The integration tests of dovetail-bff: real axum servers on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]
