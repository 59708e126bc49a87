//! [`MemoryOutboxStore`]: an outbox in memory, for unit tests of relay logic. It keeps every
//! rule of [`OutboxStore`] but survives nothing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use dovetail_events::envelope::Envelope;

use crate::{Failure, OutboxBacklog, OutboxError, OutboxRecord, OutboxStore, Position, RelayLease};

/// An in-memory outbox; cheap to clone (shared).
///
/// # Example
/// ```
/// use dovetail_outbox::{MemoryOutboxStore, OutboxStore};
/// # async fn example(envelope: dovetail_events::envelope::Envelope) -> Result<(), dovetail_outbox::OutboxError> {
/// let outbox = MemoryOutboxStore::new();
/// outbox.commit(vec![envelope]);
/// assert_eq!(outbox.fetch_ready(10).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryOutboxStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    next_position: Position,
    records: BTreeMap<Position, Stored>,
    lease: Option<RelayLease>,
    last_token: u64,
}

#[derive(Debug, Clone)]
struct Stored {
    record: OutboxRecord,
    committed_at: SystemTime,
    retry_at: Option<SystemTime>,
    parked: bool,
}

impl MemoryOutboxStore {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commits `envelopes` (what a unit of work does), in order; returns their positions.
    pub fn commit(&self, envelopes: Vec<Envelope>) -> Vec<Position> {
        let mut state = self.state();
        let now = SystemTime::now();
        envelopes
            .into_iter()
            .map(|envelope| {
                state.next_position += 1;
                let position = state.next_position;
                let record = OutboxRecord::new(position, envelope);
                state.records.insert(
                    position,
                    Stored {
                        record,
                        committed_at: now,
                        retry_at: None,
                        parked: false,
                    },
                );
                position
            })
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn check(&self, lease: &RelayLease) -> Result<(), OutboxError> {
        match &self.lease {
            Some(current) if current.fencing_token == lease.fencing_token => Ok(()),
            _ => Err(OutboxError::LeaseLost {
                lease: "memory".to_owned(),
            }),
        }
    }
}

impl OutboxStore for MemoryOutboxStore {
    async fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<RelayLease>, OutboxError> {
        let mut state = self.state();
        let now = SystemTime::now();
        let token = match &state.lease {
            Some(current) if current.owner == owner => current.fencing_token,
            Some(current) if current.held_until > now => return Ok(None),
            _ => state.last_token + 1,
        };
        state.last_token = token;
        let lease = RelayLease {
            owner: owner.to_owned(),
            fencing_token: token,
            held_until: now + ttl,
        };
        state.lease = Some(lease.clone());
        Ok(Some(lease))
    }

    async fn release_lease(&self, lease: &RelayLease) -> Result<(), OutboxError> {
        let mut state = self.state();
        if state.check(lease).is_ok() {
            state.lease = None;
        }
        Ok(())
    }

    async fn fetch_ready(&self, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        let state = self.state();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = SystemTime::now();
        let mut blocked = std::collections::HashSet::new();
        let mut ready = Vec::new();
        for stored in state.records.values() {
            let envelope = &stored.record.envelope;
            let aggregate = (
                envelope.aggregate_type().as_str().to_owned(),
                envelope.aggregate_id().as_str().to_owned(),
            );
            if blocked.contains(&aggregate) {
                continue;
            }
            let waiting = stored.retry_at.is_some_and(|at| at > now);
            if stored.parked || waiting {
                blocked.insert(aggregate);
                continue;
            }
            ready.push(stored.record.clone());
            if ready.len() == limit {
                break;
            }
        }
        Ok(ready)
    }

    async fn mark_published(
        &self,
        lease: &RelayLease,
        positions: &[Position],
    ) -> Result<(), OutboxError> {
        let mut state = self.state();
        state.check(lease)?;
        for position in positions {
            state.records.remove(position);
        }
        Ok(())
    }

    async fn mark_failed(
        &self,
        lease: &RelayLease,
        failures: &[Failure],
    ) -> Result<(), OutboxError> {
        let mut state = self.state();
        state.check(lease)?;
        for failure in failures {
            if let Some(stored) = state.records.get_mut(&failure.position) {
                stored.record.attempts += 1;
                stored.retry_at = failure.retry_at;
                stored.parked = failure.retry_at.is_none();
            }
        }
        Ok(())
    }

    async fn unpark_all(&self) -> Result<u64, OutboxError> {
        let mut state = self.state();
        let mut count = 0;
        for stored in state.records.values_mut().filter(|stored| stored.parked) {
            stored.parked = false;
            stored.retry_at = None;
            count += 1;
        }
        Ok(count)
    }

    async fn backlog(&self) -> Result<OutboxBacklog, OutboxError> {
        let state = self.state();
        let now = SystemTime::now();
        Ok(OutboxBacklog {
            pending: state.records.len() as u64,
            parked: state
                .records
                .values()
                .filter(|stored| stored.parked)
                .count() as u64,
            oldest_pending: state
                .records
                .values()
                .map(|stored| now.duration_since(stored.committed_at).unwrap_or_default())
                .max(),
        })
    }
}
