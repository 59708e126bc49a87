//! Every SQS call the consumer makes, in one place.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};

use super::config::whole_seconds;
use super::dead_letter::{self, Value};
use super::message::Received;

/// The most entries of one batch request.
pub(crate) const MAX_BATCH: usize = 10;

/// A failed SQS call, as text for logs and reasons (the SDK error stays inside this module).
pub(crate) type CallError = String;

fn describe<E: std::error::Error + 'static>(error: &E) -> CallError {
    DisplayErrorContext(error).to_string()
}

/// Why a receive failed.
#[derive(Debug)]
pub(crate) enum ReceiveFailure {
    /// The queue cannot be consumed (missing, invalid address, not allowed).
    Fatal(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Worth trying again (network, throttling, a server error).
    Transient(CallError),
}

/// One long poll for up to `max` messages, asking for every attribute.
pub(crate) async fn receive(
    client: &Client,
    queue_url: &str,
    max: usize,
    wait_time: Duration,
    visibility_timeout: Duration,
) -> Result<Vec<Message>, ReceiveFailure> {
    let max = i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(1);
    let result = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .wait_time_seconds(whole_seconds(wait_time))
        .visibility_timeout(whole_seconds(visibility_timeout))
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await;
    match result {
        Ok(output) => Ok(output.messages.unwrap_or_default()),
        Err(error) => Err(classify(error)),
    }
}

fn classify(error: SdkError<ReceiveMessageError>) -> ReceiveFailure {
    let fatal = matches!(
        error.as_service_error(),
        Some(
            ReceiveMessageError::QueueDoesNotExist(_)
                | ReceiveMessageError::InvalidAddress(_)
                | ReceiveMessageError::InvalidSecurity(_)
                | ReceiveMessageError::UnsupportedOperation(_)
        )
    ) || error
        .as_service_error()
        .and_then(aws_sdk_sqs::error::ProvideErrorMetadata::code)
        .is_some_and(|code| {
            matches!(
                code,
                "AWS.SimpleQueueService.NonExistentQueue" | "AccessDenied" | "InvalidClientTokenId"
            )
        });
    if fatal {
        ReceiveFailure::Fatal(Box::new(error.into_service_error()))
    } else {
        ReceiveFailure::Transient(describe(&error))
    }
}

/// Makes a received message visible again after `after` (0: at once).
pub(crate) async fn change_visibility(
    client: &Client,
    queue_url: &str,
    receipt_handle: &str,
    after: Duration,
) -> Result<(), CallError> {
    client
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .visibility_timeout(whole_seconds(after))
        .send()
        .await
        .map(|_| ())
        .map_err(|error| describe(&error))
}

/// The receipt handles a `DeleteMessageBatch` could not delete, with SQS's reason.
pub(crate) async fn delete_batch(
    client: &Client,
    queue_url: &str,
    receipt_handles: &[String],
) -> Result<Vec<(String, String)>, CallError> {
    let entries = receipt_handles
        .iter()
        .enumerate()
        .map(|(index, handle)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .receipt_handle(handle)
                .build()
                .map_err(|error| describe(&error))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .delete_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|error| describe(&error))?;
    Ok(output
        .failed
        .iter()
        .map(|failure| {
            let handle = failure
                .id
                .parse::<usize>()
                .ok()
                .and_then(|index| receipt_handles.get(index))
                .cloned()
                .unwrap_or_else(|| failure.id.clone());
            let reason = format!(
                "{}{}",
                failure.code,
                failure
                    .message
                    .as_deref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            );
            (handle, reason)
        })
        .collect())
}

/// Sends a copy of `message` to the dead-letter queue with `reason`.
pub(crate) async fn send_dead_letter(
    client: &Client,
    dead_letter_queue_url: &str,
    message: &Received,
    reason: &str,
    source_queue: &str,
) -> Result<(), CallError> {
    let attributes = dead_letter::attributes(message.attributes.clone(), reason, source_queue)
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Original(original) => Ok(original),
                Value::Text(text) => MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(text)
                    .build()
                    .map_err(|error| describe(&error)),
            };
            value.map(|value| (name, value))
        })
        .collect::<Result<HashMap<_, _>, _>>()?;
    let mut request = client
        .send_message()
        .queue_url(dead_letter_queue_url)
        .message_body(&message.body)
        .set_message_attributes(Some(attributes));
    if dead_letter_queue_url.ends_with(".fifo") {
        let group = message
            .group_id
            .clone()
            .unwrap_or_else(|| source_queue.to_owned());
        request = request
            .message_group_id(group)
            .message_deduplication_id(&message.message_id);
    }
    request
        .send()
        .await
        .map(|_| ())
        .map_err(|error| describe(&error))
}
