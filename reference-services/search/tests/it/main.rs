//! The search service's tests: one contract suite that every index backend passes
//! (tantivy here, OpenSearch in `needs_servers`), streams of shuffled and duplicated
//! events ending in the ordered stream's index, the service over HTTP fed by the
//! embedded bus, and the settings of its idempotency records.

#![allow(
    clippy::unwrap_used,
    clippy::panic_in_result_fn,
    clippy::field_reassign_with_default
)]

#[macro_use]
mod contract;
mod api;
mod consumer;
mod idempotency_config;
#[cfg(feature = "opensearch")]
mod needs_servers;
mod support;
mod tantivy;
