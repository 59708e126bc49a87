//! Deletes of processed messages, gathered into `DeleteMessageBatch` calls of up to 10,
//! flushed when full, after a short interval, and when the consumer stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::{self, MAX_BATCH};
use super::run::Shared;

/// Attempts of one batch when the call itself fails (not single entries).
const ATTEMPTS: u32 = 3;

/// The sending side of the deleter: processed messages' receipt handles go in here.
#[derive(Debug, Clone)]
pub(crate) struct Deletes {
    sender: mpsc::UnboundedSender<String>,
}

impl Deletes {
    /// Queues the delete of a processed message.
    pub(crate) fn delete(&self, receipt_handle: String) {
        if self.sender.send(receipt_handle).is_err() {
            // Only after the deleter stopped, which happens once every task is done.
            tracing::error!(
                "a delete was queued after the deleter stopped; the message will be redelivered"
            );
        }
    }
}

/// Starts the deleter; it ends, after a last flush, when every [`Deletes`] is dropped.
pub(crate) fn start(shared: Arc<Shared>) -> (Deletes, JoinHandle<()>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let task = tokio::spawn(run(shared, receiver));
    (Deletes { sender }, task)
}

async fn run(shared: Arc<Shared>, mut receiver: mpsc::UnboundedReceiver<String>) {
    let interval = shared.config.delete_flush_interval;
    let mut batch: Vec<String> = Vec::with_capacity(MAX_BATCH);
    let mut deadline: Option<Instant> = None;
    loop {
        let received = match deadline {
            Some(at) => tokio::select! {
                handle = receiver.recv() => Some(handle),
                () = tokio::time::sleep_until(at) => None,
            },
            None => Some(receiver.recv().await),
        };
        match received {
            Some(Some(handle)) => {
                if batch.is_empty() {
                    deadline = Some(Instant::now() + interval);
                }
                batch.push(handle);
                if batch.len() == MAX_BATCH {
                    flush(&shared, &mut batch).await;
                    deadline = None;
                }
            }
            // The interval elapsed.
            None => {
                flush(&shared, &mut batch).await;
                deadline = None;
            }
            // Every sender is gone: the consumer is stopping.
            Some(None) => {
                flush(&shared, &mut batch).await;
                return;
            }
        }
    }
}

async fn flush(shared: &Shared, batch: &mut Vec<String>) {
    if batch.is_empty() {
        return;
    }
    let handles = std::mem::take(batch);
    let queue_url = &shared.config.queue_url;
    for attempt in 1..=ATTEMPTS {
        match api::delete_batch(&shared.client, queue_url, &handles).await {
            Ok(failures) => {
                for (handle, reason) in &failures {
                    tracing::warn!(
                        queue = %shared.queue_name,
                        receipt_handle = %handle,
                        %reason,
                        "SQS refused to delete a processed message; it will be redelivered"
                    );
                }
                shared
                    .counters
                    .delete_failures(&shared.queue_name, failures.len());
                return;
            }
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(queue = %shared.queue_name, %error, attempt, "DeleteMessageBatch failed; trying again");
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Err(error) => {
                tracing::error!(
                    queue = %shared.queue_name,
                    %error,
                    messages = handles.len(),
                    "DeleteMessageBatch failed; the processed messages will be redelivered"
                );
                shared
                    .counters
                    .delete_failures(&shared.queue_name, handles.len());
            }
        }
    }
}
