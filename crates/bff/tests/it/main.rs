//! The integration tests of dovetail-bff: real axum servers on loopback that answer,
//! hang, fail or refuse, and count the calls they get.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod compose;
mod consistency;
mod downstream;
mod gateway;
#[cfg(feature = "metrics")]
mod metrics;
mod support;
