//! The policy service over HTTP on embedded backends: the lifecycle and its events, every
//! bad input's problem, the caller's deadline and request id, idempotent creation, pagination, operations endpoints, shutdown;
//! and its store's promises, one suite on SQLite and on DynamoDB.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod access;
mod api;
mod bad_input;
mod consistency_view;
mod deadline;
#[cfg(feature = "aws")]
mod needs_servers;
mod store_promises;
mod support;
