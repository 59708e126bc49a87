//! The search service's tests: one contract suite that every index backend passes
//! (tantivy here, OpenSearch in `needs_servers`), streams of shuffled and duplicated
//! events ending in the ordered stream's index, the service over HTTP fed by the
//! embedded bus, who may call it (bearer tokens of a test issuer, on tantivy here and on
//! OpenSearch in `needs_servers`), the version it holds of one document (likewise), the settings of its idempotency records, rebuild
//! jobs over an index whose rebuild fails, panics or waits as told, and the consistency
//! views of each document type (the testkit's contract; drift against the policy and
//! claim stores, repaired through them).

#![allow(
    clippy::unwrap_used,
    clippy::panic_in_result_fn,
    clippy::field_reassign_with_default
)]

#[macro_use]
mod contract;
#[macro_use]
mod drift;
#[macro_use]
mod views;
mod api;
mod consumer;
mod document_versions;
mod idempotency_config;
mod identity;
#[cfg(feature = "opensearch")]
mod needs_servers;
mod rebuild_jobs;
mod support;
mod tantivy;
mod tantivy_views;
