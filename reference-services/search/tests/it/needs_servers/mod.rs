//! The search index on the OpenSearch node `cargo xtask servers` starts
//! (`DOVETAIL_OPENSEARCH_URL`): the contract suite and the reordering proptest, each test
//! behind an alias of its own; and the service end to end on SNS/SQS (the AWS emulator,
//! `AWS_ENDPOINT_URL`) and OpenSearch.

#[cfg(feature = "aws")]
mod aws_end_to_end;
mod opensearch;
mod opensearch_rebuild;
