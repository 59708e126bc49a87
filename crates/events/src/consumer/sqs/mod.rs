//! The SQS consumer runtime: [`SqsConsumer`] receives from a queue and hands each message
//! to a handler, with the guarantees described in [`crate::consumer`].
//!
//! # Example
//! ```no_run
//! use std::time::Duration;
//! use dovetail_events::consumer::sqs::{SqsConsumer, SqsConsumerConfig};
//! use dovetail_events::consumer::{Delivery, HandlerError};
//!
//! # async fn example(client: aws_sdk_sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SqsConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/claims");
//! config.dead_letter_queue_url = Some("https://sqs.eu-west-1.amazonaws.com/123456789012/claims-dlq".into());
//!
//! let handler = tower::service_fn(|delivery: Delivery| async move {
//!     tracing::info!(body = %delivery.body, "got a claim");
//!     Ok::<(), HandlerError>(())
//! });
//! let report = SqsConsumer::new(client, config)
//!     .run(handler, tokio::signal::ctrl_c())
//!     .await?;
//! println!("handled {} messages", report.handled);
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod dead_letter;
mod deleter;
mod error;
mod heartbeat;
mod message;
mod redrive;
mod run;

use std::future::Future;

use tower::Service;

pub use config::SqsConsumerConfig;
pub use dead_letter::{REASON_ATTRIBUTE, SOURCE_ATTRIBUTE};
pub use error::ConsumerError;
pub use redrive::{DeadLetterError, dead_letter_depth, redrive_dead_letters};

use crate::consumer::{ConsumerReport, Delivery, HandlerError};

/// Consumes one SQS queue with a handler until shut down.
///
/// See [`crate::consumer`] for what it guarantees and [`SqsConsumerConfig`] for the knobs.
#[derive(Debug, Clone)]
pub struct SqsConsumer {
    client: aws_sdk_sqs::Client,
    config: SqsConsumerConfig,
}

impl SqsConsumer {
    /// A consumer of `config.queue_url` through `client`.
    pub fn new(client: aws_sdk_sqs::Client, config: SqsConsumerConfig) -> Self {
        Self { client, config }
    }

    /// Receives and handles messages until `shutdown` completes, then drains: stops
    /// receiving, lets running handlers finish (up to `drain_timeout`), releases FIFO
    /// messages that had not started, flushes the pending deletes, and returns what
    /// happened.
    ///
    /// `shutdown` is any future, whatever its output: `tokio::signal::ctrl_c()`, a
    /// `CancellationToken`'s `cancelled_owned()`, a `oneshot` receiver.
    ///
    /// # Errors
    /// [`ConsumerError::InvalidConfig`] before receiving anything;
    /// [`ConsumerError::QueueUnavailable`] when SQS says the queue cannot be consumed
    /// (after draining the handlers already running). Failures of single messages are
    /// never errors here: they are retried, dead-lettered and counted in the report.
    ///
    /// # Example
    /// ```no_run
    /// use dovetail_events::consumer::sqs::{SqsConsumer, SqsConsumerConfig};
    /// use dovetail_events::consumer::{Delivery, HandlerError};
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # async fn example(client: aws_sdk_sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let stop = CancellationToken::new();
    /// let consumer = SqsConsumer::new(client, SqsConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/claims"));
    /// let handler = tower::service_fn(|_: Delivery| async { Ok::<_, HandlerError>(()) });
    /// let running = tokio::spawn(consumer.run(handler, stop.clone().cancelled_owned()));
    /// // ... later:
    /// stop.cancel();
    /// let report = running.await??;
    /// assert!(report.is_clean());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run<S, F>(self, handler: S, shutdown: F) -> Result<ConsumerReport, ConsumerError>
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        S::Future: Send + 'static,
        F: Future,
    {
        run::run(self.client, self.config, handler, shutdown).await
    }
}
