//! The policy service on the AWS backends, against the emulator `cargo xtask servers`
//! starts (or real AWS): the store's promises on DynamoDB and what only that store does, its consistency view there, and the
//! service end to end from an HTTP request to an SQS queue subscribed to its topic.

mod aws_end_to_end;
mod dynamodb_store;
mod dynamodb_view;

use dovetail_service_kit::aws::AwsClients;

/// Clients for the emulator: fails with how to start it when it does not answer.
pub(crate) async fn clients() -> AwsClients {
    // The testkit checks that the endpoint answers and says how to start it otherwise.
    dovetail_testkit::aws().await;
    AwsClients::from_env().unwrap_or_else(|error| panic!("{error}"))
}
