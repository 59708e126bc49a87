//! [`Subscription`]: what a consumer says it reads (topics, event-type filters, redrive
//! and receive limits), whatever transport provisions it.

use std::time::Duration;

/// What a consumer reads: the events of one or more topics that its [`TypeFilter`]s let
/// through, with its redrive and receive limits. A [`Transport`](super::Transport) turns it
/// into the resources of its backend ([`Transport::subscribe`](super::Transport::subscribe)),
/// named after the consumer:
///
/// | backend | resources |
/// |---|---|
/// | embedded bus | one subscription per topic, `<consumer>-<topic>` |
/// | SNS/SQS | one queue, `<consumer>-<topic>` for one topic, `<consumer>-events` for several (`.fifo` kept), its dead-letter queue `<queue>-dlq`, one raw subscription per topic with the filter as a filter policy on `type` |
///
/// On AWS every name is preceded by the transport's
/// [name prefix](super::Transport::with_aws_name_prefix).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use dovetail_events::transport::{Subscription, TypeFilter};
///
/// let subscription = Subscription::new("claim-service")
///     .to_topic("policy-events", TypeFilter::prefixes(["policy."]))
///     .with_visibility_timeout(Duration::from_secs(60));
/// assert_eq!(subscription.queue_name(), "claim-service-policy-events");
/// assert_eq!(subscription.bus_subscription_name("policy-events"), "claim-service-policy-events");
///
/// let two = Subscription::new("search-service")
///     .to_topic("policy-events", TypeFilter::prefixes(["policy."]))
///     .to_topic("claim-events", TypeFilter::prefixes(["claim."]));
/// assert_eq!(two.queue_name(), "search-service-events");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Subscription {
    /// The consuming service or component, such as `claim-service`: the stem of every
    /// resource name.
    pub consumer: String,
    /// The topics read, each with its filter.
    pub topics: Vec<TopicSubscription>,
    /// After how many receives an unsettled message is dead-lettered; `None` keeps the
    /// transport's default: 10 on the embedded bus (whose redeliveries back off in
    /// milliseconds), 5 on SQS (where each waits out a visibility timeout).
    pub max_receives: Option<u32>,
    /// How long a received message stays invisible to other receives (default 30 s, at
    /// least 3 s on SQS); consumers extend it every third of it while the handler runs,
    /// and it is how long the messages of a killed consumer wait before redelivery.
    pub visibility_timeout: Duration,
    /// How long each SQS receive waits for messages (default 2 s; the embedded bus is
    /// woken by publishes and ignores it). A stopping consumer waits for its receive in
    /// flight, so a short wait stops sooner and costs more requests when idle.
    pub wait_time: Duration,
    /// Handlers running at once, at most; `None` keeps the consumer runtime's default.
    pub max_in_flight: Option<usize>,
}

impl Subscription {
    /// The subscription of `consumer`, to no topic yet, with the defaults.
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            consumer: consumer.into(),
            topics: Vec::new(),
            max_receives: None,
            visibility_timeout: Duration::from_secs(30),
            wait_time: Duration::from_secs(2),
            max_in_flight: None,
        }
    }

    /// The same, also reading the events of `topic` that `filter` lets through.
    #[must_use]
    pub fn to_topic(mut self, topic: impl Into<String>, filter: TypeFilter) -> Self {
        self.topics.push(TopicSubscription {
            topic: topic.into(),
            filter,
        });
        self
    }

    /// The same, dead-lettering a message after `max_receives` receives.
    #[must_use]
    pub fn with_max_receives(mut self, max_receives: u32) -> Self {
        self.max_receives = Some(max_receives);
        self
    }

    /// The same, with messages invisible for `timeout` once received.
    #[must_use]
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout;
        self
    }

    /// The same, with SQS receives waiting up to `wait` for messages.
    #[must_use]
    pub fn with_wait_time(mut self, wait: Duration) -> Self {
        self.wait_time = wait;
        self
    }

    /// The same, with at most `max_in_flight` handlers running at once (at least 1).
    #[must_use]
    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = Some(max_in_flight.max(1));
        self
    }

    /// The name of the embedded bus's subscription to `topic`: `<consumer>-<topic>`.
    pub fn bus_subscription_name(&self, topic: &str) -> String {
        format!("{}-{topic}", self.consumer)
    }

    /// The name of the SQS queue (before the name prefix): `<consumer>-<topic>` when one
    /// topic is read, else `<consumer>-events`; `.fifo` when the topics are FIFO topics.
    pub fn queue_name(&self) -> String {
        match self.topics.as_slice() {
            [only] => format!("{}-{}", self.consumer, only.topic),
            topics => {
                let fifo =
                    !topics.is_empty() && topics.iter().all(|topic| topic.topic.ends_with(".fifo"));
                format!(
                    "{}-events{}",
                    self.consumer,
                    if fifo { ".fifo" } else { "" }
                )
            }
        }
    }
}

/// A subscription's part that reads one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSubscription {
    /// The topic's name (created when missing).
    pub topic: String,
    /// The events delivered.
    pub filter: TypeFilter,
}

/// Which events of a topic a subscription delivers, by their `type` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeFilter {
    /// Every event.
    All,
    /// The events of these types, such as `policy.issued`.
    Types(Vec<String>),
    /// The events whose type starts with one of these, such as `policy.`.
    Prefixes(Vec<String>),
}

impl TypeFilter {
    /// The events of these types.
    pub fn types<S: Into<String>>(types: impl IntoIterator<Item = S>) -> Self {
        Self::Types(types.into_iter().map(Into::into).collect())
    }

    /// The events whose type starts with one of these prefixes.
    pub fn prefixes<S: Into<String>>(prefixes: impl IntoIterator<Item = S>) -> Self {
        Self::Prefixes(prefixes.into_iter().map(Into::into).collect())
    }

    /// The filter as an SNS filter policy on the `type` message attribute (also the
    /// embedded bus's filter language), values sorted and deduplicated so the same filter
    /// always reads the same; `None` for [`All`](Self::All).
    pub fn filter_policy(&self) -> Option<serde_json::Value> {
        let sorted = |values: &[String]| {
            let mut values = values.to_vec();
            values.sort();
            values.dedup();
            values
        };
        let matches: Vec<serde_json::Value> = match self {
            Self::All => return None,
            Self::Types(types) => sorted(types)
                .into_iter()
                .map(serde_json::Value::from)
                .collect(),
            Self::Prefixes(prefixes) => sorted(prefixes)
                .into_iter()
                .map(|prefix| serde_json::json!({ "prefix": prefix }))
                .collect(),
        };
        Some(serde_json::json!({ crate::envelope::MessageAttributes::EVENT_TYPE: matches }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_policies_are_on_the_type_attribute_in_a_stable_order() {
        assert_eq!(
            TypeFilter::types(["b", "a", "a"]).filter_policy(),
            Some(serde_json::json!({"type": ["a", "b"]}))
        );
        assert_eq!(
            TypeFilter::prefixes(["policy."]).filter_policy(),
            Some(serde_json::json!({"type": [{"prefix": "policy."}]}))
        );
        assert_eq!(TypeFilter::All.filter_policy(), None);
    }

    #[test]
    fn names_follow_the_consumer_and_its_topics() {
        let one = Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All);
        assert_eq!(one.queue_name(), "claim-service-policy-events");
        let fifo = Subscription::new("c")
            .to_topic("a.fifo", TypeFilter::All)
            .to_topic("b.fifo", TypeFilter::All);
        assert_eq!(fifo.queue_name(), "c-events.fifo");
        assert_eq!(fifo.bus_subscription_name("a.fifo"), "c-a.fifo");
    }

    #[test]
    fn in_flight_is_at_least_one() {
        assert_eq!(
            Subscription::new("c").with_max_in_flight(0).max_in_flight,
            Some(1)
        );
    }
}
