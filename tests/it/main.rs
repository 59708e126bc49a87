//! Cross-service system tests, and smoke tests proving each real server is reachable
//! through the crates the project uses.
//!
//! Tests that need a server live under `needs_servers`, so that
//! `cargo xtask test --no-servers` can leave them out.

#![allow(clippy::unwrap_used, clippy::panic_in_result_fn)]

mod alerts;
mod consistency;
mod gateway;
mod needs_servers;
mod stack;
mod stack_kill;
