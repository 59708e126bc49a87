//! Unwrapping the SNS notification a queue receives when it subscribes to a topic without
//! raw message delivery.

use std::collections::BTreeMap;

use serde::Deserialize;

/// What the bodies of a queue are: raw messages, SNS notifications, or either.
///
/// SNS delivers to a subscribed queue either the bare message (raw message delivery) or a
/// JSON notification that wraps it:
/// `{"Type":"Notification","TopicArn":…,"Message":…,"MessageAttributes":{name:{"Type":…,"Value":…}}}`.
/// The consumer hands the handler the message and its attributes either way.
///
/// # Example
/// ```
/// use dovetail_events::consumer::BodyFormat;
/// assert_eq!(BodyFormat::default(), BodyFormat::Auto);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BodyFormat {
    /// Unwrap a body that is an SNS notification (a JSON object with `"Type":
    /// "Notification"` and a `TopicArn`), take any other body as it is. A body that looks
    /// like a notification (an object naming `TopicArn` and `Message`) but is not valid
    /// JSON, or a notification without a string `Message`, is undecodable and goes to the
    /// dead-letter queue.
    #[default]
    Auto,
    /// Every body is an SNS notification; any other body is undecodable.
    Sns,
    /// Never unwrap: the body is the message.
    Raw,
}

/// A body unwrapped from its SNS notification, or taken as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unwrapped {
    /// The message.
    pub(crate) body: String,
    /// The notification's string attributes; `None` when the body was not a notification
    /// (the transport's own attributes apply).
    pub(crate) attributes: Option<BTreeMap<String, String>>,
    /// The topic, for a notification.
    pub(crate) topic_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Notification {
    #[serde(rename = "Type")]
    kind: String,
    topic_arn: Option<String>,
    message: Option<serde_json::Value>,
    #[serde(default)]
    message_attributes: Option<BTreeMap<String, NotificationAttribute>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NotificationAttribute {
    #[serde(rename = "Type")]
    data_type: String,
    value: String,
}

/// Unwraps `body` according to `format`.
///
/// # Errors
/// The reason the body is undecodable, for the dead-letter queue.
pub(crate) fn unwrap_body(body: String, format: BodyFormat) -> Result<Unwrapped, String> {
    let raw = |body| Unwrapped {
        body,
        attributes: None,
        topic_arn: None,
    };
    if format == BodyFormat::Raw {
        return Ok(raw(body));
    }
    match serde_json::from_str::<Notification>(&body) {
        // A raw JSON body may well have a `Type` of its own: only a notification from a
        // topic is unwrapped.
        Ok(notification)
            if notification.kind == "Notification"
                && (notification.topic_arn.is_some() || format == BodyFormat::Sns) =>
        {
            from_notification(notification)
        }
        Ok(notification) if format == BodyFormat::Sns => Err(format!(
            "the body is an SNS message of type `{}`, not a Notification",
            notification.kind
        )),
        Err(error) if format == BodyFormat::Sns => {
            Err(format!("the body is not an SNS notification: {error}"))
        }
        Err(error) if looks_like_notification(&body) => Err(format!(
            "the body looks like an SNS notification but is not valid: {error}"
        )),
        Ok(_) | Err(_) => Ok(raw(body)),
    }
}

fn from_notification(notification: Notification) -> Result<Unwrapped, String> {
    let Some(serde_json::Value::String(body)) = notification.message else {
        return Err("the SNS notification has no string `Message`".to_owned());
    };
    if notification.topic_arn.is_none() {
        return Err("the SNS notification has no `TopicArn`".to_owned());
    }
    let attributes = notification
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, attribute)| is_string_type(&attribute.data_type))
        .map(|(name, attribute)| (name, attribute.value))
        .collect();
    Ok(Unwrapped {
        body,
        attributes: Some(attributes),
        topic_arn: notification.topic_arn,
    })
}

/// `String`, `Number`, `String.Array` and custom subtypes such as `Number.int`; not `Binary`.
pub(crate) fn is_string_type(data_type: &str) -> bool {
    data_type.starts_with("String") || data_type.starts_with("Number")
}

/// A JSON-ish object that names the SNS notification fields (`TopicArn` and `Message`, which
/// come early in a notification and survive a truncation): a damaged notification rather
/// than a raw body that happens not to be JSON.
fn looks_like_notification(body: &str) -> bool {
    body.trim_start().starts_with('{')
        && body.contains("\"TopicArn\"")
        && body.contains("\"Message\"")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn notification(message: &str) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "5b0b9a5c-0000-0000-0000-000000000000",
            "TopicArn": "arn:aws:sns:us-east-1:000000000000:policies",
            "Message": message,
            "Timestamp": "2025-03-01T10:15:30.123Z",
            "SignatureVersion": "1",
            "MessageAttributes": {
                "type": {"Type": "String", "Value": "policy.activated"},
                "schemaversion": {"Type": "Number", "Value": "2"},
                "blob": {"Type": "Binary", "Value": "AAEC"},
            },
        })
        .to_string()
    }

    #[test]
    fn a_notification_is_unwrapped_with_its_string_attributes() {
        let body = r#"{"policyId":"pol-42"}"#;
        let unwrapped = unwrap_body(notification(body), BodyFormat::Auto).unwrap();
        assert_eq!(unwrapped.body, body);
        assert_eq!(
            unwrapped.topic_arn.as_deref(),
            Some("arn:aws:sns:us-east-1:000000000000:policies")
        );
        let attributes = unwrapped.attributes.unwrap();
        assert_eq!(
            attributes.into_iter().collect::<Vec<_>>(),
            [
                ("schemaversion".to_owned(), "2".to_owned()),
                ("type".to_owned(), "policy.activated".to_owned()),
            ]
        );
    }

    #[test]
    fn a_notification_without_attributes_has_none() {
        let body = serde_json::json!({
            "Type": "Notification", "TopicArn": "arn:t", "Message": "hello"
        })
        .to_string();
        let unwrapped = unwrap_body(body, BodyFormat::Sns).unwrap();
        assert_eq!(unwrapped.body, "hello");
        assert_eq!(unwrapped.attributes, Some(BTreeMap::new()));
    }

    #[test]
    fn raw_bodies_are_kept_as_they_are_in_auto() {
        for body in ["hello", "", "{\"Type\":\"Order\"}", "[1,2]", "{not json"] {
            let unwrapped = unwrap_body(body.to_owned(), BodyFormat::Auto).unwrap();
            assert_eq!(unwrapped.body, body);
            assert_eq!(unwrapped.attributes, None);
        }
    }

    #[test]
    fn a_raw_body_of_type_notification_without_a_topic_is_raw_in_auto() {
        let body = r#"{"Type":"Notification","Message":"your claim was filed"}"#;
        assert_eq!(
            unwrap_body(body.to_owned(), BodyFormat::Auto).unwrap().body,
            body
        );
        assert!(unwrap_body(body.to_owned(), BodyFormat::Sns).is_err());
    }

    #[test]
    fn raw_never_unwraps() {
        let body = notification("inner");
        assert_eq!(
            unwrap_body(body.clone(), BodyFormat::Raw).unwrap().body,
            body
        );
    }

    #[test]
    fn a_damaged_notification_is_undecodable() {
        let mut body = notification("inner");
        body.truncate(body.len() - 10);
        let reason = unwrap_body(body, BodyFormat::Auto).unwrap_err();
        assert!(
            reason.contains("looks like an SNS notification"),
            "{reason}"
        );
    }

    #[test]
    fn a_notification_without_a_string_message_is_undecodable() {
        let body = serde_json::json!({
            "Type": "Notification", "TopicArn": "arn:t", "Message": {"a": 1}
        })
        .to_string();
        assert!(unwrap_body(body, BodyFormat::Auto).is_err());
    }

    #[test]
    fn sns_format_refuses_raw_bodies() {
        assert!(unwrap_body("hello".to_owned(), BodyFormat::Sns).is_err());
        let confirmation = serde_json::json!({
            "Type": "SubscriptionConfirmation", "TopicArn": "arn:t", "Message": "confirm"
        })
        .to_string();
        assert!(unwrap_body(confirmation, BodyFormat::Sns).is_err());
    }
}
