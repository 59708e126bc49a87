//! Tests against real servers (`cargo xtask test` starts them).

mod dynamodb_run_store;
