//! The consumer's loop: receive as many messages as there are free handler slots, hand
//! each to the handler (FIFO groups one at a time), settle it, and drain on shutdown.

use std::any::Any;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::Instrument as _;

use super::ConsumerError;
use super::api::{self, MAX_BATCH, ReceiveFailure};
use super::config::SqsConsumerConfig;
use super::deleter::{self, Deletes};
use super::heartbeat::Heartbeat;
use super::message::Received;
use crate::consumer::counters::{Counters, Outcome};
use crate::consumer::sequencing::{GroupSequencer, Pushed};
use crate::consumer::{ConsumerReport, Delivery, HandlerError};

/// The longest pause between receives after transient failures.
const MAX_RECEIVE_PAUSE: Duration = Duration::from_secs(20);
/// How long the last deletes may take once the consumer stops.
const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than its wait time a long poll in flight at shutdown is waited for.
const LATE_RECEIVE_MARGIN: Duration = Duration::from_secs(5);

/// What every task of one consumer shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: SqsConsumerConfig,
    pub(crate) queue_name: String,
    pub(crate) counters: Counters,
    sequencer: Mutex<GroupSequencer<Held>>,
    draining: CancellationToken,
}

/// What a message task needs besides the handler: the shared state and the deleter.
#[derive(Debug, Clone)]
struct Context {
    shared: Arc<Shared>,
    deletes: Deletes,
}

/// A message the consumer holds until it is settled.
#[derive(Debug)]
struct Held {
    received: Received,
    heartbeat: Heartbeat,
    /// Counts against the most messages held at once.
    _slot: Option<OwnedSemaphorePermit>,
}

/// What the handler's answer means for the message.
enum Verdict {
    Handled,
    Retry(String),
    DeadLetter(String),
}

/// Whether a FIFO group may go on with its next message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The message is gone from the group (handled or dead-lettered).
    Continue,
    /// The message will be redelivered: the rest of the group must wait for it.
    HoldGroup,
}

pub(crate) async fn run<S, F>(
    client: Client,
    config: SqsConsumerConfig,
    handler: S,
    shutdown: F,
) -> Result<ConsumerReport, ConsumerError>
where
    S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    F: Future,
{
    if let Some(reason) = config.problem() {
        return Err(ConsumerError::InvalidConfig { reason });
    }
    let max_in_flight = config.max_in_flight;
    let shared = Arc::new(Shared {
        client,
        queue_name: config.queue_name().to_owned(),
        config,
        counters: Counters::default(),
        sequencer: Mutex::new(GroupSequencer::default()),
        draining: CancellationToken::new(),
    });
    let (deletes, deleter) = deleter::start(Arc::clone(&shared));
    let context = Context {
        shared: Arc::clone(&shared),
        deletes,
    };
    let running = Arc::new(Semaphore::new(max_in_flight));
    let holding = Arc::new(Semaphore::new(max_in_flight + MAX_BATCH));
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut failure = None;
    let mut receive_failures: u32 = 0;
    tracing::info!(queue = %shared.queue_name, max_in_flight, fifo = shared.config.is_fifo(), "consumer started");

    loop {
        while let Some(joined) = tasks.try_join_next() {
            log_task_end(&shared, joined);
        }
        let permits = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            permits = reserve(&running, &holding) => permits,
        };
        let mut receive = pin!(api::receive(
            &shared.client,
            &shared.config.queue_url,
            permits.len(),
            shared.config.wait_time,
            shared.config.visibility_timeout,
        ));
        let received = tokio::select! {
            biased;
            _ = &mut shutdown => {
                put_back_late_messages(&shared, receive).await;
                break;
            }
            received = &mut receive => received,
        };
        match received {
            Ok(messages) => {
                receive_failures = 0;
                dispatch(&context, &handler, messages, permits, &mut tasks);
            }
            Err(ReceiveFailure::Fatal(source)) => {
                tracing::error!(queue = %shared.queue_name, error = %source, "the queue cannot be consumed; stopping");
                failure = Some(source);
                break;
            }
            Err(ReceiveFailure::Transient(error)) => {
                drop(permits);
                receive_failures = receive_failures.saturating_add(1);
                let pause = receive_pause(receive_failures);
                tracing::warn!(queue = %shared.queue_name, %error, ?pause, "receive failed; trying again");
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    drain(&shared, &mut tasks).await;
    // The last sender of deletes goes with the context: the deleter flushes and ends.
    drop(context);
    if tokio::time::timeout(FINAL_FLUSH_TIMEOUT, deleter)
        .await
        .is_err()
    {
        tracing::error!(queue = %shared.queue_name, "the last deletes did not finish; those messages will be redelivered");
    }
    let report = shared.counters.report();
    tracing::info!(queue = %shared.queue_name, ?report, "consumer stopped");
    match failure {
        None => Ok(report),
        Some(source) => Err(ConsumerError::QueueUnavailable {
            queue: shared.config.queue_url.clone(),
            source,
        }),
    }
}

/// Stop starting work, wait for running handlers up to the drain timeout, then abandon the
/// rest.
async fn drain(shared: &Shared, tasks: &mut JoinSet<()>) {
    shared.draining.cancel();
    let in_flight = tasks.len();
    tracing::info!(queue = %shared.queue_name, in_flight, "draining");
    let finished = tokio::time::timeout(shared.config.drain_timeout, async {
        while let Some(joined) = tasks.join_next().await {
            log_task_end(shared, joined);
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            queue = %shared.queue_name,
            still_running = tasks.len(),
            "drain timed out; abandoning the running handlers (their messages will be redelivered)"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        // FIFO messages that waited behind an abandoned handler: dropping them stops their
        // heartbeats, so they come back after the visibility timeout like the rest.
        let waiting = std::mem::take(
            &mut *shared
                .sequencer
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        drop(waiting);
    }
}

fn log_task_end(shared: &Shared, joined: Result<(), JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        tracing::error!(queue = %shared.queue_name, panic = panic_text(&*error.into_panic()), "a message task panicked; its message will be redelivered");
    }
}

/// Waits for a free handler slot and a free holding slot, then takes as many more as are
/// free at once, up to one receive's worth: the receive asks for no more than can start.
async fn reserve(running: &Arc<Semaphore>, holding: &Arc<Semaphore>) -> Permits {
    let closed = "the consumer's semaphores are never closed";
    let first_run = Arc::clone(running).acquire_owned().await.expect(closed);
    let first_hold = Arc::clone(holding).acquire_owned().await.expect(closed);
    let mut permits = Permits {
        running: vec![first_run],
        holding: vec![first_hold],
    };
    while permits.holding.len() < MAX_BATCH {
        let Ok(permit) = Arc::clone(holding).try_acquire_owned() else {
            break;
        };
        permits.holding.push(permit);
    }
    while permits.running.len() < permits.holding.len() {
        let Ok(permit) = Arc::clone(running).try_acquire_owned() else {
            break;
        };
        permits.running.push(permit);
    }
    permits.holding.truncate(permits.running.len());
    permits
}

/// Slots reserved for one receive.
struct Permits {
    running: Vec<OwnedSemaphorePermit>,
    holding: Vec<OwnedSemaphorePermit>,
}

impl Permits {
    fn len(&self) -> usize {
        self.running.len()
    }
}

fn receive_pause(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    (Duration::from_millis(250) * (1 << doublings)).min(MAX_RECEIVE_PAUSE)
}

fn dispatch<S>(
    context: &Context,
    handler: &S,
    messages: Vec<Message>,
    mut permits: Permits,
    tasks: &mut JoinSet<()>,
) where
    S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = &context.shared;
    for message in messages {
        let Some(received) = Received::from_message(message) else {
            tracing::warn!(queue = %shared.queue_name, "SQS returned a message without a receipt handle; skipped");
            continue;
        };
        shared.counters.received();
        let heartbeat = Heartbeat::start(
            Arc::clone(shared),
            received.receipt_handle.clone(),
            received.message_id.clone(),
        );
        let held = Held {
            received,
            heartbeat,
            _slot: permits.holding.pop(),
        };
        if shared.config.is_fifo() {
            let group = held
                .received
                .group_id
                .clone()
                .unwrap_or_else(|| held.received.message_id.clone());
            let pushed = shared
                .sequencer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(&group, held);
            if let Pushed::Start(held) = pushed {
                let slot = permits.running.pop();
                tasks.spawn(group_worker(
                    context.clone(),
                    handler.clone(),
                    group,
                    held,
                    slot,
                ));
            }
        } else {
            let slot = permits.running.pop();
            let (context, handler) = (context.clone(), handler.clone());
            tasks.spawn(async move {
                let _slot = slot;
                process(&context, handler, held).await;
            });
        }
    }
}

/// Handles the messages of one FIFO group one at a time, in order, until the group has
/// nothing waiting, a message must be redelivered, or the consumer drains.
async fn group_worker<S>(
    context: Context,
    handler: S,
    group: String,
    first: Held,
    _slot: Option<OwnedSemaphorePermit>,
) where
    S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = &context.shared;
    let mut current = first;
    loop {
        let next = process(&context, handler.clone(), current).await;
        let go_on = next == Next::Continue && !shared.draining.is_cancelled();
        let waiting = {
            let mut sequencer = shared
                .sequencer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if go_on {
                match sequencer.next(&group) {
                    Some(held) => {
                        current = held;
                        continue;
                    }
                    None => return,
                }
            }
            sequencer.abandon(&group)
        };
        if !waiting.is_empty() {
            tracing::info!(
                queue = %shared.queue_name,
                %group,
                released = waiting.len(),
                "releasing the rest of the group so that it is redelivered in order"
            );
        }
        for held in waiting {
            release(shared, held).await;
        }
        return;
    }
}

/// Handles one message and settles it.
async fn process<S>(context: &Context, handler: S, held: Held) -> Next
where
    S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let shared = &context.shared;
    let Held {
        received,
        heartbeat,
        _slot,
    } = held;
    let span = tracing::info_span!(
        "dovetail.consume",
        message_id = %received.message_id,
        queue = %shared.queue_name,
        receive_count = received.receive_count,
        group_id = received.group_id.as_deref(),
    );
    async move {
        let verdict = match received.delivery(&shared.queue_name, shared.config.body_format) {
            Err(reason) => Verdict::DeadLetter(format!("undecodable: {reason}")),
            Ok(delivery) => {
                let started = Instant::now();
                let result = call(handler, delivery).await;
                let (verdict, outcome) = match result {
                    Ok(()) => (Verdict::Handled, Outcome::Handled),
                    Err(HandlerError::Retriable { reason }) => {
                        (Verdict::Retry(reason), Outcome::Retried)
                    }
                    Err(HandlerError::Rejected { reason }) => {
                        (Verdict::DeadLetter(reason), Outcome::DeadLettered)
                    }
                };
                shared
                    .counters
                    .handling_time(&shared.queue_name, outcome, started.elapsed());
                verdict
            }
        };
        heartbeat.stop().await;
        settle(context, &received, verdict).await
    }
    .instrument(span)
    .await
}

/// Calls the handler in a task of its own, so that a panic is a retriable failure.
async fn call<S>(mut handler: S, delivery: Delivery) -> Result<(), HandlerError>
where
    S: Service<Delivery, Response = (), Error = HandlerError> + Send + 'static,
    S::Future: Send + 'static,
{
    let task = tokio::spawn(
        async move {
            std::future::poll_fn(|cx| handler.poll_ready(cx)).await?;
            handler.call(delivery).await
        }
        .in_current_span(),
    );
    let mut task = AbortOnDrop(task);
    match (&mut task.0).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => Err(HandlerError::retriable(format!(
            "the handler panicked: {}",
            panic_text(&*error.into_panic())
        ))),
        Err(_) => Err(HandlerError::retriable("the handler was cancelled")),
    }
}

/// Aborts the handler's task when its message task is abandoned.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

async fn settle(context: &Context, received: &Received, verdict: Verdict) -> Next {
    let shared = &context.shared;
    let config = &shared.config;
    match verdict {
        Verdict::Handled => {
            context.deletes.delete(received.receipt_handle.clone());
            shared
                .counters
                .settled(&shared.queue_name, Outcome::Handled);
            tracing::debug!("handled");
            Next::Continue
        }
        Verdict::Retry(reason) => {
            let delay = config.retry_backoff.delay(received.receive_count);
            let changed = api::change_visibility(
                &shared.client,
                &config.queue_url,
                &received.receipt_handle,
                delay,
            )
            .await;
            if let Err(error) = changed {
                tracing::warn!(%error, "cannot set the retry backoff; the message is redelivered when its visibility times out");
            }
            shared
                .counters
                .settled(&shared.queue_name, Outcome::Retried);
            tracing::warn!(%reason, retry_in = ?delay, "the handler failed; the message will be redelivered");
            Next::HoldGroup
        }
        Verdict::DeadLetter(reason) => {
            if let Some(dead_letter_queue) = &config.dead_letter_queue_url {
                let sent = api::send_dead_letter(
                    &shared.client,
                    dead_letter_queue,
                    received,
                    &reason,
                    &shared.queue_name,
                )
                .await;
                match sent {
                    Ok(()) => {
                        context.deletes.delete(received.receipt_handle.clone());
                        shared
                            .counters
                            .settled(&shared.queue_name, Outcome::DeadLettered);
                        tracing::warn!(%reason, "sent to the dead-letter queue");
                        return Next::Continue;
                    }
                    Err(error) => tracing::error!(
                        %reason,
                        %error,
                        "cannot send to the dead-letter queue; leaving the message to the queue's redrive policy"
                    ),
                }
            } else {
                tracing::error!(
                    %reason,
                    "the message cannot be processed and no dead-letter queue is configured; \
                     leaving it to the queue's redrive policy"
                );
            }
            let hold = config.retry_backoff.max;
            if let Err(error) = api::change_visibility(
                &shared.client,
                &config.queue_url,
                &received.receipt_handle,
                hold,
            )
            .await
            {
                tracing::warn!(%error, "cannot hold the failed message back; it is redelivered when its visibility times out");
            }
            shared.counters.settled(&shared.queue_name, Outcome::Failed);
            Next::HoldGroup
        }
    }
}

/// Finishes the long poll in flight when the consumer stops, and makes what it brings
/// visible again, unhandled.
///
/// A long poll cannot be called off: SQS hands what arrives before its wait ends to that
/// request even once nobody listens (the connection closing does not stop it), and those
/// messages would stay invisible for a whole visibility timeout. So the poll is waited for,
/// at most its wait time and a margin.
async fn put_back_late_messages(
    shared: &Shared,
    receive: impl Future<Output = Result<Vec<Message>, ReceiveFailure>>,
) {
    let finished =
        tokio::time::timeout(shared.config.wait_time + LATE_RECEIVE_MARGIN, receive).await;
    let Ok(Ok(messages)) = finished else {
        return;
    };
    for message in messages {
        let Some(receipt_handle) = message.receipt_handle() else {
            continue;
        };
        shared.counters.received();
        let released = api::change_visibility(
            &shared.client,
            &shared.config.queue_url,
            receipt_handle,
            Duration::ZERO,
        )
        .await;
        if let Err(error) = released {
            tracing::warn!(
                queue = %shared.queue_name,
                message_id = message.message_id().unwrap_or_default(),
                %error,
                "cannot put back a message received while stopping; it is redelivered when its visibility times out"
            );
        }
        shared
            .counters
            .settled(&shared.queue_name, Outcome::Released);
    }
}

/// Makes a held FIFO message visible again, unhandled, so that its group is redelivered in
/// order.
async fn release(shared: &Shared, held: Held) {
    held.heartbeat.stop().await;
    let released = api::change_visibility(
        &shared.client,
        &shared.config.queue_url,
        &held.received.receipt_handle,
        Duration::ZERO,
    )
    .await;
    if let Err(error) = released {
        tracing::warn!(
            queue = %shared.queue_name,
            message_id = %held.received.message_id,
            %error,
            "cannot release a message; it is redelivered when its visibility times out"
        );
    }
    shared
        .counters
        .settled(&shared.queue_name, Outcome::Released);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_pauses_grow_and_stop_at_twenty_seconds() {
        assert_eq!(receive_pause(1), Duration::from_millis(250));
        assert_eq!(receive_pause(3), Duration::from_secs(1));
        assert_eq!(receive_pause(100), MAX_RECEIVE_PAUSE);
    }

    #[test]
    fn panic_payloads_become_text() {
        assert_eq!(panic_text(&"boom"), "boom");
        assert_eq!(panic_text(&String::from("bang")), "bang");
        assert_eq!(panic_text(&42), "(no message)");
    }
}
