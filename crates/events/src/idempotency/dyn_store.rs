//! A `dyn`-compatible face of [`IdempotencyStore`], for stores chosen at run time.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoredOutcome,
};

/// A boxed, sendable future, as [`DynIdempotencyStore`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`IdempotencyStore`] with boxed futures, so it can be a trait object.
///
/// Every `IdempotencyStore` is a `DynIdempotencyStore`, and
/// `dyn DynIdempotencyStore` is an `IdempotencyStore` again, so a service that picks
/// its backend from configuration holds an `Arc<dyn DynIdempotencyStore>` and hands it
/// to anything that wants an `IdempotencyStore`. Each call costs one allocation.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use dovetail_events::idempotency::{
///     DynIdempotencyStore, Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner,
///     MemoryIdempotencyStore,
/// };
///
/// fn store_from_config(backend: &str) -> Arc<dyn DynIdempotencyStore> {
///     match backend {
///         // "sqlite" => Arc::new(SqliteIdempotencyStore::open(...)?),
///         _ => Arc::new(MemoryIdempotencyStore::new()),
///     }
/// }
///
/// async fn claim(store: &impl IdempotencyStore) -> bool {
///     let key = IdempotencyKey::new("evt-1").unwrap();
///     let claim = store
///         .try_claim(&key, &Fingerprint::of(b"{}"), &LeaseOwner::random(), Duration::from_secs(30))
///         .await;
///     claim.is_ok_and(|claim| claim.lease().is_some())
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert!(claim(&store_from_config("memory")).await);
/// # });
/// ```
pub trait DynIdempotencyStore: Send + Sync {
    /// [`IdempotencyStore::try_claim`], boxed.
    fn try_claim_boxed<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        fingerprint: &'a Fingerprint,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimOutcome, IdempotencyError>>;

    /// [`IdempotencyStore::heartbeat`], boxed.
    fn heartbeat_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        extend: Duration,
    ) -> BoxFuture<'a, Result<Lease, IdempotencyError>>;

    /// [`IdempotencyStore::complete`], boxed.
    fn complete_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>>;

    /// [`IdempotencyStore::release`], boxed.
    fn release_boxed<'a>(&'a self, lease: &'a Lease)
    -> BoxFuture<'a, Result<(), IdempotencyError>>;
}

impl<S: IdempotencyStore> DynIdempotencyStore for S {
    fn try_claim_boxed<'a>(
        &'a self,
        key: &'a IdempotencyKey,
        fingerprint: &'a Fingerprint,
        owner: &'a LeaseOwner,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimOutcome, IdempotencyError>> {
        Box::pin(self.try_claim(key, fingerprint, owner, lease))
    }

    fn heartbeat_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        extend: Duration,
    ) -> BoxFuture<'a, Result<Lease, IdempotencyError>> {
        Box::pin(self.heartbeat(lease, extend))
    }

    fn complete_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        Box::pin(self.complete(lease, outcome, retain))
    }

    fn release_boxed<'a>(
        &'a self,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), IdempotencyError>> {
        Box::pin(self.release(lease))
    }
}

impl IdempotencyStore for dyn DynIdempotencyStore {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        self.try_claim_boxed(key, fingerprint, owner, lease).await
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        self.heartbeat_boxed(lease, extend).await
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        self.complete_boxed(lease, outcome, retain).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        self.release_boxed(lease).await
    }
}
