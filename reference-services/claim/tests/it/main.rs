//! The claim service over HTTP on embedded backends, fed policy events straight onto the
//! bus: the replica under duplicates and reordering, the filing rules, the lifecycle and
//! its events, idempotent filing, bad input; and its store's promises, one suite on
//! SQLite and on DynamoDB.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod access;
mod admin;
mod api;
mod claims_view;
mod consistency_view;
#[cfg(feature = "aws")]
mod needs_servers;
mod replica;
mod store_promises;
mod support;
