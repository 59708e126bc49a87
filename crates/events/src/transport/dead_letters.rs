//! The dead letters of an [`EventSource`], whatever its transport: their depth per queue
//! (reported as the `dovetail_consumer_dead_letters{queue}` gauge while the source runs)
//! and the operator's redrive back to the consumer.

use std::time::Duration;

use super::source::Part;
use super::{EventSource, TransportError};

/// How often a running [`EventSource`] reads its dead-letter depth for the
/// `dovetail_consumer_dead_letters` gauge.
pub const DEAD_LETTER_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// The messages waiting in the dead letters of one part of an [`EventSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetterDepth {
    /// The part: its bus subscription or SQS queue (the `queue` label of the consumer's
    /// metrics).
    pub queue: String,
    /// Dead-lettered messages waiting for an operator.
    pub depth: u64,
}

impl EventSource {
    /// The dead-letter depth of each of its parts: the bus subscription's dead letters,
    /// or the SQS dead-letter queue's `ApproximateNumberOfMessages` (a queue without a
    /// dead-letter queue has none).
    ///
    /// # Errors
    /// [`TransportError::Bus`] or [`TransportError::Aws`] when the backend cannot answer.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetterDepth>, TransportError> {
        let mut depths = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            depths.push(DeadLetterDepth {
                queue: part.name().to_owned(),
                depth: depth_of(part).await?,
            });
        }
        Ok(depths)
    }

    /// Moves the dead letters of its part `queue` (a name among [`parts`](Self::parts))
    /// back to that part's consumer, and answers how many; `None` when it has no part of
    /// that name. On the embedded bus this is [`EmbeddedBus::redrive`](crate::bus::EmbeddedBus::redrive),
    /// on SQS [`redrive_dead_letters`](crate::consumer::sqs::redrive_dead_letters).
    ///
    /// # Errors
    /// [`TransportError::Bus`] or [`TransportError::Aws`] when the backend refuses;
    /// running it again is safe.
    ///
    /// # Example
    /// ```
    /// use dovetail_events::bus::EmbeddedBus;
    /// use dovetail_events::transport::{Subscription, Transport, TypeFilter};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let transport = Transport::embedded(EmbeddedBus::open_in_memory()?);
    /// let source = transport
    ///     .subscribe(&Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All))
    ///     .await?;
    /// assert_eq!(source.redrive_dead_letters("claim-service-policy-events").await?, Some(0));
    /// assert_eq!(source.redrive_dead_letters("no-such-part").await?, None);
    /// # Ok(())
    /// # }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(example()).unwrap();
    /// ```
    pub async fn redrive_dead_letters(&self, queue: &str) -> Result<Option<u64>, TransportError> {
        let Some(part) = self.parts.iter().find(|part| part.name() == queue) else {
            return Ok(None);
        };
        redrive(part).await.map(Some)
    }
}

async fn depth_of(part: &Part) -> Result<u64, TransportError> {
    match part {
        #[cfg(feature = "sqlite")]
        Part::Bus { bus, config } => bus
            .backlog(&config.subscription)
            .await
            .map(|backlog| backlog.dead_letters)
            .map_err(TransportError::bus(format!(
                "reading the dead letters of {}",
                config.subscription
            ))),
        #[cfg(feature = "sqs")]
        Part::Sqs { client, config } => match &config.dead_letter_queue_url {
            None => Ok(0),
            Some(url) => crate::consumer::sqs::dead_letter_depth(client, url)
                .await
                .map_err(|error| TransportError::Aws {
                    operation: format!("reading the dead-letter depth of {}", config.queue_name()),
                    source: Box::new(error),
                }),
        },
    }
}

async fn redrive(part: &Part) -> Result<u64, TransportError> {
    match part {
        #[cfg(feature = "sqlite")]
        Part::Bus { bus, config } => bus
            .redrive(&config.subscription)
            .await
            .map(|moved| moved as u64)
            .map_err(TransportError::bus(format!(
                "redriving the dead letters of {}",
                config.subscription
            ))),
        #[cfg(feature = "sqs")]
        Part::Sqs { client, config } => match &config.dead_letter_queue_url {
            None => Ok(0),
            Some(url) => crate::consumer::sqs::redrive_dead_letters(client, url, &config.queue_url)
                .await
                .map_err(|error| TransportError::Aws {
                    operation: format!("redriving the dead letters of {}", config.queue_name()),
                    source: Box::new(error),
                }),
        },
    }
}

/// Sets the `dovetail_consumer_dead_letters{queue}` gauge to each depth.
///
/// ```
/// use dovetail_events::transport::record_dead_letters;
///
/// record_dead_letters(&[]); // a no-op without a recorder or depths
/// ```
#[cfg(feature = "metrics")]
pub fn record_dead_letters(depths: &[DeadLetterDepth]) {
    for depth in depths {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!("dovetail_consumer_dead_letters", "queue" => depth.queue.clone())
            .set(depth.depth as f64);
    }
}

/// Reads the source's dead-letter depth every `every` and records it, until dropped or
/// aborted; a failed read is logged and tried again at the next tick.
#[cfg(feature = "metrics")]
pub(super) async fn sample_dead_letters(source: EventSource, every: Duration) {
    metrics::describe_gauge!(
        "dovetail_consumer_dead_letters",
        "Messages waiting in a consumer's dead letters (bus subscription or SQS dead-letter queue)"
    );
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match source.dead_letters().await {
            Ok(depths) => record_dead_letters(&depths),
            Err(error) => tracing::warn!(
                consumer = %source.name(),
                error = %crate::error_chain::error_chain(&error),
                "could not read the dead-letter depth; trying again at the next sample"
            ),
        }
    }
}
