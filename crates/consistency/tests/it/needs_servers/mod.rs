//! Tests that run against the real servers (the AWS emulator).

#[cfg(feature = "dynamodb")]
mod dynamodb_view;
