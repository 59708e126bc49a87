//! [`ConsumerError`]: why an [`SqsConsumer`](super::SqsConsumer) stopped without being asked.

/// Why [`SqsConsumer::run`](super::SqsConsumer::run) returned an error instead of a report.
///
/// Failures of single messages never end up here: they are retried, dead-lettered or
/// counted in the [`ConsumerReport`](crate::consumer::ConsumerReport). Transient receive
/// failures (network, throttling) are retried with a backoff and logged.
///
/// # Example
/// ```
/// use dovetail_events::consumer::sqs::{ConsumerError, SqsConsumer, SqsConsumerConfig};
/// use dovetail_events::consumer::{Delivery, HandlerError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = aws_sdk_sqs::Client::from_conf(
///     aws_sdk_sqs::Config::builder()
///         .behavior_version_latest()
///         .region(aws_sdk_sqs::config::Region::new("eu-west-1"))
///         .build(),
/// );
/// let mut config = SqsConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/claims");
/// config.max_in_flight = 0;
/// let handler = tower::service_fn(|_: Delivery| async { Ok::<_, HandlerError>(()) });
/// let result = SqsConsumer::new(client, config).run(handler, std::future::pending::<()>()).await;
/// assert!(matches!(result, Err(ConsumerError::InvalidConfig { .. })));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration cannot work (see the reason); nothing was received.
    ///
    /// ### Handling
    /// A deployment error: fix the configuration. Retrying cannot help.
    #[error("invalid SQS consumer configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// SQS says the queue cannot be consumed at all: it does not exist, its address is
    /// invalid, or the request is not allowed. Handlers that were running were drained
    /// first.
    ///
    /// ### Handling
    /// Check the queue URL, region and permissions; restarting the consumer without a
    /// change fails the same way. The source is the SDK's error, kept opaque.
    #[error("cannot receive from the queue {queue}")]
    QueueUnavailable {
        /// The queue URL.
        queue: String,
        /// What SQS answered.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}
