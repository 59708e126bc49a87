//! Tests against the real servers (the AWS emulator; `cargo xtask test` starts it).

mod dynamodb_run_store;
#[cfg(feature = "dynamodb")]
mod dynamodb_view;
