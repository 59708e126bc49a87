//! [`SnsPublisher`]: publishes envelopes to an SNS topic with PublishBatch (feature `sns`).
//!
//! The message body is the envelope's JSON; the message attributes are the envelope's
//! [`MessageAttributes`](crate::envelope::MessageAttributes) (event type, schema version,
//! source, aggregate type, trace parent), so subscriptions can filter without reading the
//! body. On a FIFO topic (ARN ending in `.fifo`) the message group id is the aggregate id
//! and the deduplication id is the event id, so SNS orders each aggregate and drops a
//! republished event within its five-minute deduplication window.

use aws_sdk_sns::Client;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use sha2::{Digest, Sha256};

use super::rounds::publish_in_rounds;
use super::{PublishError, PublishResult, Publisher};
use crate::envelope::{Envelope, TransportLimit, check_size};

/// SNS accepts at most this many messages per PublishBatch.
const MAX_BATCH: usize = 10;
/// SNS allows at most this many characters in a message group id.
const MAX_GROUP_ID_LEN: usize = 128;

/// Where [`SnsPublisher`] publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsPublisherConfig {
    /// The topic's ARN. A name ending in `.fifo` makes it a FIFO topic.
    pub topic_arn: String,
}

/// A [`Publisher`] to one SNS topic.
///
/// # Example
/// ```no_run
/// use dovetail_events::publish::{Publisher, SnsPublisher, SnsPublisherConfig};
/// # async fn example(client: aws_sdk_sns::Client, envelopes: Vec<dovetail_events::envelope::Envelope>) {
/// let publisher = SnsPublisher::new(
///     client,
///     SnsPublisherConfig { topic_arn: "arn:aws:sns:eu-west-1:123456789012:policy-events".into() },
/// );
/// for (envelope, result) in envelopes.iter().zip(publisher.publish_batch(&envelopes).await) {
///     if let Err(error) = result {
///         eprintln!("{} not published: {error}", envelope.id());
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: Client,
    config: SnsPublisherConfig,
    fifo: bool,
}

impl SnsPublisher {
    /// A publisher to `config.topic_arn` through `client`.
    pub fn new(client: Client, config: SnsPublisherConfig) -> Self {
        let fifo = config.topic_arn.ends_with(".fifo");
        Self {
            client,
            config,
            fifo,
        }
    }

    /// Whether the topic is a FIFO topic.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    async fn send_round(&self, round: Vec<&Envelope>) -> Vec<PublishResult> {
        let mut results = Vec::with_capacity(round.len());
        for chunk in round.chunks(MAX_BATCH) {
            results.extend(self.send_chunk(chunk).await);
        }
        results
    }

    /// One PublishBatch call for up to ten envelopes; oversized ones are refused first.
    async fn send_chunk(&self, chunk: &[&Envelope]) -> Vec<PublishResult> {
        let mut results: Vec<Option<PublishResult>> = chunk.iter().map(|_| None).collect();
        let mut entries = Vec::with_capacity(chunk.len());
        for (index, envelope) in chunk.iter().enumerate() {
            if let Err(too_large) = check_size(envelope, TransportLimit::SNS) {
                results[index] = Some(Err(PublishError::TooLarge(too_large)));
                continue;
            }
            match self.entry(index, envelope) {
                Ok(entry) => entries.push(entry),
                Err(error) => results[index] = Some(Err(error)),
            }
        }
        if !entries.is_empty() {
            let response = self
                .client
                .publish_batch()
                .topic_arn(&self.config.topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await;
            match response {
                Ok(output) => {
                    for ok in output.successful() {
                        if let Some(slot) = slot_of(&mut results, ok.id()) {
                            *slot = Some(Ok(()));
                        }
                    }
                    for failed in output.failed() {
                        let Some(slot) = slot_of(&mut results, Some(failed.id())) else {
                            continue;
                        };
                        let Some(index) = failed.id().parse::<usize>().ok() else {
                            continue;
                        };
                        let message = failed.message().unwrap_or_default().to_owned();
                        *slot = Some(Err(if failed.sender_fault() {
                            PublishError::Rejected {
                                event_id: chunk[index].id(),
                                code: failed.code().to_owned(),
                                message,
                            }
                        } else {
                            PublishError::Unavailable {
                                reason: format!("{}: {message}", failed.code()),
                            }
                        }));
                    }
                }
                Err(error) => {
                    for (index, slot) in results.iter_mut().enumerate() {
                        if slot.is_none() {
                            *slot = Some(Err(call_error(&error, chunk[index])));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(PublishError::Unavailable {
                        reason: "SNS did not report this message in its batch response".to_owned(),
                    })
                })
            })
            .collect()
    }

    fn entry(
        &self,
        index: usize,
        envelope: &Envelope,
    ) -> Result<PublishBatchRequestEntry, PublishError> {
        let body = String::from_utf8(envelope.to_json_bytes()).map_err(|error| {
            PublishError::Rejected {
                event_id: envelope.id(),
                code: "InvalidBody".to_owned(),
                message: format!("the envelope's JSON is not UTF-8: {error}"),
            }
        })?;
        let mut entry = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(body);
        for (name, value) in envelope.message_attributes().iter() {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|error| PublishError::Rejected {
                    event_id: envelope.id(),
                    code: "InvalidAttribute".to_owned(),
                    message: error.to_string(),
                })?;
            entry = entry.message_attributes(name, attribute);
        }
        if self.fifo {
            entry = entry
                .message_group_id(group_id(envelope.aggregate_id().as_str()))
                .message_deduplication_id(envelope.id().to_string());
        }
        entry.build().map_err(|error| PublishError::Rejected {
            event_id: envelope.id(),
            code: "InvalidEntry".to_owned(),
            message: error.to_string(),
        })
    }
}

impl Publisher for SnsPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        publish_in_rounds(envelopes, |round| self.send_round(round)).await
    }
}

fn slot_of<'a>(
    results: &'a mut [Option<PublishResult>],
    id: Option<&str>,
) -> Option<&'a mut Option<PublishResult>> {
    let index = id?.parse::<usize>().ok()?;
    results.get_mut(index)
}

/// The FIFO message group of an aggregate: its id when SNS accepts it as a group id,
/// otherwise the SHA-256 of it in hex (64 characters), which keeps one group per aggregate.
fn group_id(aggregate_id: &str) -> String {
    let acceptable = aggregate_id.len() <= MAX_GROUP_ID_LEN
        && aggregate_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation());
    if acceptable {
        aggregate_id.to_owned()
    } else {
        Sha256::digest(aggregate_id.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// Classifies a failed PublishBatch call: a client fault (bad request, missing topic, no
/// permission) refuses every message; anything else (network, throttling, 5xx) is retriable.
fn call_error<E, R>(error: &SdkError<E, R>, envelope: &Envelope) -> PublishError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let reason = crate::error_chain(error);
    let SdkError::ServiceError(service) = error else {
        return PublishError::Unavailable { reason };
    };
    let code = service.err().code().unwrap_or("Unknown").to_owned();
    let throttled = code.contains("Throttl") || code.contains("LimitExceeded");
    let server_side = code.contains("InternalError") || code.contains("Unavailable");
    if throttled || server_side {
        PublishError::Unavailable { reason }
    } else {
        PublishError::Rejected {
            event_id: envelope.id(),
            code,
            message: service.err().message().unwrap_or_default().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::group_id;

    #[test]
    fn group_ids_are_the_aggregate_id_when_sns_accepts_it() {
        assert_eq!(group_id("pol-42"), "pol-42");
        let long = "x".repeat(200);
        assert_eq!(group_id(&long).len(), 64);
        assert_eq!(group_id(&long), group_id(&long), "stable per aggregate");
        assert_eq!(group_id("naïve").len(), 64, "non-ASCII is hashed");
    }
}
