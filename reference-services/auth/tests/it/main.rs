//! The auth service over HTTP on embedded backends: registration, log-in, tokens that
//! dovetail-http's verifier accepts with the JWKS the service serves, the one 401 for
//! every refused log-in, the password rule, racing registrations, events without
//! secrets, staff-only disabling, password changes and key rotation; and sessions (refresh,
//! reuse, revocation, throttling) on SQLite and a real Redis, with one store contract.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod api;
mod needs_servers;
mod rotation;
mod sessions_api;
mod sessions_contract;
mod support;
