//! The visibility heartbeat: while the consumer holds a message (its handler runs, or it
//! waits in its FIFO group), its visibility timeout is extended every `heartbeat_every`.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api;
use super::run::Shared;

/// The heartbeat of one held message. [`stop`](Self::stop) it before settling the
/// message, so that no extension races the settling call; dropping it aborts it.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts extending the visibility of the message with `receipt_handle`, received now.
    pub(crate) fn start(shared: Arc<Shared>, receipt_handle: String, message_id: String) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(beat(shared, receipt_handle, message_id, stop.clone()));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops the heartbeat and waits for an extension in flight to finish.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // A heartbeat task only ends by returning; a panic in it is nothing to settle.
            let _ = task.await;
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn beat(
    shared: Arc<Shared>,
    receipt_handle: String,
    message_id: String,
    stop: CancellationToken,
) {
    let every = shared.config.heartbeat_every;
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(next) => {}
        }
        // Not inside the select: a stop waits for this call rather than racing it.
        let result = api::change_visibility(
            &shared.client,
            &shared.config.queue_url,
            &receipt_handle,
            shared.config.visibility_timeout,
        )
        .await;
        match result {
            Ok(()) => {
                shared.counters.visibility_extended(&shared.queue_name);
                tracing::debug!(queue = %shared.queue_name, %message_id, "visibility extended");
            }
            Err(error) => tracing::warn!(
                queue = %shared.queue_name,
                %message_id,
                %error,
                "cannot extend the visibility of a held message; it may be redelivered"
            ),
        }
        next = Instant::now() + every;
    }
}
