//! The message attributes an envelope travels with: a projection for filtering and
//! routing, never the source of truth (the body carries the whole envelope).

use thiserror::Error;

use super::Envelope;

/// The most attributes an SQS message may carry (SNS passes its attributes on to SQS, so
/// the same limit holds for a topic that feeds queues).
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// Transport-neutral message attributes: an ordered list of `(name, value)` strings that a
/// transport adapter turns into SNS/SQS message attributes (or headers).
///
/// [`Envelope::message_attributes`] keeps what subscriptions filter on and what a consumer
/// needs before it decodes the body, in this order:
///
/// | name | value |
/// |---|---|
/// | `type` | the event type |
/// | `schemaversion` | the schema version, in decimal |
/// | `source` | the source service |
/// | `aggregatetype` | the aggregate type |
/// | `traceparent` | the W3C `traceparent`, when the event has a trace |
/// | `tracestate` | the W3C `tracestate`, when the event has one |
///
/// That is at most 6 of the 10 an SQS message may carry, which leaves room for the
/// transport's own. The names are those of the CloudEvents mapping. Everything else (ids,
/// aggregate id, sequence, correlation) is read from the body: attributes are a projection,
/// and a consumer always decodes the envelope from the body.
///
/// ```
/// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, MessageAttributes, Sequence, Source};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PolicyActivated { policy_id: String }
/// impl Event for PolicyActivated {
///     const TYPE: &'static str = "policy.activated";
///     const VERSION: u32 = 1;
/// }
///
/// let envelope = Envelope::new(
///     Source::parse("policy-service")?,
///     AggregateRef::parse("policy", "pol-42")?,
///     Sequence::FIRST,
///     &PolicyActivated { policy_id: "pol-42".into() },
///     EventMetadata::default(),
/// )?;
/// let attributes = envelope.message_attributes();
/// assert_eq!(attributes.get(MessageAttributes::EVENT_TYPE), Some("policy.activated"));
/// assert_eq!(
///     attributes.iter().map(|(name, _)| name).collect::<Vec<_>>(),
///     ["type", "schemaversion", "source", "aggregatetype"]
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageAttributes {
    pairs: Vec<(String, String)>,
}

impl MessageAttributes {
    /// The name of the event type attribute.
    pub const EVENT_TYPE: &str = "type";
    /// The name of the schema version attribute (a decimal number; an SNS adapter may send
    /// it with the `Number` data type so that filter policies can compare it).
    pub const SCHEMA_VERSION: &str = "schemaversion";
    /// The name of the source service attribute.
    pub const SOURCE: &str = "source";
    /// The name of the aggregate type attribute.
    pub const AGGREGATE_TYPE: &str = "aggregatetype";
    /// The name of the W3C `traceparent` attribute.
    pub const TRACEPARENT: &str = "traceparent";
    /// The name of the W3C `tracestate` attribute.
    pub const TRACESTATE: &str = "tracestate";

    /// Attributes from pairs, as a consumer adapter receives them from its transport.
    ///
    /// # Errors
    ///
    /// [`AttributeError::TooMany`] for more than [`MAX_MESSAGE_ATTRIBUTES`] pairs,
    /// [`AttributeError::Duplicate`] when a name appears twice.
    ///
    /// ```
    /// use dovetail_events::envelope::MessageAttributes;
    ///
    /// let attributes = MessageAttributes::from_pairs([("type", "policy.activated")])?;
    /// assert_eq!(attributes.get("type"), Some("policy.activated"));
    /// assert!(MessageAttributes::from_pairs([("type", "a"), ("type", "b")]).is_err());
    /// # Ok::<(), dovetail_events::envelope::AttributeError>(())
    /// ```
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Self, AttributeError>
    where
        N: Into<String>,
        V: Into<String>,
    {
        let mut attributes = Self::default();
        for (name, value) in pairs {
            let name = name.into();
            if attributes.get(&name).is_some() {
                return Err(AttributeError::Duplicate { name });
            }
            attributes.pairs.push((name, value.into()));
        }
        let count = attributes.len();
        if count > MAX_MESSAGE_ATTRIBUTES {
            return Err(AttributeError::TooMany { count });
        }
        Ok(attributes)
    }

    /// The value of the attribute `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// The attributes, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// How many attributes there are; never more than [`MAX_MESSAGE_ATTRIBUTES`].
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The bytes the attributes add to a message's size, as SNS and SQS count them: each
    /// attribute's name, data type (`String`, the longest this crate's adapters use) and
    /// value.
    pub fn encoded_len(&self) -> usize {
        const DATA_TYPE_LEN: usize = "String".len();
        self.pairs
            .iter()
            .map(|(name, value)| name.len() + DATA_TYPE_LEN + value.len())
            .sum()
    }
}

impl Envelope {
    /// The message attributes this envelope travels with; see [`MessageAttributes`] for
    /// which are kept.
    pub fn message_attributes(&self) -> MessageAttributes {
        let mut pairs = vec![
            (MessageAttributes::EVENT_TYPE, self.event_type().to_string()),
            (
                MessageAttributes::SCHEMA_VERSION,
                self.schema_version().to_string(),
            ),
            (MessageAttributes::SOURCE, self.source().to_string()),
            (
                MessageAttributes::AGGREGATE_TYPE,
                self.aggregate_type().to_string(),
            ),
        ];
        if let Some(trace) = self.trace() {
            pairs.push((
                MessageAttributes::TRACEPARENT,
                trace.traceparent.to_string(),
            ));
            if let Some(state) = &trace.tracestate {
                pairs.push((MessageAttributes::TRACESTATE, state.to_string()));
            }
        }
        debug_assert!(pairs.len() <= MAX_MESSAGE_ATTRIBUTES);
        MessageAttributes {
            pairs: pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
        }
    }
}

/// Why pairs cannot be message attributes.
///
/// ### Handling
///
/// For every variant: the transport delivered something it should not have, or code added
/// attributes it should not have. Log it and read the envelope from the body, which does
/// not depend on the attributes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttributeError {
    /// More than [`MAX_MESSAGE_ATTRIBUTES`] pairs.
    ///
    /// ### Handling
    ///
    /// See the type.
    #[error("{count} message attributes are more than the {MAX_MESSAGE_ATTRIBUTES} SQS allows")]
    TooMany {
        /// How many pairs there were.
        count: usize,
    },

    /// A name appears twice.
    ///
    /// ### Handling
    ///
    /// See the type.
    #[error("the message attribute {name:?} appears twice")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rejects_more_than_ten() {
        let pairs = (0..11).map(|i| (format!("a{i}"), "v"));
        let err = MessageAttributes::from_pairs(pairs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "11 message attributes are more than the 10 SQS allows"
        );
        let pairs = (0..10).map(|i| (format!("a{i}"), "v"));
        assert_eq!(MessageAttributes::from_pairs(pairs).unwrap().len(), 10);
    }

    #[test]
    fn rejects_duplicate_names() {
        let err = MessageAttributes::from_pairs([("type", "a"), ("type", "b")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the message attribute \"type\" appears twice"
        );
    }

    #[test]
    fn keeps_the_order_and_counts_bytes() {
        let attributes = MessageAttributes::from_pairs([("b", "22"), ("a", "1")]).unwrap();
        let pairs: Vec<_> = attributes.iter().collect();
        assert_eq!(pairs, [("b", "22"), ("a", "1")]);
        assert_eq!(attributes.encoded_len(), (1 + 6 + 2) + (1 + 6 + 1));
        assert!(!attributes.is_empty());
        assert!(MessageAttributes::default().is_empty());
    }
}
