//! Fixtures for testing Dovetail adapters against real servers.
//!
//! A test asks for its backend — [`aws()`], [`redis()`], [`opensearch()`] — and gets a
//! client pointed at the endpoint named in the environment, plus helpers that give it
//! resources nobody else uses ([`unique_name`], `aws::fresh_table`, `aws::fresh_queue`,
//! `aws::fresh_topic`, a Redis key namespace, fresh index names). Tests never share a
//! table, queue, topic, index or key, so they run in parallel against one server.
//!
//! When a backend is missing the fixture fails the test with a message that names the
//! variable to set and how to start the servers; it never passes silently. With the
//! `testcontainers` feature and `DOVETAIL_REQUIRE_BACKENDS` unset, a missing backend is
//! started in Docker instead.
//!
//! | backend | variable | how `cargo xtask test` provides it |
//! |---|---|---|
//! | DynamoDB, DynamoDB Streams, SNS, SQS | `AWS_ENDPOINT_URL` | the AWS emulator from PyPI |
//! | Redis | `DOVETAIL_REDIS_URL` | Debian's `redis-server` |
//! | OpenSearch | `DOVETAIL_OPENSEARCH_URL` | an OpenSearch node from Maven Central |
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `dynamodb` | [`AwsFixture::dynamodb`], `dynamodb_streams`, `aws::fresh_table` |
//! | `sns` | [`AwsFixture::sns`], `aws::fresh_topic` |
//! | `sqs` | [`AwsFixture::sqs`], `aws::fresh_queue` (and `aws::subscribe_queue` with `sns`) |
//! | `redis` | [`redis()`] |
//! | `opensearch` | [`opensearch()`] |
//! | `testcontainers` | starts missing backends in Docker |
//! | `http` | `http::assert_problem`, `http::assert_invalid_token`: an answer is the problem+json a test expects |
//! | `identity` | `identity::TestIssuer`: real signed access tokens, their JWKS on loopback |
//! | `fault-proxy` | `fault_proxy::FaultProxy`: a loopback TCP proxy in front of a real server that a test switches to pass, delay, hang or refuse, for open connections too |
//! | `idempotency-contract` | `idempotency_contract`: the checks every `IdempotencyStore` of `dovetail-events` passes |
//! | `consistency-contract` | `consistency_contract`: the checks every `View` of `dovetail-consistency` passes, written through a `ViewFixture` on the store's own API |
//!
//! No feature is on by default; the crate then only names backends and resources.
//!
//! # Contract suites
//!
//! The testkit knows the *ports* of Dovetail's crates, each behind a feature, so that
//! every implementation of a port — Dovetail's own and other teams' — runs the same
//! checks: `idempotency_contract` (feature `idempotency-contract`) for
//! `dovetail_events::idempotency::IdempotencyStore`, and `consistency_contract` (feature
//! `consistency-contract`) for `dovetail_consistency::View`. A suite uses only the port's trait and
//! types, and turns on none of the port crate's backend features.
//!
//! # Example
//! ```no_run
//! # #[cfg(feature = "sqs")]
//! # async fn example() {
//! use dovetail_testkit::aws::{QueueSpec, fresh_queue};
//!
//! let aws = dovetail_testkit::aws().await;
//! let sqs = aws.sqs();
//! let queue = fresh_queue(&sqs, "claims", &QueueSpec::default()).await;
//! sqs.send_message().queue_url(&queue.url).message_body("hello").send().await.unwrap();
//! # }
//! ```

mod backend;
mod error_chain;
#[cfg(feature = "fault-proxy")]
pub mod fault_proxy;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "identity")]
pub mod identity;
mod names;

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "consistency-contract")]
pub mod consistency_contract;
#[cfg(feature = "testcontainers")]
mod containers;
#[cfg(feature = "idempotency-contract")]
pub mod idempotency_contract;
#[cfg(feature = "opensearch")]
mod opensearch;
#[cfg(feature = "redis")]
mod redis;

pub use backend::{
    Backend, BackendUnavailable, REQUIRE_BACKENDS, backends_required, endpoint, require,
};
pub use error_chain::error_chain;
pub use names::unique_name;

#[cfg(feature = "aws")]
pub use aws::{AwsFixture, aws};
#[cfg(feature = "opensearch")]
pub use opensearch::{OpenSearchFixture, opensearch};
#[cfg(feature = "redis")]
pub use redis::{RedisFixture, redis};

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
