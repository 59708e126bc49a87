//! Tests that run against the real servers started by `cargo xtask test`.

#[cfg(feature = "dynamodb")]
mod dynamodb_hot_items;
#[cfg(feature = "dynamodb")]
mod dynamodb_republish;
#[cfg(feature = "dynamodb")]
mod dynamodb_state_machine;
#[cfg(feature = "dynamodb")]
mod dynamodb_store;
#[cfg(feature = "dynamodb")]
mod dynamodb_streams;
#[cfg(feature = "dynamodb")]
mod dynamodb_streams_checkpoints;
#[cfg(feature = "dynamodb")]
mod dynamodb_streams_lease;
#[cfg(all(feature = "dynamodb", feature = "metrics"))]
mod dynamodb_streams_metrics;
#[cfg(feature = "dynamodb")]
mod dynamodb_unit_of_work;
#[cfg(any(feature = "sqlite", feature = "dynamodb"))]
mod relay_kill;
