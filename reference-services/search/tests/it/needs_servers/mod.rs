//! The search index on the OpenSearch node `cargo xtask servers` starts
//! (`DOVETAIL_OPENSEARCH_URL`): the contract suite and the reordering proptest, each test
//! behind an alias of its own; the service end to end on SNS/SQS (the AWS emulator,
//! `AWS_ENDPOINT_URL`) and OpenSearch; and two instances sharing the idempotency records
//! in one DynamoDB table; and who may call the API, with the index on OpenSearch.

#[cfg(feature = "aws")]
mod aws_end_to_end;
#[cfg(feature = "aws")]
mod dynamodb_idempotency;
mod opensearch;
mod opensearch_identity;
mod opensearch_rebuild;
mod opensearch_views;

/// Clients for the emulator: fails with how to start it when it does not answer.
#[cfg(feature = "aws")]
pub(crate) async fn clients() -> dovetail_service_kit::aws::AwsClients {
    // The testkit checks that the endpoint answers and says how to start it otherwise.
    dovetail_testkit::aws().await;
    dovetail_service_kit::aws::AwsClients::from_env().unwrap_or_else(|error| panic!("{error}"))
}
