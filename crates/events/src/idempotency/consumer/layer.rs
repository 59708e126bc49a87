//! [`IdempotencyLayer`]: wraps a handler in an [`IdempotentService`].

use std::sync::Arc;

use tower::Layer;

use super::cache::ProcessedCache;
use super::{IdempotencyConfig, IdempotencyStats, IdempotentService, Shared};
use crate::idempotency::{IdempotencyStore, LeaseOwner};

/// Makes a handler idempotent: duplicates of a processed message have no second effect.
///
/// One layer is one consumer instance: it owns a [`LeaseOwner`] id, the cache of processed
/// keys and the [`IdempotencyStats`]. Clone it to share those between services.
///
/// # Example
/// ```
/// use dovetail_events::consumer::{Delivery, HandlerError};
/// use dovetail_events::idempotency::{IdempotencyConfig, IdempotencyLayer, MemoryIdempotencyStore};
/// use tower::{Layer, ServiceExt};
///
/// # async fn example() -> Result<(), HandlerError> {
/// let layer = IdempotencyLayer::new(
///     MemoryIdempotencyStore::new(),
///     IdempotencyConfig::new("claim-service.policy-replica"),
/// );
/// let handler = layer.layer(tower::service_fn(|delivery: Delivery| async move {
///     // apply the event once
///     Ok::<(), HandlerError>(())
/// }));
/// let mut delivery = Delivery::new("m-1", "not an envelope");
/// // With the default key source, the key is the envelope's event id; a body that is
/// // not an envelope is rejected (dead-lettered) with the reason.
/// let rejected = handler.oneshot(delivery).await.unwrap_err();
/// assert!(!rejected.is_retriable());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct IdempotencyLayer<St> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for IdempotencyLayer<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St: IdempotencyStore> IdempotencyLayer<St> {
    /// A layer over `store` with `config`, as a new consumer instance (a fresh
    /// [`LeaseOwner`]).
    pub fn new(store: St, config: IdempotencyConfig) -> Self {
        let cache = config
            .cache_capacity
            .map(|capacity| ProcessedCache::new(capacity, config.retain));
        Self {
            shared: Arc::new(Shared {
                store,
                owner: LeaseOwner::random(),
                cache,
                stats: IdempotencyStats::default(),
                config,
            }),
        }
    }

    /// What the layer has done so far.
    pub fn stats(&self) -> &IdempotencyStats {
        &self.shared.stats
    }
}

impl<S, St> Layer<S> for IdempotencyLayer<St> {
    type Service = IdempotentService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotentService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
