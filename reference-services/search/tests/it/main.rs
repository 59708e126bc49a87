//! The search service's tests: one contract suite that every index backend passes
//! (tantivy here, OpenSearch in `needs_servers`), streams of shuffled and duplicated
//! events ending in the ordered stream's index, and the service over HTTP fed by the
//! embedded bus.

#![allow(
    clippy::unwrap_used,
    clippy::panic_in_result_fn,
    clippy::field_reassign_with_default
)]

#[macro_use]
mod contract;
mod api;
#[cfg(feature = "opensearch")]
mod needs_servers;
mod support;
mod tantivy;
