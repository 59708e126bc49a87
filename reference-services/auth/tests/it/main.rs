//! The auth service over HTTP on embedded backends: registration, log-in, tokens that
//! dovetail-http's verifier accepts with the JWKS the service serves, the one 401 for
//! every refused log-in, the password rule, racing registrations, events without
//! secrets, staff-only disabling and role changes, password changes and key rotation;
//! sessions (refresh, reuse, revocation, throttling) on SQLite and a real Redis, with one
//! store contract; and the user store's promises, one suite on SQLite and on DynamoDB.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod api;
mod needs_servers;
mod operators;
mod roles;
mod rotation;
mod sessions_api;
mod sessions_contract;
mod store_promises;
mod support;
