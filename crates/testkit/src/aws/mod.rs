//! The AWS fixture: SDK clients pointed at the emulator (or AWS) named by `AWS_ENDPOINT_URL`.

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(any(feature = "sns", feature = "sqs"))]
mod messaging;

#[cfg(feature = "dynamodb")]
pub use dynamodb::{TableSpec, fresh_table};
#[cfg(feature = "sqs")]
pub use messaging::{DeadLetter, Queue, QueueSpec, fresh_queue};
#[cfg(all(feature = "sns", feature = "sqs"))]
pub use messaging::{SubscriptionSpec, subscribe_queue};
#[cfg(feature = "sns")]
pub use messaging::{Topic, TopicSpec, fresh_topic};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;

use crate::backend::{self, Backend};

/// SDK configuration for the AWS backend; hands out service clients.
#[derive(Debug, Clone)]
pub struct AwsFixture {
    config: SdkConfig,
    endpoint: String,
}

/// Connects to the AWS emulator named by `AWS_ENDPOINT_URL`.
///
/// Region and credentials come from `AWS_REGION` (default `us-east-1`) and
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (default `test` / `test`, which the
/// emulators accept).
///
/// # Panics
/// When no endpoint is configured or it does not answer; the message says how to start it.
///
/// # Example
/// ```no_run
/// # async fn example() {
/// let aws = dovetail_testkit::aws().await;
/// let tables = aws.dynamodb().list_tables().send().await.unwrap();
/// # }
/// ```
pub async fn aws() -> AwsFixture {
    let endpoint = backend::require(Backend::Aws).await;
    AwsFixture::new(endpoint)
}

impl AwsFixture {
    /// A fixture for the AWS endpoint at `endpoint`, with region and credentials from the
    /// environment or the emulator defaults.
    pub fn new(endpoint: String) -> Self {
        let env = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        let credentials = Credentials::new(
            env("AWS_ACCESS_KEY_ID", "test"),
            env("AWS_SECRET_ACCESS_KEY", "test"),
            None,
            None,
            "dovetail-testkit",
        );
        let config = SdkConfig::builder()
            .endpoint_url(&endpoint)
            .region(Region::new(env("AWS_REGION", "us-east-1")))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build();
        Self { config, endpoint }
    }

    /// The endpoint every client talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The shared SDK configuration, for building clients of other AWS services.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.config
    }

    /// A DynamoDB client.
    #[cfg(feature = "dynamodb")]
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    /// A DynamoDB Streams client.
    #[cfg(feature = "dynamodb")]
    pub fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.config)
    }

    /// An SNS client.
    #[cfg(feature = "sns")]
    pub fn sns(&self) -> aws_sdk_sns::Client {
        aws_sdk_sns::Client::new(&self.config)
    }

    /// An SQS client.
    #[cfg(feature = "sqs")]
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }
}
