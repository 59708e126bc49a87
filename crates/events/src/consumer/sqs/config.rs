//! [`SqsConsumerConfig`]: what an [`SqsConsumer`](super::SqsConsumer) consumes and how.

use std::time::Duration;

use crate::consumer::{BodyFormat, RetryBackoff};

/// The longest long poll SQS allows.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);
/// The longest visibility timeout SQS allows.
pub(crate) const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// How an [`SqsConsumer`](super::SqsConsumer) consumes a queue.
///
/// Start from [`SqsConsumerConfig::new`] and change the fields that matter:
///
/// ```
/// use std::time::Duration;
/// use dovetail_events::consumer::sqs::SqsConsumerConfig;
///
/// let mut config = SqsConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/claims");
/// config.max_in_flight = 32;
/// config.visibility_timeout = Duration::from_secs(60);
/// config.heartbeat_every = Duration::from_secs(20);
/// config.dead_letter_queue_url = Some("https://sqs.eu-west-1.amazonaws.com/123456789012/claims-dlq".into());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqsConsumerConfig {
    /// The queue to consume. A URL ending in `.fifo` is a FIFO queue: messages of one
    /// message group are handled one at a time, in order.
    pub queue_url: String,
    /// The most handlers running at once (at least 1; default 10). The consumer never
    /// receives more messages than it has free handler slots, so messages wait in SQS,
    /// visible to other consumers, rather than in this process. In a FIFO queue, messages
    /// waiting behind their group's current message take no handler slot, but the consumer
    /// holds at most `max_in_flight + 10` messages in all.
    pub max_in_flight: usize,
    /// How long one receive waits for messages (long polling; whole seconds, at most 20;
    /// default 20). On shutdown the receive in flight is waited for, and what it brings
    /// made visible again (SQS would hand it to that receive anyway), so a shorter wait
    /// also stops sooner.
    pub wait_time: Duration,
    /// How long a received message stays invisible to other consumers (whole seconds,
    /// rounded up, 1 second to 12 hours; default 30 seconds). Set on each receive, so the
    /// queue's own setting does not matter.
    pub visibility_timeout: Duration,
    /// How often the visibility of a message still held (its handler running, or waiting in
    /// its FIFO group) is extended by another `visibility_timeout` (the heartbeat). Must be
    /// shorter than `visibility_timeout` with room for a round trip; default 10 seconds.
    pub heartbeat_every: Duration,
    /// The delay before a retriable failure is redelivered, from its receive count.
    pub retry_backoff: RetryBackoff,
    /// Where rejected and undecodable messages go, with their reason. A FIFO dead-letter
    /// queue (URL ending in `.fifo`) receives them in the original message group (or a
    /// group named after the source queue), deduplicated by the original message id.
    /// Without one, such messages are left to the queue's own redrive policy: they become
    /// visible again after `retry_backoff.max`, and each receive counts towards its
    /// `maxReceiveCount`.
    pub dead_letter_queue_url: Option<String>,
    /// Whether bodies are raw messages, SNS notifications, or either (default: either).
    pub body_format: BodyFormat,
    /// How long a processed message's delete may wait for others to fill a
    /// `DeleteMessageBatch` of 10 (default 100 milliseconds).
    pub delete_flush_interval: Duration,
    /// How long shutdown waits for running handlers before abandoning them (default 30
    /// seconds). Abandoned messages are redelivered once their visibility times out.
    pub drain_timeout: Duration,
}

impl SqsConsumerConfig {
    /// The defaults for consuming `queue_url`.
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            max_in_flight: 10,
            wait_time: MAX_WAIT_TIME,
            visibility_timeout: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            retry_backoff: RetryBackoff::default(),
            dead_letter_queue_url: None,
            body_format: BodyFormat::default(),
            delete_flush_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(30),
        }
    }

    /// Whether the queue is a FIFO queue.
    ///
    /// ```
    /// use dovetail_events::consumer::sqs::SqsConsumerConfig;
    /// assert!(SqsConsumerConfig::new("http://localhost:4566/000000000000/claims.fifo").is_fifo());
    /// ```
    pub fn is_fifo(&self) -> bool {
        self.queue_url.ends_with(".fifo")
    }

    /// The queue's name: the last segment of its URL.
    ///
    /// ```
    /// use dovetail_events::consumer::sqs::SqsConsumerConfig;
    /// let config = SqsConsumerConfig::new("https://sqs.eu-west-1.amazonaws.com/123456789012/claims");
    /// assert_eq!(config.queue_name(), "claims");
    /// ```
    pub fn queue_name(&self) -> &str {
        queue_name(&self.queue_url)
    }

    /// Why the configuration cannot work, if it cannot.
    pub(crate) fn problem(&self) -> Option<String> {
        let visibility = whole_seconds(self.visibility_timeout);
        if self.queue_url.trim().is_empty() {
            Some("the queue URL is empty".to_owned())
        } else if self.max_in_flight == 0 {
            Some("max_in_flight must be at least 1".to_owned())
        } else if self.wait_time > MAX_WAIT_TIME {
            Some(format!(
                "wait_time is {:?}; SQS long polling waits at most 20 seconds",
                self.wait_time
            ))
        } else if self.visibility_timeout.is_zero() || self.visibility_timeout > MAX_VISIBILITY {
            Some(format!(
                "visibility_timeout is {:?}; it must be between 1 second and 12 hours",
                self.visibility_timeout
            ))
        } else if self.heartbeat_every.is_zero()
            || self.heartbeat_every + self.delete_flush_interval
                >= Duration::from_secs(u64::from(visibility.unsigned_abs()))
        {
            Some(format!(
                "heartbeat_every ({:?}) plus delete_flush_interval ({:?}) must be shorter than \
                 visibility_timeout ({visibility} s) and heartbeat_every above zero",
                self.heartbeat_every, self.delete_flush_interval
            ))
        } else if self.dead_letter_queue_url.as_deref() == Some(self.queue_url.as_str()) {
            Some("the dead-letter queue is the consumed queue".to_owned())
        } else {
            None
        }
    }
}

/// The last segment of a queue URL.
pub(crate) fn queue_name(url: &str) -> &str {
    url.trim_end_matches('/').rsplit('/').next().unwrap_or(url)
}

/// A duration in whole seconds for SQS, rounded up and capped at 12 hours.
pub(crate) fn whole_seconds(duration: Duration) -> i32 {
    let capped = duration.min(MAX_VISIBILITY);
    let seconds = capped.as_secs() + u64::from(capped.subsec_nanos() > 0);
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let config = SqsConsumerConfig::new("http://localhost:4566/000000000000/claims");
        assert_eq!(config.problem(), None);
        assert_eq!(config.queue_name(), "claims");
        assert!(!config.is_fifo());
    }

    #[test]
    fn a_heartbeat_as_long_as_the_visibility_is_refused() {
        let mut config = SqsConsumerConfig::new("http://h/1/q.fifo");
        assert!(config.is_fifo());
        config.visibility_timeout = Duration::from_secs(2);
        config.heartbeat_every = Duration::from_secs(2);
        assert!(config.problem().unwrap().contains("heartbeat_every"));
        config.heartbeat_every = Duration::from_millis(500);
        assert_eq!(config.problem(), None);
    }

    #[test]
    fn other_problems_are_named() {
        let mut config = SqsConsumerConfig::new("http://h/1/q");
        config.max_in_flight = 0;
        assert!(config.problem().unwrap().contains("max_in_flight"));
        let mut config = SqsConsumerConfig::new("http://h/1/q");
        config.wait_time = Duration::from_secs(21);
        assert!(config.problem().unwrap().contains("wait_time"));
        let mut config = SqsConsumerConfig::new("http://h/1/q");
        config.dead_letter_queue_url = Some(config.queue_url.clone());
        assert!(config.problem().unwrap().contains("dead-letter"));
    }

    #[test]
    fn durations_round_up_to_whole_seconds_and_cap_at_twelve_hours() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(100_000)), 43_200);
    }
}
