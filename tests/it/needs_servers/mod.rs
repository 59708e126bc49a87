//! Tests that run against the real servers started by `cargo xtask test`.

mod alert_rules;
mod smoke_dynamodb;
mod smoke_opensearch;
mod smoke_redis;
mod smoke_sns_sqs;
mod stack_aws;
