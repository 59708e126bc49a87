//! Tests that run against the real servers started by `cargo xtask test`.

#[cfg(feature = "sqlite")]
mod relay_kill;
