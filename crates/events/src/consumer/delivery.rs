//! [`Delivery`]: one message as a transport hands it to a handler, before any decoding.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One message as the transport delivered it: the body (already unwrapped from an SNS
/// notification), its string attributes and what the transport knows about the delivery.
///
/// A `Delivery` is transport-neutral: the SQS consumer makes it from an SQS message, and an
/// embedded bus can make the same. Decoding the body into an event envelope is the job of
/// a layer in front of the handler, not of the runtime.
///
/// The fields are public so that a test can build a delivery for a handler with
/// [`Delivery::new`] and then set what it needs; the struct is `#[non_exhaustive]` so that
/// fields can be added.
///
/// # Example
/// ```
/// use dovetail_events::consumer::Delivery;
///
/// let mut delivery = Delivery::new("msg-1", r#"{"policyId":"pol-42"}"#);
/// delivery.receive_count = 3;
/// delivery.attributes.insert("type".into(), "policy.activated".into());
/// assert_eq!(delivery.attribute("type"), Some("policy.activated"));
/// assert!(delivery.is_redelivery());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The transport's id of the message (for SQS, the SQS `MessageId`; stable across
    /// redeliveries of the same message).
    pub message_id: String,
    /// The body. For a message that came through SNS without raw message delivery, the
    /// `Message` of the SNS notification, not the notification itself.
    pub body: String,
    /// The message attributes with a string value (the `String` and `Number` data types and
    /// their custom subtypes), by name. Binary attributes are not carried. For a message
    /// that came through SNS without raw message delivery, the attributes of the SNS
    /// notification.
    pub attributes: BTreeMap<String, String>,
    /// How many times the message has been received, this delivery included (SQS
    /// `ApproximateReceiveCount`); 1 on the first delivery.
    pub receive_count: u32,
    /// When the message was sent to the queue (SQS `SentTimestamp`), when known.
    pub sent_at: Option<SystemTime>,
    /// When the message was first received from the queue (SQS
    /// `ApproximateFirstReceiveTimestamp`), when known.
    pub first_received_at: Option<SystemTime>,
    /// The message group of a FIFO queue (SQS `MessageGroupId`): messages of one group are
    /// handed to the handler one at a time, in order.
    pub group_id: Option<String>,
    /// The ARN of the SNS topic the message was published to, when it came through SNS
    /// without raw message delivery.
    pub topic_arn: Option<String>,
    /// The name of the queue (or embedded channel) the message was received from.
    pub source_queue: String,
}

impl Delivery {
    /// A first delivery of `body` with id `message_id`, no attributes, no timestamps, no
    /// group and an empty queue name.
    pub fn new(message_id: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            message_id: message_id.into(),
            body: body.into(),
            attributes: BTreeMap::new(),
            receive_count: 1,
            sent_at: None,
            first_received_at: None,
            group_id: None,
            topic_arn: None,
            source_queue: String::new(),
        }
    }

    /// The value of the attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// Whether the message was received before (its receive count is above 1).
    pub fn is_redelivery(&self) -> bool {
        self.receive_count > 1
    }
}
