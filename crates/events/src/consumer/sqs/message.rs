//! From an SQS message to a [`Delivery`]: system attributes, string message attributes and
//! the SNS notification a body may be wrapped in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};

use crate::consumer::sns::{is_string_type, unwrap_body};
use crate::consumer::{BodyFormat, Delivery};

/// A received message, with what the runtime needs to settle it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) message_id: String,
    pub(crate) receipt_handle: String,
    pub(crate) receive_count: u32,
    pub(crate) group_id: Option<String>,
    /// The body as received (an SNS notification stays wrapped): what a dead-letter copy
    /// carries.
    pub(crate) body: String,
    /// The message attributes as received, binary ones included.
    pub(crate) attributes: HashMap<String, MessageAttributeValue>,
    sent_at: Option<SystemTime>,
    first_received_at: Option<SystemTime>,
}

impl Received {
    /// The parts of `message` the runtime uses; `None` without a receipt handle (nothing
    /// can be done with such a message: SQS never sends one).
    pub(crate) fn from_message(message: Message) -> Option<Self> {
        let system = message.attributes.unwrap_or_default();
        let timestamp = |name: &MessageSystemAttributeName| {
            system
                .get(name)
                .and_then(|millis| millis.parse::<u64>().ok())
                .map(|millis| UNIX_EPOCH + Duration::from_millis(millis))
        };
        Some(Self {
            message_id: message.message_id.unwrap_or_default(),
            receipt_handle: message.receipt_handle?,
            receive_count: system
                .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|count| count.parse().ok())
                .unwrap_or(1),
            group_id: system
                .get(&MessageSystemAttributeName::MessageGroupId)
                .cloned(),
            sent_at: timestamp(&MessageSystemAttributeName::SentTimestamp),
            first_received_at: timestamp(
                &MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
            ),
            body: message.body.unwrap_or_default(),
            attributes: message.message_attributes.unwrap_or_default(),
        })
    }

    /// The delivery for the handler.
    ///
    /// # Errors
    /// Why the body cannot be decoded (a damaged SNS notification), for the dead-letter
    /// queue.
    pub(crate) fn delivery(
        &self,
        source_queue: &str,
        format: BodyFormat,
    ) -> Result<Delivery, String> {
        let unwrapped = unwrap_body(self.body.clone(), format)?;
        let attributes = unwrapped.attributes.unwrap_or_else(|| {
            self.attributes
                .iter()
                .filter(|(_, value)| is_string_type(value.data_type()))
                .filter_map(|(name, value)| {
                    value
                        .string_value()
                        .map(|text| (name.clone(), text.to_owned()))
                })
                .collect::<BTreeMap<_, _>>()
        });
        let mut delivery = Delivery::new(self.message_id.clone(), unwrapped.body);
        delivery.attributes = attributes;
        delivery.receive_count = self.receive_count;
        delivery.sent_at = self.sent_at;
        delivery.first_received_at = self.first_received_at;
        delivery.group_id.clone_from(&self.group_id);
        delivery.topic_arn = unwrapped.topic_arn;
        source_queue.clone_into(&mut delivery.source_queue);
        Ok(delivery)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_sdk_sqs::primitives::Blob;

    fn message(body: &str) -> Message {
        Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000123")
            .attributes(MessageSystemAttributeName::MessageGroupId, "pol-42")
            .message_attributes(
                "type",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("policy.activated")
                    .build()
                    .unwrap(),
            )
            .message_attributes(
                "blob",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(vec![1, 2]))
                    .build()
                    .unwrap(),
            )
            .build()
    }

    #[test]
    fn a_raw_message_becomes_a_delivery() {
        let received = Received::from_message(message("hello")).unwrap();
        let delivery = received.delivery("claims", BodyFormat::Auto).unwrap();
        assert_eq!(delivery.message_id, "m-1");
        assert_eq!(delivery.body, "hello");
        assert_eq!(delivery.receive_count, 3);
        assert_eq!(delivery.group_id.as_deref(), Some("pol-42"));
        assert_eq!(delivery.source_queue, "claims");
        assert_eq!(
            delivery.sent_at,
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123))
        );
        assert_eq!(delivery.first_received_at, None);
        assert_eq!(
            delivery.attributes.into_iter().collect::<Vec<_>>(),
            [("type".to_owned(), "policy.activated".to_owned())]
        );
        assert_eq!(
            received.attributes.len(),
            2,
            "the original keeps binary attributes"
        );
    }

    #[test]
    fn an_sns_notification_is_unwrapped_with_its_attributes() {
        let body = serde_json::json!({
            "Type": "Notification",
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:policies",
            "Message": "hello",
            "MessageAttributes": {"kind": {"Type": "String", "Value": "x"}},
        })
        .to_string();
        let received = Received::from_message(message(&body)).unwrap();
        let delivery = received.delivery("claims", BodyFormat::Auto).unwrap();
        assert_eq!(delivery.body, "hello");
        assert_eq!(delivery.attribute("kind"), Some("x"));
        assert_eq!(delivery.attribute("type"), None);
        assert_eq!(
            received.body, body,
            "the original body is kept for the dead-letter queue"
        );
    }

    #[test]
    fn a_message_without_receipt_handle_is_skipped() {
        let message = Message::builder().message_id("m").body("b").build();
        assert!(Received::from_message(message).is_none());
    }
}
