//! Integration tests of dovetail-events; those that need a server live under `needs_servers`.

#![allow(clippy::unwrap_used, clippy::panic_in_result_fn, clippy::print_stdout)]

#[cfg(feature = "sqlite")]
mod bus;
mod envelope;
mod idempotency_contract;
mod idempotency_props;
#[cfg(feature = "sqlite")]
mod idempotency_sqlite;
mod idempotent_layer;
mod needs_servers;
mod publish;
mod support;
#[cfg(all(feature = "sqlite", feature = "metrics"))]
mod transport_dead_letters;
