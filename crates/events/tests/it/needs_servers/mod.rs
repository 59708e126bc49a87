//! Tests that run against the real servers started by `cargo xtask test`.

#[cfg(feature = "dynamodb")]
mod idempotency_dynamodb;
#[cfg(feature = "redis")]
mod idempotency_redis;
#[cfg(feature = "sns")]
mod sns_publisher;
#[cfg(feature = "sqs")]
mod sqs_consumer;
#[cfg(all(feature = "sns", feature = "sqs", feature = "metrics"))]
mod sqs_dead_letters;
#[cfg(all(feature = "sns", feature = "sqs"))]
mod transport_provisioning;
