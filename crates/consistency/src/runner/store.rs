//! Where runs are recorded and the runners' lease is kept: the [`RunStore`] port and
//! [`MemoryRunStore`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::error::BoxError;
use crate::runner::record::{RunId, RunRecord, RunStatus, Trigger};

/// The lease a runner holds: only its holder runs checks. `token` grows each time the
/// lease changes hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLease {
    /// The fencing token: higher for each new holder.
    pub token: u64,
}

/// Where runners keep their run records and their lease, shared by every instance that
/// may run checks (one SQLite file, one DynamoDB table).
pub trait RunStore: Send + Sync {
    /// Takes the lease for `owner` for `ttl` when it is free, has lapsed or is `owner`'s
    /// already (then renews it); `None` when another owner holds it.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>>;

    /// Gives the lease up if `owner` holds it.
    ///
    /// # Errors
    /// When the store cannot be reached (the lease then lapses by itself).
    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>>;

    /// Writes `record`, replacing the one of the same id.
    ///
    /// # Errors
    /// When the store cannot be reached or the record not written.
    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>>;

    /// The record of run `id`.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>>;

    /// The latest `limit` runs, newest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>>;

    /// The runs asked for and not started, oldest first.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>>;

    /// When the latest scheduled run was created (milliseconds since the Unix epoch), if
    /// any: the schedule counts its interval from there, across instances.
    ///
    /// # Errors
    /// When the store cannot be reached.
    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>>;
}

impl<T: RunStore + ?Sized> RunStore for std::sync::Arc<T> {
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>> {
        T::acquire_lease(self, owner, ttl)
    }
    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>> {
        T::release_lease(self, owner)
    }
    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        T::save(self, record)
    }
    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>> {
        T::get(self, id)
    }
    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        T::latest(self, limit)
    }
    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        T::queued(self)
    }
    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        T::last_scheduled_ms(self)
    }
}

/// Runs and the lease in memory: for tests, examples, and one instance that needs no
/// history across restarts.
#[derive(Debug, Default)]
pub struct MemoryRunStore {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    runs: BTreeMap<RunId, RunRecord>,
    lease: Option<(String, u64, tokio::time::Instant)>,
    tokens: u64,
}

impl MemoryRunStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RunStore for MemoryRunStore {
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Option<RunLease>, BoxError>> {
        let now = tokio::time::Instant::now();
        let mut state = self.state();
        let granted = match &state.lease {
            Some((holder, token, until)) if holder == owner || *until <= now => {
                Some(if holder == owner {
                    *token
                } else {
                    state.tokens + 1
                })
            }
            Some(_) => None,
            None => Some(state.tokens + 1),
        };
        if let Some(token) = granted {
            state.tokens = state.tokens.max(token);
            state.lease = Some((owner.to_owned(), token, now + ttl));
        }
        Box::pin(async move { Ok(granted.map(|token| RunLease { token })) })
    }

    fn release_lease(&self, owner: &str) -> BoxFuture<'_, Result<(), BoxError>> {
        let mut state = self.state();
        if state
            .lease
            .as_ref()
            .is_some_and(|(holder, _, _)| holder == owner)
        {
            state.lease = None;
        }
        Box::pin(async { Ok(()) })
    }

    fn save(&self, record: &RunRecord) -> BoxFuture<'_, Result<(), BoxError>> {
        self.state().runs.insert(record.id, record.clone());
        Box::pin(async { Ok(()) })
    }

    fn get(&self, id: RunId) -> BoxFuture<'_, Result<Option<RunRecord>, BoxError>> {
        let found = self.state().runs.get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn latest(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        let latest = self
            .state()
            .runs
            .values()
            .rev()
            .take(limit)
            .cloned()
            .collect();
        Box::pin(async move { Ok(latest) })
    }

    fn queued(&self) -> BoxFuture<'_, Result<Vec<RunRecord>, BoxError>> {
        let queued = self
            .state()
            .runs
            .values()
            .filter(|run| run.status == RunStatus::Queued)
            .cloned()
            .collect();
        Box::pin(async move { Ok(queued) })
    }

    fn last_scheduled_ms(&self) -> BoxFuture<'_, Result<Option<u64>, BoxError>> {
        let last = self
            .state()
            .runs
            .values()
            .filter(|run| run.trigger == Trigger::Scheduled)
            .map(|run| run.created_at_ms)
            .max();
        Box::pin(async move { Ok(last) })
    }
}
