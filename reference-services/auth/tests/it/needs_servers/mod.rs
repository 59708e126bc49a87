//! The auth service on the AWS backends, against the emulator `cargo xtask servers`
//! starts (or real AWS): the user store's promises on DynamoDB and what only that store
//! does, and the service end to end from HTTP to an SQS queue subscribed to its topic;
//! the session store on a real Redis.
//! With `DOVETAIL_REQUIRE_BACKENDS=1` (CI) an unreachable emulator fails these
//! tests; it never skips them silently.

#[cfg(feature = "aws")]
mod aws_end_to_end;
#[cfg(feature = "aws")]
mod dynamodb_store;
mod sessions_redis;

#[cfg(feature = "aws")]
use dovetail_service_kit::aws::AwsClients;

#[cfg(feature = "aws")]
/// Clients for the emulator: fails with how to start it when it does not answer.
pub(crate) async fn clients() -> AwsClients {
    // The testkit checks that the endpoint answers and says how to start it otherwise.
    dovetail_testkit::aws().await;
    AwsClients::from_env().unwrap_or_else(|error| panic!("{error}"))
}
