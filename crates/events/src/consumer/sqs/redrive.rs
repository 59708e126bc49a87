//! What an operator does with an SQS dead-letter queue: read its depth
//! ([`dead_letter_depth`], the `dovetail_consumer_dead_letters` gauge) and move its
//! messages back to the queue they came from ([`redrive_dead_letters`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::api::MAX_BATCH;
use super::dead_letter::{REASON_ATTRIBUTE, SOURCE_ATTRIBUTE};

/// How long a message taken from the dead-letter queue stays hidden while it is sent back:
/// should the redrive stop half-way, the message is visible in the dead-letter queue again
/// after this, never lost.
const HIDDEN_WHILE_MOVED: Duration = Duration::from_secs(30);

/// Why reading or redriving a dead-letter queue failed.
///
/// # Example
/// ```
/// use dovetail_events::consumer::sqs::DeadLetterError;
///
/// let error = DeadLetterError::Sqs {
///     operation: "reading the depth of",
///     queue: "claims-dlq".into(),
///     source: "connection refused".into(),
/// };
/// assert_eq!(error.to_string(), "SQS failed reading the depth of the queue claims-dlq");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeadLetterError {
    /// An SQS call failed; the source is what the SDK said.
    ///
    /// ### Handling
    /// Check the queue URL, the region and the permissions (`sqs:GetQueueAttributes`,
    /// `sqs:ReceiveMessage`, `sqs:SendMessage`, `sqs:DeleteMessage`), then run it again:
    /// a redrive moves each message at most once (sent, then deleted), and a message it
    /// could not send stays in the dead-letter queue.
    #[error("SQS failed {operation} the queue {queue}")]
    Sqs {
        /// What was being done, such as `receiving from`.
        operation: &'static str,
        /// The queue's URL or name.
        queue: String,
        /// What SQS answered.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl DeadLetterError {
    fn sqs<E: std::error::Error + 'static>(
        operation: &'static str,
        queue: &str,
    ) -> impl FnOnce(E) -> Self {
        let queue = queue.to_owned();
        move |error| Self::Sqs {
            operation,
            queue,
            source: DisplayErrorContext(error).to_string().into(),
        }
    }
}

/// The messages waiting in the dead-letter queue at `dead_letter_queue_url`
/// (`ApproximateNumberOfMessages`: visible ones, so a redrive in progress hides those it is
/// moving).
///
/// # Errors
/// [`DeadLetterError::Sqs`] when SQS cannot answer.
///
/// # Example
/// ```no_run
/// # async fn example(client: aws_sdk_sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let depth = dovetail_events::consumer::sqs::dead_letter_depth(
///     &client,
///     "https://sqs.eu-west-1.amazonaws.com/123456789012/claims-dlq",
/// )
/// .await?;
/// println!("{depth} messages to look at");
/// # Ok(())
/// # }
/// ```
pub async fn dead_letter_depth(
    client: &Client,
    dead_letter_queue_url: &str,
) -> Result<u64, DeadLetterError> {
    let output = client
        .get_queue_attributes()
        .queue_url(dead_letter_queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(DeadLetterError::sqs(
            "reading the depth of",
            dead_letter_queue_url,
        ))?;
    let depth = output
        .attributes
        .as_ref()
        .and_then(|attributes| attributes.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(depth)
}

/// Moves the messages of the dead-letter queue at `dead_letter_queue_url` back to the
/// queue at `source_queue_url`, and answers how many it moved.
///
/// Each message is sent with its body and message attributes as they were (less the
/// `dovetail-dlq-reason` and `dovetail-dlq-source` the consumer added when it
/// dead-lettered it; on a FIFO queue with its message group), and deleted from the
/// dead-letter queue only once the send succeeded. It moves at most the depth it found
/// when it started, so messages that fail again and come back meanwhile wait for the next
/// redrive instead of looping.
///
/// # Errors
/// [`DeadLetterError::Sqs`] when SQS refuses a call; what was moved before stays moved,
/// the rest stays in the dead-letter queue, so running it again is safe.
///
/// # Example
/// ```no_run
/// # async fn example(client: aws_sdk_sqs::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let moved = dovetail_events::consumer::sqs::redrive_dead_letters(
///     &client,
///     "https://sqs.eu-west-1.amazonaws.com/123456789012/claims-dlq",
///     "https://sqs.eu-west-1.amazonaws.com/123456789012/claims",
/// )
/// .await?;
/// println!("{moved} messages back in the queue");
/// # Ok(())
/// # }
/// ```
pub async fn redrive_dead_letters(
    client: &Client,
    dead_letter_queue_url: &str,
    source_queue_url: &str,
) -> Result<u64, DeadLetterError> {
    let budget = dead_letter_depth(client, dead_letter_queue_url).await?;
    let mut moved = 0;
    while moved < budget {
        let max = i32::try_from((budget - moved).min(MAX_BATCH as u64)).unwrap_or(1);
        let messages = client
            .receive_message()
            .queue_url(dead_letter_queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(1)
            .visibility_timeout(i32::try_from(HIDDEN_WHILE_MOVED.as_secs()).unwrap_or(30))
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(DeadLetterError::sqs(
                "receiving from",
                dead_letter_queue_url,
            ))?
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let sent = send_back(client, source_queue_url, &messages).await?;
        delete(client, dead_letter_queue_url, &messages, &sent).await?;
        moved += sent.len() as u64;
        if sent.len() < messages.len() {
            // SQS refused some entries: they stay in the dead-letter queue; stop rather
            // than receive them again before their visibility lapses.
            tracing::warn!(
                queue = dead_letter_queue_url,
                refused = messages.len() - sent.len(),
                "some dead letters could not be sent back; they stay in the dead-letter queue"
            );
            break;
        }
    }
    Ok(moved)
}

/// Sends `messages` to `queue_url` in one batch; answers the indexes SQS accepted.
async fn send_back(
    client: &Client,
    queue_url: &str,
    messages: &[Message],
) -> Result<Vec<usize>, DeadLetterError> {
    let fifo = queue_url.ends_with(".fifo");
    let entries = messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let attributes: HashMap<_, _> = message
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| name != REASON_ATTRIBUTE && name != SOURCE_ATTRIBUTE)
                .collect();
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(message.body.clone().unwrap_or_default())
                .set_message_attributes((!attributes.is_empty()).then_some(attributes));
            if fifo {
                let group = message
                    .attributes
                    .as_ref()
                    .and_then(|system| system.get(&MessageSystemAttributeName::MessageGroupId))
                    .cloned()
                    .unwrap_or_else(|| "redriven".to_owned());
                // The dead letter's own id: a message redriven twice is not deduplicated.
                entry = entry
                    .message_group_id(group)
                    .set_message_deduplication_id(message.message_id.clone());
            }
            entry
                .build()
                .map_err(DeadLetterError::sqs("preparing a message for", queue_url))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let output = client
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(DeadLetterError::sqs(
            "sending dead letters back to",
            queue_url,
        ))?;
    Ok(output
        .successful
        .iter()
        .filter_map(|entry| entry.id.parse::<usize>().ok())
        .collect())
}

/// Deletes the messages at `sent` (indexes into `messages`) from the dead-letter queue.
async fn delete(
    client: &Client,
    dead_letter_queue_url: &str,
    messages: &[Message],
    sent: &[usize],
) -> Result<(), DeadLetterError> {
    let entries = sent
        .iter()
        .filter_map(|&index| {
            let handle = messages.get(index)?.receipt_handle.clone()?;
            Some(
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(DeadLetterError::sqs(
                        "preparing a delete from",
                        dead_letter_queue_url,
                    )),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Ok(());
    }
    let output = client
        .delete_message_batch()
        .queue_url(dead_letter_queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(DeadLetterError::sqs(
            "deleting redriven messages from",
            dead_letter_queue_url,
        ))?;
    if let Some(failed) = output.failed.first() {
        // Sent but still in the dead-letter queue: it would be delivered twice, which the
        // handlers' idempotency absorbs; say so rather than hide it.
        tracing::warn!(
            queue = dead_letter_queue_url,
            failed = output.failed.len(),
            code = %failed.code,
            "redriven messages could not be deleted from the dead-letter queue; they will be redriven again"
        );
    }
    Ok(())
}
