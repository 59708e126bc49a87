//! The idempotent consumer as a tower layer: [`IdempotencyLayer`] over any
//! [`IdempotencyStore`].
//!
//! For each delivery the layer derives a key (the envelope's event id by default) and a
//! fingerprint of the body, then:
//! - a key the in-process cache knows as processed is acknowledged with no store call;
//! - otherwise it claims the key: the first delivery runs the handler under a lease that
//!   heartbeats, then records the key as processed; a duplicate of a processed message is
//!   acknowledged without running the handler; a delivery racing a live lease is retried
//!   later (or waits, by configuration); a key reused with another body is rejected;
//! - a handler failure releases the claim so the redelivery runs at once.
//!
//! The at-least-once window that remains: a handler whose effect was applied but whose
//! completion could not be recorded (the store failed three times, or its lease was taken
//! over after it stalled past the lease) may see its effect applied again. Handlers that
//! write to the store's own database close the window by committing the "processed" marker
//! in their transaction (`SqliteIdempotencyStore::mark_processed_in`,
//! `DynamoDbIdempotencyStore::processed_marker_put`).

mod cache;
mod config;
mod layer;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tower::{Service, ServiceExt};

pub use config::{IdempotencyConfig, InProgressPolicy, KeySource};
pub use layer::IdempotencyLayer;

use self::cache::{Cached, ProcessedCache};
use super::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoredOutcome,
};
use crate::consumer::{Delivery, HandlerError};

/// How often recording a processed key is tried before the delivery is failed.
const COMPLETE_ATTEMPTS: u32 = 3;

/// Counters of what an [`IdempotencyLayer`] did; read them for metrics.
#[derive(Debug, Default)]
pub struct IdempotencyStats {
    processed: AtomicU64,
    duplicates_from_store: AtomicU64,
    duplicates_from_cache: AtomicU64,
    in_progress_elsewhere: AtomicU64,
    taken_over: AtomicU64,
    mismatches: AtomicU64,
    store_calls: AtomicU64,
}

impl IdempotencyStats {
    /// Deliveries whose handler ran and whose key was recorded.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }
    /// Duplicates acknowledged because the store knew the key as processed.
    pub fn duplicates_from_store(&self) -> u64 {
        self.duplicates_from_store.load(Ordering::Relaxed)
    }
    /// Duplicates acknowledged from the in-process cache, with no store call.
    pub fn duplicates_from_cache(&self) -> u64 {
        self.duplicates_from_cache.load(Ordering::Relaxed)
    }
    /// Deliveries that found another consumer's live lease.
    pub fn in_progress_elsewhere(&self) -> u64 {
        self.in_progress_elsewhere.load(Ordering::Relaxed)
    }
    /// Claims that took over the expired lease of a crashed or stalled consumer.
    pub fn taken_over(&self) -> u64 {
        self.taken_over.load(Ordering::Relaxed)
    }
    /// Deliveries rejected because their key was used for another body.
    pub fn mismatches(&self) -> u64 {
        self.mismatches.load(Ordering::Relaxed)
    }
    /// Calls to the store (claims, heartbeats, completions, releases): the round trips.
    pub fn store_calls(&self) -> u64 {
        self.store_calls.load(Ordering::Relaxed)
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// State shared by every service of one [`IdempotencyLayer`].
#[derive(Debug)]
struct Shared<St> {
    store: St,
    owner: LeaseOwner,
    cache: Option<ProcessedCache>,
    stats: IdempotencyStats,
    config: IdempotencyConfig,
}

/// A handler made idempotent by [`IdempotencyLayer`].
#[derive(Debug)]
pub struct IdempotentService<S, St> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St> Clone for IdempotentService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, St> Service<Delivery> for IdempotentService<S, St>
where
    S: Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    St: IdempotencyStore + 'static,
{
    type Response = ();
    type Error = HandlerError;
    type Future = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        // Use the service that was polled ready; leave a clone for the next call.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.handle(ready, delivery).await })
    }
}

impl<St: IdempotencyStore> Shared<St> {
    async fn handle<S>(&self, handler: S, delivery: Delivery) -> Result<(), HandlerError>
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Send,
        S::Future: Send,
    {
        let key = self.key_of(&delivery)?;
        let fingerprint = Fingerprint::of(delivery.body.as_bytes());
        if let Some(cache) = &self.cache {
            match cache.lookup(key.as_str(), &fingerprint) {
                Cached::Processed => {
                    bump(&self.stats.duplicates_from_cache);
                    return Ok(());
                }
                Cached::Mismatch => {
                    bump(&self.stats.mismatches);
                    return Err(HandlerError::rejected(format!(
                        "the idempotency key `{key}` was already used for a different payload"
                    )));
                }
                Cached::Unknown => {}
            }
        }
        let waited_since = SystemTime::now();
        loop {
            bump(&self.stats.store_calls);
            let claim = self
                .store
                .try_claim(&key, &fingerprint, &self.owner, self.config.lease)
                .await;
            match claim {
                Ok(ClaimOutcome::Claimed {
                    lease,
                    taken_over_from,
                }) => {
                    if taken_over_from.is_some() {
                        bump(&self.stats.taken_over);
                    }
                    return self.run(handler, delivery, lease, fingerprint).await;
                }
                Ok(ClaimOutcome::Processed(_)) => {
                    bump(&self.stats.duplicates_from_store);
                    self.remember(&key, fingerprint);
                    return Ok(());
                }
                Ok(ClaimOutcome::InProgress { held_until }) => {
                    bump(&self.stats.in_progress_elsewhere);
                    let retry_later = HandlerError::retriable(format!(
                        "another consumer is processing `{key}` (its lease runs until {})",
                        time::OffsetDateTime::from(held_until)
                    ));
                    match self.config.in_progress {
                        InProgressPolicy::Wait { poll, max_wait }
                            if waited_since.elapsed().unwrap_or_default() < max_wait =>
                        {
                            tokio::time::sleep(poll).await;
                        }
                        _ => return Err(retry_later),
                    }
                }
                Err(error @ IdempotencyError::PayloadMismatch { .. }) => {
                    bump(&self.stats.mismatches);
                    return Err(HandlerError::rejected(error.to_string()));
                }
                Err(error) => return Err(store_failure(&error)),
            }
        }
    }

    /// Runs the handler under `lease`, heartbeating, then records or releases the key.
    async fn run<S>(
        &self,
        handler: S,
        delivery: Delivery,
        mut lease: Lease,
        fingerprint: Fingerprint,
    ) -> Result<(), HandlerError>
    where
        S: Service<Delivery, Response = (), Error = HandlerError> + Send,
        S::Future: Send,
    {
        let handling = handler.oneshot(delivery);
        tokio::pin!(handling);
        // A handler that finishes at its first poll needs no heartbeat: no timer for it
        // (a timer per message cost more than the rest of a bare delivery).
        let first = std::future::poll_fn(|cx| Poll::Ready(handling.as_mut().poll(cx))).await;
        let outcome = if let Poll::Ready(outcome) = first {
            outcome
        } else {
            let every = self.config.heartbeat_every;
            let mut heartbeat =
                tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    outcome = &mut handling => break outcome,
                    _ = heartbeat.tick() => {
                        bump(&self.stats.store_calls);
                        match self.store.heartbeat(&lease, self.config.lease).await {
                            Ok(extended) => lease = extended,
                            Err(error) => tracing::warn!(
                                key = %lease.key(), %error,
                                "could not extend the idempotency lease; another consumer may take the message over"
                            ),
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(()) => self.complete(&lease, fingerprint).await,
            Err(error) => {
                bump(&self.stats.store_calls);
                if let Err(release) = self.store.release(&lease).await {
                    tracing::warn!(key = %lease.key(), error = %release, "could not release the idempotency lease; the redelivery waits for it to expire");
                }
                Err(error)
            }
        }
    }

    async fn complete(&self, lease: &Lease, fingerprint: Fingerprint) -> Result<(), HandlerError> {
        let mut last_error = None;
        for attempt in 0..COMPLETE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            bump(&self.stats.store_calls);
            match self
                .store
                .complete(lease, StoredOutcome::empty(), self.config.retain)
                .await
            {
                Ok(()) => {
                    bump(&self.stats.processed);
                    self.remember(lease.key(), fingerprint);
                    return Ok(());
                }
                Err(IdempotencyError::LeaseLost { .. }) => {
                    // Another consumer took the key over while this one stalled; the
                    // work is done, and the new holder records its own outcome.
                    tracing::warn!(key = %lease.key(), "handled, but the lease was taken over meanwhile");
                    return Ok(());
                }
                Err(error) => last_error = Some(error),
            }
        }
        let reason = last_error.map_or_else(String::new, |error| crate::error_chain(&error));
        Err(HandlerError::retriable(format!(
            "handled `{}`, but could not record it as processed: {reason}",
            lease.key()
        )))
    }

    fn remember(&self, key: &IdempotencyKey, fingerprint: Fingerprint) {
        if let Some(cache) = &self.cache {
            cache.remember(key.as_str().to_owned(), fingerprint);
        }
    }

    fn key_of(&self, delivery: &Delivery) -> Result<IdempotencyKey, HandlerError> {
        let raw = match &self.config.key_source {
            KeySource::EventId => event_id_of(&delivery.body)?,
            KeySource::MessageId => delivery.message_id.clone(),
            KeySource::Attribute(name) => {
                delivery.attribute(name).map(str::to_owned).ok_or_else(|| {
                    HandlerError::rejected(format!(
                        "the message has no `{name}` attribute to take its idempotency key from"
                    ))
                })?
            }
        };
        IdempotencyKey::new(format!("{}:{raw}", self.config.namespace)).map_err(|error| {
            HandlerError::rejected(format!(
                "the idempotency key of this message is invalid: {error}"
            ))
        })
    }
}

/// The `id` of an envelope body, read without decoding the rest.
fn event_id_of(body: &str) -> Result<String, HandlerError> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_str::<IdOnly>(body)
        .map(|envelope| envelope.id)
        .map_err(|error| {
            HandlerError::rejected(format!(
                "the body is not an event envelope with an `id` to take the idempotency key from: {error}"
            ))
        })
}

fn store_failure(error: &IdempotencyError) -> HandlerError {
    let reason = crate::error_chain(error);
    if error.is_retriable() {
        HandlerError::retriable(reason)
    } else {
        HandlerError::rejected(reason)
    }
}
