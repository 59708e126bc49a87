//! [`MemoryIdempotencyStore`]: records in a `HashMap` behind a mutex, for one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::clock::{duration_millis, epoch_millis, from_epoch_millis};
use super::record::{
    ClaimDecision, LeaseCheck, RELEASED_HELD_UNTIL_MS, RecordState, StoredRecord, check_lease,
    decide_claim, in_progress_expiry,
};
use super::{
    ClaimOutcome, Clock, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoredOutcome, SystemClock,
};

/// Operations between two sweeps of expired records; expiry is always checked on read.
const SWEEP_EVERY: u32 = 1024;

/// An [`IdempotencyStore`] in memory: for tests, and for a single consumer process that
/// accepts losing its records on restart (duplicates after a restart are then processed
/// again).
///
/// Expiry is checked on every read; expired records are also swept out every so many
/// operations, and by [`purge_expired`](Self::purge_expired). Clones share the records.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use dovetail_events::idempotency::{
///     ClaimOutcome, Fingerprint, IdempotencyKey, IdempotencyStore, LeaseOwner,
///     MemoryIdempotencyStore,
/// };
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryIdempotencyStore::new();
/// let key = IdempotencyKey::new("evt-1").unwrap();
/// let fingerprint = Fingerprint::of(b"{}");
/// let (me, other) = (LeaseOwner::random(), LeaseOwner::random());
/// let first = store.try_claim(&key, &fingerprint, &me, Duration::from_secs(30)).await;
/// assert!(matches!(first, Ok(ClaimOutcome::Claimed { .. })));
/// let second = store.try_claim(&key, &fingerprint, &other, Duration::from_secs(30)).await;
/// assert!(matches!(second, Ok(ClaimOutcome::InProgress { .. })));
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct MemoryIdempotencyStore {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<IdempotencyKey, StoredRecord>,
    operations_since_sweep: u32,
}

impl Default for MemoryIdempotencyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryIdempotencyStore {
    /// An empty store on the system clock.
    pub fn new() -> Self {
        Self::with_clock(SystemClock)
    }

    /// An empty store that reads the time from `clock`, e.g. a
    /// [`ManualClock`](super::ManualClock) in tests.
    pub fn with_clock(clock: impl Clock + 'static) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            clock: Arc::new(clock),
        }
    }

    /// Removes expired records now, returning how many.
    pub fn purge_expired(&self) -> usize {
        let now_ms = self.now_ms();
        let mut inner = self.lock();
        inner.operations_since_sweep = 0;
        sweep(&mut inner.records, now_ms)
    }

    /// How many records are held, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn now_ms(&self) -> u64 {
        epoch_millis(self.clock.now())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map is never left half-updated: a panic cannot poison it mid-operation.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the records, sweeping expired ones every `SWEEP_EVERY` operations.
    fn records(&self, now_ms: u64) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        inner.operations_since_sweep += 1;
        if inner.operations_since_sweep >= SWEEP_EVERY {
            inner.operations_since_sweep = 0;
            sweep(&mut inner.records, now_ms);
        }
        inner
    }

    fn claim_now(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        let now = self.clock.now();
        let now_ms = epoch_millis(now);
        let mut inner = self.records(now_ms);
        match decide_claim(inner.records.get(key), fingerprint, now) {
            ClaimDecision::Grant {
                fencing_token,
                taken_over_from,
            } => {
                let held_until_ms = now_ms.saturating_add(duration_millis(lease));
                inner.records.insert(
                    key.clone(),
                    StoredRecord {
                        fingerprint: *fingerprint,
                        owner: Some(owner.clone()),
                        fencing_token,
                        state: RecordState::InProgress { held_until_ms },
                        expires_at_ms: in_progress_expiry(held_until_ms),
                    },
                );
                Ok(ClaimOutcome::Claimed {
                    lease: Lease::new(
                        key.clone(),
                        owner.clone(),
                        fencing_token,
                        from_epoch_millis(held_until_ms),
                    ),
                    taken_over_from,
                })
            }
            ClaimDecision::Answer(outcome) => Ok(outcome),
            ClaimDecision::Mismatch { stored } => Err(IdempotencyError::PayloadMismatch {
                key: key.clone(),
                stored,
                presented: *fingerprint,
            }),
        }
    }

    fn heartbeat_now(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        let now_ms = self.now_ms();
        let mut inner = self.records(now_ms);
        let record = inner.records.get_mut(lease.key());
        if check_lease(record.as_deref(), lease, now_ms) != LeaseCheck::Held {
            return Err(lost(lease));
        }
        let held_until_ms = now_ms.saturating_add(duration_millis(extend));
        if let Some(record) = record {
            record.state = RecordState::InProgress { held_until_ms };
            record.expires_at_ms = in_progress_expiry(held_until_ms);
        }
        Ok(Lease::new(
            lease.key().clone(),
            lease.owner().clone(),
            lease.fencing_token(),
            from_epoch_millis(held_until_ms),
        ))
    }

    fn complete_now(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        let now_ms = self.now_ms();
        let mut inner = self.records(now_ms);
        let record = inner.records.get_mut(lease.key());
        match check_lease(record.as_deref(), lease, now_ms) {
            LeaseCheck::Held => {
                if let Some(record) = record {
                    record.state = RecordState::Processed { outcome };
                    record.expires_at_ms = now_ms.saturating_add(duration_millis(retain));
                }
                Ok(())
            }
            LeaseCheck::CompletedByIt => Ok(()),
            LeaseCheck::Lost => Err(lost(lease)),
        }
    }

    fn release_now(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        let now_ms = self.now_ms();
        let mut inner = self.records(now_ms);
        let record = inner.records.get_mut(lease.key());
        if check_lease(record.as_deref(), lease, now_ms) != LeaseCheck::Held {
            return Err(lost(lease));
        }
        if let Some(record) = record {
            record.owner = None;
            record.state = RecordState::InProgress {
                held_until_ms: RELEASED_HELD_UNTIL_MS,
            };
        }
        Ok(())
    }
}

fn sweep(records: &mut HashMap<IdempotencyKey, StoredRecord>, now_ms: u64) -> usize {
    let before = records.len();
    records.retain(|_, record| record.is_live_at(now_ms));
    before - records.len()
}

fn lost(lease: &Lease) -> IdempotencyError {
    IdempotencyError::LeaseLost {
        key: lease.key().clone(),
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        self.claim_now(key, fingerprint, owner, lease)
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        self.heartbeat_now(lease, extend)
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        self.complete_now(lease, outcome, retain)
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        self.release_now(lease)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::idempotency::ManualClock;

    #[test]
    fn expired_records_are_swept() {
        let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
        let store = MemoryIdempotencyStore::with_clock(clock.clone());
        let owner = LeaseOwner::random();
        let fingerprint = Fingerprint::of(b"x");
        for n in 0..3 {
            let key = IdempotencyKey::new(format!("k{n}")).expect("a valid key");
            let claim = store
                .claim_now(&key, &fingerprint, &owner, Duration::from_secs(1))
                .expect("claimed");
            let lease = claim.lease().expect("a lease").clone();
            store
                .complete_now(&lease, StoredOutcome::empty(), Duration::from_secs(10))
                .expect("completed");
        }
        assert_eq!(store.purge_expired(), 0);
        clock.advance(Duration::from_secs(10));
        assert_eq!(store.purge_expired(), 3);
        assert!(store.is_empty());
    }
}
