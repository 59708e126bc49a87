//! Integration tests of dovetail-outbox; those that need a server live under `needs_servers`.

#![allow(clippy::unwrap_used, clippy::panic_in_result_fn, clippy::print_stdout)]

mod needs_servers;
mod relay;
#[cfg(feature = "sqlite")]
mod sqlite_republish;
#[cfg(feature = "sqlite")]
mod sqlite_store;
#[cfg(feature = "sqlite")]
mod sqlite_unit_of_work;
mod store_contract;
mod support;
