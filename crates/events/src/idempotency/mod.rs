//! The idempotent consumer's storage port, [`IdempotencyStore`], and its implementations.
//!
//! A consumer that may see a message more than once (every broker delivers at least once)
//! claims the message's [`IdempotencyKey`] before processing it:
//!
//! 1. [`try_claim`](IdempotencyStore::try_claim) with the payload's [`Fingerprint`] and a
//!    lease duration. The first delivery gets [`ClaimOutcome::Claimed`] and a [`Lease`];
//!    a duplicate of a processed message gets [`ClaimOutcome::Processed`] with the stored
//!    outcome of the first processing; a delivery racing a live lease gets
//!    [`ClaimOutcome::InProgress`]; a key reused with another payload is refused with
//!    [`IdempotencyError::PayloadMismatch`].
//! 2. While processing, [`heartbeat`](IdempotencyStore::heartbeat) keeps the lease alive.
//! 3. On success, [`complete`](IdempotencyStore::complete) stores the outcome and keeps
//!    the record for a retention time (TTL); on a retriable failure,
//!    [`release`](IdempotencyStore::release) drops the claim so a redelivery can claim the
//!    key at once.
//!
//! A consumer that crashes mid-way leaves its lease to expire; the next delivery takes it
//! over with a higher fencing token, and the crashed consumer (if it was only stalled) is
//! refused with [`IdempotencyError::LeaseLost`] when it heartbeats or completes. Records
//! expire: a processed record older than its retention is gone, and a new delivery of the
//! key is claimed afresh.
//!
//! When the handler's own writes go to the same database as the records, the "processed"
//! marker can commit in the handler's transaction instead — no lease, one write for a
//! first delivery: `SqliteIdempotencyStore::mark_processed_in` and
//! `DynamoDbIdempotencyStore::processed_marker_put`.
//!
//! # Stores
//!
//! | store | feature | notes |
//! |---|---|---|
//! | [`MemoryIdempotencyStore`] | always | one process; for tests and single-instance tools |
//! | `SqliteIdempotencyStore` | `sqlite` (default) | a table in the service's SQLite database |
//! | `DynamoDbIdempotencyStore` | `dynamodb` | one item per key, conditional writes, DynamoDB TTL |
//! | `RedisIdempotencyStore` | `redis` | one hash per key, Lua scripts, `PEXPIRE` |
//!
//! Every store passes the contract suite in `dovetail-testkit` (feature
//! `idempotency-contract`); the DynamoDB and Redis stores against real servers.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use dovetail_events::idempotency::{
//!     ClaimOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner,
//!     MemoryIdempotencyStore, StoredOutcome,
//! };
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryIdempotencyStore::new();
//! let me = LeaseOwner::random();
//! let key = IdempotencyKey::new("evt-0190f5d8")?;
//! let payload = br#"{"claim":"c-1","amount":"120.00"}"#;
//! let fingerprint = Fingerprint::of(payload);
//!
//! match store.try_claim(&key, &fingerprint, &me, Duration::from_secs(30)).await? {
//!     ClaimOutcome::Claimed { lease, .. } => {
//!         // ... process the message, heartbeating if it takes long ...
//!         let outcome = StoredOutcome::from("accepted");
//!         store.complete(&lease, outcome, Duration::from_secs(24 * 3600)).await?;
//!     }
//!     ClaimOutcome::Processed(outcome) => { /* a duplicate: answer with `outcome` */ }
//!     ClaimOutcome::InProgress { .. } => { /* leave it for redelivery */ }
//! }
//!
//! // A redelivery of the same message is a duplicate.
//! let again = store.try_claim(&key, &fingerprint, &me, Duration::from_secs(30)).await?;
//! assert_eq!(again, ClaimOutcome::Processed(StoredOutcome::from("accepted")));
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(example()).unwrap();
//! ```

mod clock;
mod consumer;
mod dyn_store;
mod error;
mod key;
mod lease;
mod memory;
mod record;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use consumer::{
    IdempotencyConfig, IdempotencyLayer, IdempotencyStats, IdempotentService, InProgressPolicy,
    KeySource,
};
pub use dyn_store::{BoxFuture, DynIdempotencyStore};
pub use error::{BoxError, IdempotencyError, StoreOperation};
pub use key::{Fingerprint, IdempotencyKey, InvalidFingerprint, InvalidIdentifier, LeaseOwner};
pub use lease::{ClaimOutcome, Lease, MarkOutcome, StoredOutcome};
pub use memory::MemoryIdempotencyStore;

#[cfg(feature = "dynamodb")]
pub use dynamodb::{DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore};
#[cfg(feature = "redis")]
pub use redis::{RedisIdempotencyConfig, RedisIdempotencyStore};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteIdempotencyStore;

/// The storage port of the idempotent consumer: claims on keys as expiring leases with
/// fencing tokens, and the outcomes of processed keys, kept for a retention time.
///
/// Every operation is atomic on its key. Implementations are cheap to share: a tower
/// layer holds one behind an [`Arc`] (which implements the trait too), and
/// [`DynIdempotencyStore`] erases the type when the store is chosen at run time.
///
/// The rules every implementation follows (checked by the contract suite in
/// `dovetail-testkit`):
/// - A key without a live record is [`Claimed`](ClaimOutcome::Claimed) by the first
///   claim; concurrent claims of one key get one `Claimed` and the rest
///   [`InProgress`](ClaimOutcome::InProgress).
/// - A key with a record of another fingerprint, in progress, released or processed, is
///   refused with [`IdempotencyError::PayloadMismatch`].
/// - A lease past its `held_until` may be taken over by the next claim, which gets a
///   higher fencing token and `taken_over_from`; the old lease is then lost.
/// - [`heartbeat`](Self::heartbeat), [`complete`](Self::complete) and
///   [`release`](Self::release) succeed only for the lease the record was last granted
///   to (same fencing token and owner), even past its `held_until` as long as nobody took
///   it over; otherwise they fail with [`IdempotencyError::LeaseLost`]. Completing again
///   with the lease that completed the key succeeds and changes nothing, so a retried
///   request is harmless.
/// - A processed record counts for the `retain` given to `complete`; after that the key
///   is claimed afresh.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `owner` for `lease`, unless it is processed or held by a live lease.
    ///
    /// # Errors
    /// [`IdempotencyError::PayloadMismatch`] when the key's record has another
    /// fingerprint; [`IdempotencyError::Backend`] when the backend fails;
    /// [`IdempotencyError::CorruptRecord`] when the record cannot be read.
    fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, IdempotencyError>> + Send;

    /// Extends `lease` to `extend` from now, returning the extended lease.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] when the lease was taken over, released or
    /// completed, or the record is gone; [`IdempotencyError::Backend`] when the backend
    /// fails.
    fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
    ) -> impl Future<Output = Result<Lease, IdempotencyError>> + Send;

    /// Marks the lease's key processed with `outcome`, keeping the record for `retain`.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] when the lease no longer holds the key (the outcome
    /// is then not stored); [`IdempotencyError::Backend`] when the backend fails.
    fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> impl Future<Output = Result<(), IdempotencyError>> + Send;

    /// Drops the lease's claim, so the next delivery claims the key at once: the handler
    /// failed in a way worth retrying.
    ///
    /// The record stays, without owner and already expired: the next claim gets a higher
    /// fencing token (and no `taken_over_from`), and the key still refuses another
    /// payload until the record expires.
    ///
    /// # Errors
    /// [`IdempotencyError::LeaseLost`] when the lease no longer holds the key (nothing
    /// to release); [`IdempotencyError::Backend`] when the backend fails.
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), IdempotencyError>> + Send;
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for Arc<S> {
    fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, IdempotencyError>> + Send {
        (**self).try_claim(key, fingerprint, owner, lease)
    }

    fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
    ) -> impl Future<Output = Result<Lease, IdempotencyError>> + Send {
        (**self).heartbeat(lease, extend)
    }

    fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> impl Future<Output = Result<(), IdempotencyError>> + Send {
        (**self).complete(lease, outcome, retain)
    }

    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), IdempotencyError>> + Send {
        (**self).release(lease)
    }
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for &S {
    fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> impl Future<Output = Result<ClaimOutcome, IdempotencyError>> + Send {
        (**self).try_claim(key, fingerprint, owner, lease)
    }

    fn heartbeat(
        &self,
        lease: &Lease,
        extend: Duration,
    ) -> impl Future<Output = Result<Lease, IdempotencyError>> + Send {
        (**self).heartbeat(lease, extend)
    }

    fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> impl Future<Output = Result<(), IdempotencyError>> + Send {
        (**self).complete(lease, outcome, retain)
    }

    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), IdempotencyError>> + Send {
        (**self).release(lease)
    }
}
