//! [`BusConsumer`]: runs a handler over a subscription of the embedded bus, with the same
//! contract as the SQS consumer (a `tower::Service<Delivery>` that answers `Ok` or a
//! [`HandlerError`]).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use super::EmbeddedBus;
use super::store::{Received, Settle};
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
        let mut running = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            // Register for a wake-up before looking, so a publish in between is not missed.
            let woken = self.bus.published().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            let free = slots.available_permits();
            let received = if free == 0 {
                Vec::new()
            } else {
                match self
                    .bus
                    .receive(
                        &self.config.subscription,
                        free,
                        self.config.visibility_timeout,
                    )
                    .await
                {
                    Ok(received) => received,
                    Err(error) => {
                        tracing::warn!(%error, subscription = %self.config.subscription, "bus receive failed; retrying");
                        Vec::new()
                    }
                }
            };
            for _ in &received {
                counters.received();
            }
            let idle = received.is_empty();
            for message in received {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let task = Handling {
                    bus: self.bus.clone(),
                    config: self.config.clone(),
                    counters: Arc::clone(&counters),
                };
                let handler = handler.clone();
                running.spawn(async move {
                    task.handle(handler, message).await;
                    drop(slot);
                });
            }
            while running.try_join_next().is_some() {}
            if idle || slots.available_permits() == 0 {
                tokio::select! {
                    () = &mut woken => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    _ = &mut shutdown => break,
                }
            } else {
                // Poll the shutdown future without waiting.
                let stop = tokio::select! {
                    biased;
                    _ = &mut shutdown => true,
                    () = std::future::ready(()) => false,
                };
                if stop {
                    break;
                }
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
        Ok(counters.report())
    }
}

/// What one handling task needs.
struct Handling {
    bus: EmbeddedBus,
    config: BusConsumerConfig,
    counters: Arc<Counters>,
}

impl Handling {
    async fn handle<S>(&self, handler: S, message: Received)
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Send + 'static,
        S::Future: Send + 'static,
    {
        let span = tracing::info_span!(
            "dovetail.bus.handle",
            subscription = %self.config.subscription,
            message_id = %message.message_id,
            receive_count = message.receive_count,
        );
        let delivery = self.delivery(&message);
        let started = Instant::now();
        let outcome = async {
            // Spawned so that a panicking handler is a retriable failure, not a dead
            // consumer; aborted if this task is dropped, so no handler outlives its consumer.
            let mut handling = AbortOnDrop(tokio::spawn(handler.oneshot(delivery)));
            let mut heartbeat = tokio::time::interval(self.config.heartbeat_every);
            heartbeat.tick().await;
            loop {
                tokio::select! {
                    joined = &mut handling.0 => {
                        break joined.unwrap_or_else(|error| {
                            Err(HandlerError::retriable(format!("the handler panicked: {error}")))
                        });
                    }
                    _ = heartbeat.tick() => {
                        let extend = Settle::HideFor(self.config.visibility_timeout);
                        if self.bus.settle(message.clone(), extend).await.is_ok() {
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
            Err(_) => Settle::HideFor(self.config.backoff.delay(message.receive_count)),
        };
        let settled = self.bus.settle(message, settle.clone()).await;
        let queue = self.config.subscription.as_str();
        let result = match (&settle, settled) {
            (Settle::Ack, Ok(())) => Outcome::Handled,
            (Settle::Ack, Err(_)) => {
                // Handled, but the message was received again meanwhile: it will be
                // handled again (and the idempotency layer makes that harmless).
                self.counters.delete_failures(queue, 1);
                Outcome::Handled
            }
            (Settle::DeadLetter(_), Ok(())) => Outcome::DeadLettered,
            (Settle::DeadLetter(_), Err(_)) => Outcome::Failed,
            (Settle::HideFor(_), _) => Outcome::Retried,
        };
        self.counters.settled(queue, result);
        self.counters
            .handling_time(queue, result, started.elapsed());
        if let Err(error) = outcome {
            span.in_scope(|| tracing::info!(%error, "handler failed"));
        }
    }

    fn delivery(&self, message: &Received) -> Delivery {
        let mut delivery = Delivery::new(message.message_id.clone(), message.body.clone());
        delivery.attributes = message.attributes.clone();
        delivery.receive_count = message.receive_count;
        delivery.sent_at = Some(message.sent_at);
        delivery.first_received_at = Some(message.first_received_at);
        delivery.group_id = Some(message.group_id.clone());
        delivery.source_queue.clone_from(&self.config.subscription);
        delivery
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
