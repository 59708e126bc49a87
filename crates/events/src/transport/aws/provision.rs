//! The idempotent steps of provisioning on SQS and SNS: a queue found or created, its
//! attributes brought to what is wanted, a topic's subscription found or created with the
//! right attributes. Each step reads first and changes only what differs.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;

use super::AwsTransport;
use crate::transport::TransportError;

/// The longest queue name SQS accepts.
const MAX_QUEUE_NAME: usize = 80;

/// A queue's URL, ARN and attributes as read.
pub(super) struct QueueRef {
    pub(super) url: String,
    pub(super) arn: String,
    attributes: HashMap<QueueAttributeName, String>,
}

/// A consumer queue's name and its dead-letter queue's.
#[derive(Debug)]
pub(super) struct QueueNames {
    pub(super) queue: String,
    pub(super) dead_letter: String,
    pub(super) fifo: bool,
}

impl QueueNames {
    pub(super) fn of(queue: &str) -> Result<Self, TransportError> {
        let (stem, fifo) = match queue.strip_suffix(".fifo") {
            Some(stem) => (stem, true),
            None => (queue, false),
        };
        let dead_letter = format!("{stem}-dlq{}", if fifo { ".fifo" } else { "" });
        let valid = !stem.is_empty()
            && stem
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && dead_letter.len() <= MAX_QUEUE_NAME;
        if !valid {
            return Err(TransportError::InvalidName {
                name: queue.to_owned(),
                reason: format!(
                    "SQS names are letters, digits, `-` and `_` (plus `.fifo` for a FIFO \
                     queue), and its dead-letter queue {dead_letter:?} must fit in \
                     {MAX_QUEUE_NAME} characters"
                ),
            });
        }
        Ok(Self {
            queue: queue.to_owned(),
            dead_letter,
            fifo,
        })
    }
}

impl AwsTransport {
    /// The queue `name`, created when missing.
    pub(super) async fn ensure_queue(
        &self,
        name: &str,
        fifo: bool,
    ) -> Result<QueueRef, TransportError> {
        // Only the attribute that cannot change is given here: CreateQueue on an existing
        // queue with other attributes fails, so the others are set afterwards.
        let operation = format!("creating the SQS queue {name}");
        let mut request = self.sqs.create_queue().queue_name(name);
        if fifo {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let created = request
            .send()
            .await
            .map_err(TransportError::aws(operation.clone()))?;
        let url = created
            .queue_url()
            .ok_or_else(|| TransportError::incomplete(operation, "queue URL"))?
            .to_owned();
        let attributes = self.queue_attributes(&url).await?;
        let arn = attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| {
                TransportError::incomplete(format!("reading the SQS queue {name}"), "QueueArn")
            })?;
        Ok(QueueRef {
            url,
            arn,
            attributes,
        })
    }

    async fn queue_attributes(
        &self,
        url: &str,
    ) -> Result<HashMap<QueueAttributeName, String>, TransportError> {
        let read = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(TransportError::aws(format!(
                "reading the attributes of the SQS queue {url}"
            )))?;
        Ok(read.attributes().cloned().unwrap_or_default())
    }

    /// Sets the attributes of `wanted` that the queue does not have already.
    pub(super) async fn set_queue_attributes(
        &self,
        queue: &QueueRef,
        wanted: HashMap<QueueAttributeName, String>,
    ) -> Result<(), TransportError> {
        let changes: HashMap<QueueAttributeName, String> = wanted
            .into_iter()
            .filter(|(name, value)| !same_attribute(name, queue.attributes.get(name), value))
            .collect();
        if changes.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&str> = changes.keys().map(QueueAttributeName::as_str).collect();
        names.sort_unstable();
        let operation = format!(
            "setting {} of the SQS queue {}",
            names.join(", "),
            queue.url
        );
        self.sqs
            .set_queue_attributes()
            .queue_url(&queue.url)
            .set_attributes(Some(changes))
            .send()
            .await
            .map_err(TransportError::aws(operation))?;
        Ok(())
    }

    /// The queue's subscription to the topic: found (and its attributes corrected) or
    /// created. Subscribing again with other attributes fails on SNS, so existing
    /// subscriptions are looked up first.
    pub(super) async fn ensure_subscription(
        &self,
        topic_arn: &str,
        queue: &QueueRef,
        filter: Option<serde_json::Value>,
    ) -> Result<(), TransportError> {
        let what =
            |doing: &str| format!("{doing} the subscription of {} to {topic_arn}", queue.arn);
        let Some(subscription_arn) = self.find_subscription(topic_arn, &queue.arn).await? else {
            let mut request = self
                .sns
                .subscribe()
                .topic_arn(topic_arn)
                .protocol("sqs")
                .endpoint(&queue.arn)
                .return_subscription_arn(true)
                .attributes("RawMessageDelivery", "true");
            if let Some(filter) = &filter {
                request = request.attributes("FilterPolicy", filter.to_string());
            }
            request
                .send()
                .await
                .map_err(TransportError::aws(what("creating")))?;
            return Ok(());
        };
        let current = self
            .sns
            .get_subscription_attributes()
            .subscription_arn(&subscription_arn)
            .send()
            .await
            .map_err(TransportError::aws(what("reading")))?;
        let current = current.attributes().cloned().unwrap_or_default();
        let mut changes = Vec::new();
        if current.get("RawMessageDelivery").map(String::as_str) != Some("true") {
            changes.push(("RawMessageDelivery", "true".to_owned()));
        }
        let current_filter = current
            .get("FilterPolicy")
            .filter(|text| !text.trim().is_empty())
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter(|policy| policy.as_object().is_none_or(|fields| !fields.is_empty()));
        if current_filter != filter {
            // An empty policy removes the filter.
            let text = filter.map_or_else(|| "{}".to_owned(), |policy| policy.to_string());
            changes.push(("FilterPolicy", text));
        }
        for (name, value) in changes {
            self.sns
                .set_subscription_attributes()
                .subscription_arn(&subscription_arn)
                .attribute_name(name)
                .attribute_value(value)
                .send()
                .await
                .map_err(TransportError::aws(what(&format!("setting {name} of"))))?;
        }
        Ok(())
    }

    /// The ARN of the topic's subscription delivering to `queue_arn`, if there is one.
    async fn find_subscription(
        &self,
        topic_arn: &str,
        queue_arn: &str,
    ) -> Result<Option<String>, TransportError> {
        let mut next_token = None;
        loop {
            let page = self
                .sns
                .list_subscriptions_by_topic()
                .topic_arn(topic_arn)
                .set_next_token(next_token)
                .send()
                .await
                .map_err(TransportError::aws(format!(
                    "listing the subscriptions of {topic_arn}"
                )))?;
            let found = page.subscriptions().iter().find(|subscription| {
                subscription.protocol() == Some("sqs") && subscription.endpoint() == Some(queue_arn)
            });
            if let Some(arn) = found.and_then(|subscription| subscription.subscription_arn()) {
                // An unconfirmed subscription has no ARN to set attributes on; SQS
                // subscriptions in the same account are confirmed at once.
                if arn.starts_with("arn:") {
                    return Ok(Some(arn.to_owned()));
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(None),
            }
        }
    }
}

/// The queue policy letting `topics` send to the queue `queue_arn`.
pub(super) fn queue_policy(queue_arn: &str, topics: &[String]) -> serde_json::Value {
    let mut topics = topics.to_vec();
    topics.sort();
    topics.dedup();
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "dovetail-topics",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": topics}},
        }],
    })
}

/// Whether the queue's attribute `current` already says `wanted` (JSON attributes
/// compared as JSON, since SQS may reformat them).
fn same_attribute(name: &QueueAttributeName, current: Option<&String>, wanted: &str) -> bool {
    let Some(current) = current else {
        return false;
    };
    match name {
        QueueAttributeName::Policy | QueueAttributeName::RedrivePolicy => {
            match (
                serde_json::from_str::<serde_json::Value>(current),
                serde_json::from_str::<serde_json::Value>(wanted),
            ) {
                (Ok(current), Ok(wanted)) => same_json(&current, &wanted),
                _ => current == wanted,
            }
        }
        _ => current == wanted,
    }
}

/// JSON equality that takes numbers written as strings (`"5"`, as SQS answers
/// `maxReceiveCount`) for the numbers they spell.
fn same_json(left: &serde_json::Value, right: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .all(|(key, value)| right.get(key).is_some_and(|other| same_json(value, other)))
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(a, b)| same_json(a, b))
        }
        (Value::String(text), Value::Number(number))
        | (Value::Number(number), Value::String(text)) => text == &number.to_string(),
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_queues_follow_the_queue_kind() {
        let standard = QueueNames::of("claims").unwrap();
        assert_eq!(
            (standard.dead_letter.as_str(), standard.fifo),
            ("claims-dlq", false)
        );
        let fifo = QueueNames::of("claims.fifo").unwrap();
        assert_eq!(
            (fifo.dead_letter.as_str(), fifo.fifo),
            ("claims-dlq.fifo", true)
        );
        assert!(matches!(
            QueueNames::of("bad name"),
            Err(TransportError::InvalidName { .. })
        ));
        assert!(QueueNames::of(&"q".repeat(78)).is_err());
    }

    #[test]
    fn json_attributes_compare_by_meaning() {
        let wanted = r#"{"deadLetterTargetArn":"arn:dlq","maxReceiveCount":5}"#;
        let answered = r#"{"maxReceiveCount":"5", "deadLetterTargetArn":"arn:dlq"}"#;
        assert!(same_attribute(
            &QueueAttributeName::RedrivePolicy,
            Some(&answered.to_owned()),
            wanted
        ));
        assert!(!same_attribute(
            &QueueAttributeName::RedrivePolicy,
            None,
            wanted
        ));
        assert!(!same_attribute(
            &QueueAttributeName::VisibilityTimeout,
            Some(&"30".to_owned()),
            "60"
        ));
    }
}
