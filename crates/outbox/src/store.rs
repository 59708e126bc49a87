//! [`OutboxStore`]: what a relay sees of an outbox, and [`RelayLease`], the lease with a
//! fencing token that lets several relays run while only one publishes.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::{Failure, OutboxBacklog, OutboxError, OutboxRecord, Position};

/// The right to publish from an outbox until `held_until`, proven by a fencing token that
/// grows with every new holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLease {
    /// The relay instance holding it.
    pub owner: String,
    /// Grows with every change of holder; writes with an older token are refused.
    pub fencing_token: u64,
    /// When it lapses unless renewed.
    pub held_until: SystemTime,
}

/// The relay's port to an outbox.
///
/// Rules every implementation keeps (the relay's guarantees rest on them):
/// - [`fetch_ready`](Self::fetch_ready) returns records in commit order, and a record
///   only when every earlier record of its aggregate is published: never behind a parked
///   record, nor behind one waiting for its retry time. Records of one aggregate come in
///   sequence order, so a `Publisher` (which keeps per-aggregate order within a batch)
///   can take them in one batch.
/// - Writes that take a lease ([`mark_published`](Self::mark_published),
///   [`mark_failed`](Self::mark_failed)) fail with [`OutboxError::LeaseLost`] when the
///   lease's fencing token is no longer the current one, and change nothing.
/// - [`acquire_lease`](Self::acquire_lease) grants the lease when it is free or lapsed
///   (with a higher fencing token), renews it for its holder (same token), and answers
///   `None` while another holder's lease is live.
/// - Published records are deleted (or expire), so the outbox does not grow.
pub trait OutboxStore: Send + Sync {
    /// Takes or renews the lease for `owner` for `ttl`.
    ///
    /// # Errors
    /// [`OutboxError::Storage`].
    fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<RelayLease>, OutboxError>> + Send;

    /// Gives the lease up, so another relay can take it at once.
    ///
    /// # Errors
    /// [`OutboxError::Storage`]; a lease already lost is not an error.
    fn release_lease(
        &self,
        lease: &RelayLease,
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Up to `limit` records ready to publish, in commit order (see the trait's rules).
    ///
    /// # Errors
    /// [`OutboxError::Storage`].
    fn fetch_ready(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, OutboxError>> + Send;

    /// Up to `limit` ready records like [`fetch_ready`](Self::fetch_ready), leaving out
    /// the records at `except`: a batch the relay is publishing, whose mark has not been
    /// written yet. The default fetches `limit + except.len()` and filters; a store may
    /// leave them out more cheaply.
    ///
    /// # Errors
    /// [`OutboxError::Storage`].
    fn fetch_ready_except(
        &self,
        limit: usize,
        except: &[Position],
    ) -> impl Future<Output = Result<Vec<OutboxRecord>, OutboxError>> + Send {
        let except: HashSet<Position> = except.iter().copied().collect();
        async move {
            let fetched = self.fetch_ready(limit.saturating_add(except.len())).await?;
            Ok(fetched
                .into_iter()
                .filter(|record| !except.contains(&record.position))
                .take(limit)
                .collect())
        }
    }

    /// Records that the broker accepted these records (deletes them).
    ///
    /// # Errors
    /// [`OutboxError::LeaseLost`] when `lease` is stale; [`OutboxError::Storage`].
    fn mark_published(
        &self,
        lease: &RelayLease,
        positions: &[Position],
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// [`mark_published`](Self::mark_published) of `published`, then, when it succeeded,
    /// [`fetch_ready_except`](Self::fetch_ready_except)`(limit, except)`: what a relay
    /// does between two batches, in one round trip where a store can. The outer result
    /// is the mark's, the inner one the fetch's.
    ///
    /// # Errors
    /// The mark's: [`OutboxError::LeaseLost`] when `lease` is stale (nothing is fetched);
    /// [`OutboxError::Storage`].
    fn mark_published_then_fetch(
        &self,
        lease: &RelayLease,
        published: &[Position],
        limit: usize,
        except: &[Position],
    ) -> impl Future<Output = Result<Result<Vec<OutboxRecord>, OutboxError>, OutboxError>> + Send
    {
        async move {
            self.mark_published(lease, published).await?;
            Ok(self.fetch_ready_except(limit, except).await)
        }
    }

    /// Records failed publishes: counts the attempt, keeps the reason, and schedules the
    /// retry or parks the record.
    ///
    /// # Errors
    /// [`OutboxError::LeaseLost`] when `lease` is stale; [`OutboxError::Storage`].
    fn mark_failed(
        &self,
        lease: &RelayLease,
        failures: &[Failure],
    ) -> impl Future<Output = Result<(), OutboxError>> + Send;

    /// Makes every parked record ready again; returns how many.
    ///
    /// # Errors
    /// [`OutboxError::Storage`].
    fn unpark_all(&self) -> impl Future<Output = Result<u64, OutboxError>> + Send;

    /// The lag: pending and parked counts, age of the oldest pending record.
    ///
    /// # Errors
    /// [`OutboxError::Storage`].
    fn backlog(&self) -> impl Future<Output = Result<OutboxBacklog, OutboxError>> + Send;
}
