//! The claim service on the AWS backends, against the emulator `cargo xtask servers`
//! starts (or real AWS): the store's promises on DynamoDB (claims, the policy
//! replica, request and event records), the replica's consistency check against the
//! policy service's on DynamoDB and its repair, the claims' own view there (the
//! contract, drift in a replica of claims repaired through the claim store, the
//! claim-policy invariant), and the service end to end from policy events on SNS to a
//! filed claim's event on SQS.

mod aws_end_to_end;
mod dynamodb_claims;
mod dynamodb_consistency;
mod dynamodb_store;

use dovetail_service_kit::aws::AwsClients;

/// Clients for the emulator: fails with how to start it when it does not answer.
pub(crate) async fn clients() -> AwsClients {
    // The testkit checks that the endpoint answers and says how to start it otherwise.
    dovetail_testkit::aws().await;
    AwsClients::from_env().unwrap_or_else(|error| panic!("{error}"))
}
