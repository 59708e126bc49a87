//! [`BusConsumer`]: runs a handler over a subscription of the embedded bus, with the same
//! contract as the SQS consumer (a `tower::Service<Delivery>` that answers `Ok` or a
//! [`HandlerError`]).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::EmbeddedBus;
use super::catch_panic::CatchPanic;
use super::store::{Receipt, Received, Settle};
use crate::consumer::{ConsumerReport, Counters, Delivery, HandlerError, Outcome, RetryBackoff};

/// How a [`BusConsumer`] runs.
#[derive(Debug, Clone)]
pub struct BusConsumerConfig {
    /// The subscription to consume.
    pub subscription: String,
    /// Handlers running at once, at most.
    pub max_in_flight: usize,
    /// How long a received message stays hidden from other consumers.
    pub visibility_timeout: Duration,
    /// How often a running handler's message has its visibility extended; keep it well
    /// under `visibility_timeout`.
    pub heartbeat_every: Duration,
    /// Delay before a retriable failure is redelivered, from the receive count.
    pub backoff: RetryBackoff,
    /// How often an idle consumer looks for messages when no publish woke it.
    pub poll_interval: Duration,
    /// How long a shutdown waits for running handlers before abandoning them (their
    /// messages are redelivered after the visibility timeout).
    pub drain_timeout: Duration,
}

impl BusConsumerConfig {
    /// Defaults for `subscription`: 16 in flight, 30 s visibility with a heartbeat every
    /// 10 s, the default backoff, a 1 s polling fallback, a 30 s drain.
    pub fn new(subscription: impl Into<String>) -> Self {
        Self {
            subscription: subscription.into(),
            max_in_flight: 16,
            visibility_timeout: Duration::from_secs(30),
            heartbeat_every: Duration::from_secs(10),
            backoff: RetryBackoff::default(),
            poll_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Consumes one subscription of an [`EmbeddedBus`].
///
/// Messages of one aggregate reach the handler one at a time, in order; different
/// aggregates run in parallel up to `max_in_flight`. `Ok` deletes the message; a
/// retriable error hides it for the backoff and redelivers it; a rejection (or too many
/// receives) moves it to the subscription's dead letters with the reason.
///
/// # Example
/// ```no_run
/// use dovetail_events::bus::{BusConsumer, BusConsumerConfig, EmbeddedBus};
/// use dovetail_events::consumer::{Delivery, HandlerError};
///
/// # async fn example(bus: EmbeddedBus) -> Result<(), Box<dyn std::error::Error>> {
/// let handler = tower::service_fn(|delivery: Delivery| async move {
///     println!("{}", delivery.body);
///     Ok::<(), HandlerError>(())
/// });
/// let consumer = BusConsumer::new(bus, BusConsumerConfig::new("claim-service.policies"));
/// let report = consumer.run(handler, tokio::signal::ctrl_c()).await?;
/// println!("handled {}", report.handled);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BusConsumer {
    bus: EmbeddedBus,
    config: BusConsumerConfig,
}

impl BusConsumer {
    /// A consumer of `config.subscription` on `bus`.
    pub fn new(bus: EmbeddedBus, config: BusConsumerConfig) -> Self {
        Self { bus, config }
    }

    /// Runs `handler` until `shutdown` completes, then drains and reports.
    ///
    /// One transaction per round trip: the messages whose handlers finished since the
    /// last one are settled, and as many messages are received as there are free slots
    /// (the bus's `settle_and_receive`).
    ///
    /// # Errors
    /// [`BusError::UnknownSubscription`](super::BusError::UnknownSubscription) when the
    /// subscription does not exist. Storage failures while running are retried after the
    /// polling interval and logged, not returned.
    pub async fn run<S, F>(self, handler: S, shutdown: F) -> Result<ConsumerReport, super::BusError>
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        S::Future: Send + 'static,
        F: Future + Send,
    {
        // Fail fast on a subscription that does not exist.
        self.bus.backlog(&self.config.subscription).await?;
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        let finished = Arc::new(Finished::default());
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            let publications = self.bus.publications();
            let done = finished.take();
            let free = slots.available_permits();
            let mut failed = false;
            let received = if done.is_empty() && free == 0 {
                Vec::new()
            } else {
                let settles = done
                    .iter()
                    .map(|done| (done.receipt.clone(), done.settle.clone()))
                    .collect();
                let outcome = self
                    .bus
                    .settle_and_receive(
                        &self.config.subscription,
                        settles,
                        free,
                        self.config.visibility_timeout,
                    )
                    .await;
                match outcome {
                    Ok((settled, received)) => {
                        self.record(&counters, done, &settled);
                        received
                    }
                    Err(error) => {
                        tracing::warn!(%error, subscription = %self.config.subscription, "bus receive failed; retrying");
                        let settled = vec![false; done.len()];
                        self.record(&counters, done, &settled);
                        failed = true;
                        Vec::new()
                    }
                }
            };
            let full = !received.is_empty() && received.len() == free;
            for message in received {
                counters.received();
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let task = Handling {
                    bus: self.bus.clone(),
                    config: self.config.clone(),
                    counters: Arc::clone(&counters),
                    finished: Arc::clone(&finished),
                };
                let handler = handler.clone();
                running.spawn(async move {
                    task.handle(handler, message, slot).await;
                });
            }
            while running.try_join_next().is_some() {}

            // Wait for a handler to finish, or (with slots free) for new messages.
            let woken = self.bus.published().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let more = !failed && !full && self.bus.publications() != publications;
            if more {
                // Something was published meanwhile: look again, unless shutting down.
                let stop = tokio::select! {
                    biased;
                    _ = &mut shutdown => true,
                    () = std::future::ready(()) => false,
                };
                if stop {
                    break;
                }
                continue;
            }
            let slots_free = slots.available_permits() > 0;
            tokio::select! {
                () = finished.added.notified() => finished.gather().await,
                () = &mut woken, if slots_free => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
                _ = &mut shutdown => break,
            }
        }

        let drained = tokio::time::timeout(self.config.drain_timeout, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Their messages come back after the visibility timeout; the report counts
            // them as abandoned (received, never settled).
            running.abort_all();
        }
        self.settle_finished(&counters, &finished).await;
        Ok(counters.report())
    }

    /// Settles what finished while draining, receiving nothing.
    async fn settle_finished(&self, counters: &Counters, finished: &Finished) {
        let done = finished.take();
        if done.is_empty() {
            return;
        }
        let settles = done
            .iter()
            .map(|done| (done.receipt.clone(), done.settle.clone()))
            .collect();
        let settled = match self
            .bus
            .settle_and_receive(&self.config.subscription, settles, 0, Duration::ZERO)
            .await
        {
            Ok((settled, _)) => settled,
            Err(error) => {
                tracing::warn!(%error, subscription = %self.config.subscription, "settling the last messages failed; they will be delivered again");
                vec![false; done.len()]
            }
        };
        self.record(counters, done, &settled);
    }

    /// Counts the outcomes of settled handlings; `settled[i]` says whether `done[i]`'s
    /// settlement applied.
    fn record(&self, counters: &Counters, done: Vec<Done>, settled: &[bool]) {
        let queue = self.config.subscription.as_str();
        for (done, &applied) in done.into_iter().zip(settled) {
            let result = match (&done.settle, applied) {
                (Settle::Ack, true) => Outcome::Handled,
                (Settle::Ack, false) => {
                    // Handled, but the message was received again meanwhile: it will be
                    // handled again (and the idempotency layer makes that harmless).
                    counters.delete_failures(queue, 1);
                    Outcome::Handled
                }
                (Settle::DeadLetter(_), true) => Outcome::DeadLettered,
                (Settle::DeadLetter(_), false) => Outcome::Failed,
                (Settle::HideFor(_), _) => Outcome::Retried,
            };
            counters.settled(queue, result);
            counters.handling_time(queue, result, done.started.elapsed());
        }
    }
}

/// Handlings that finished and wait to be settled with the consumer's next receive.
#[derive(Default)]
struct Finished {
    queue: Mutex<Vec<Done>>,
    /// Woken (with a permit kept) when one is added.
    added: Notify,
}

impl Finished {
    fn push(&self, done: Done) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(done);
        self.added.notify_one();
    }

    fn take(&self) -> Vec<Done> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn len(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Once one handling finished, lets the handlings that are ready to finish too do so
    /// (each yield runs every task that was woken), so that one transaction settles them
    /// all instead of one each; stops as soon as a yield adds none. Handlers still waiting
    /// on something are not waited for.
    async fn gather(&self) {
        let mut seen = self.len();
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
            let now = self.len();
            if now == seen {
                break;
            }
            seen = now;
        }
    }
}

/// Yields at most in [`Finished::gather`]: a handling finishes two tasks deep (the
/// handler's own task, then the one that waits for it), a few rounds of the scheduler.
const GATHER_YIELDS: usize = 4;

/// A handled message, and what its handler's answer says to do with it.
struct Done {
    receipt: Receipt,
    settle: Settle,
    started: Instant,
}

/// What one handling task needs.
struct Handling {
    bus: EmbeddedBus,
    config: BusConsumerConfig,
    counters: Arc<Counters>,
    finished: Arc<Finished>,
}

impl Handling {
    /// Runs the handler on `message`, extending its visibility meanwhile, then queues its
    /// settlement and frees its slot.
    async fn handle<S>(&self, handler: S, message: Received, slot: OwnedSemaphorePermit)
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Send + 'static,
        S::Future: Send + 'static,
    {
        let span = tracing::info_span!(
            "dovetail.bus.handle",
            subscription = %self.config.subscription,
            message_id = %message.receipt.message_id,
            receive_count = message.receipt.receive_count,
        );
        let (receipt, delivery) = self.delivery(message);
        let started = Instant::now();
        let outcome = async {
            // Polled here, in this task: a panic is a retriable failure, not a dead
            // consumer, and dropping this task cancels the handler, so no handler outlives
            // its consumer. Most handlers finish at their first poll; a heartbeat timer
            // starts only for those that do not.
            let mut handling = std::pin::pin!(CatchPanic::new(handler.oneshot(delivery)));
            let first = std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await;
            if let Poll::Ready(outcome) = first {
                return outcome;
            }
            let every = self.config.heartbeat_every;
            let mut heartbeat =
                tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    outcome = &mut handling => break outcome,
                    _ = heartbeat.tick() => {
                        let extend = Settle::HideFor(self.config.visibility_timeout);
                        if self.bus.settle(receipt.clone(), extend).await.is_ok() {
                            self.counters.visibility_extended(&self.config.subscription);
                        }
                    }
                }
            }
        }
        .instrument(span.clone())
        .await;

        let settle = match &outcome {
            Ok(()) => Settle::Ack,
            Err(HandlerError::Rejected { reason }) => Settle::DeadLetter(reason.clone()),
            Err(_) => Settle::HideFor(self.config.backoff.delay(receipt.receive_count)),
        };
        if let Err(error) = outcome {
            span.in_scope(|| tracing::info!(%error, "handler failed"));
        }
        self.finished.push(Done {
            receipt,
            settle,
            started,
        });
        drop(slot);
    }

    fn delivery(&self, message: Received) -> (Receipt, Delivery) {
        let mut delivery = Delivery::new(message.receipt.message_id.clone(), message.body);
        delivery.attributes = message.attributes;
        delivery.receive_count = message.receipt.receive_count;
        delivery.sent_at = Some(message.sent_at);
        delivery.first_received_at = Some(message.first_received_at);
        delivery.group_id = Some(message.group_id);
        delivery.source_queue.clone_from(&self.config.subscription);
        (message.receipt, delivery)
    }
}
