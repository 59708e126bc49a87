//! [`StreamsRelayReport`]: what a [`StreamsRelay`](super::StreamsRelay) did between its
//! start and its stop.

/// Counts of what a Streams relay did, returned when it stops.
///
/// # Example
/// ```
/// use dovetail_outbox::dynamodb::StreamsRelayReport;
///
/// let report = StreamsRelayReport::default();
/// assert_eq!(report.published + report.swept, 0);
/// assert!(report.is_clean());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamsRelayReport {
    /// Events read from the stream that the broker accepted. An event published again
    /// after a lost mark (a crash, a lost lease, a store failure) counts each time.
    pub published: u64,
    /// Events the sweeper published: pending records older than `sweep_after` that the
    /// stream did not deliver (or delivered while they were held back).
    pub swept: u64,
    /// Stream records of events already published (by the sweeper, or by an earlier relay
    /// that died before its checkpoint): skipped, not published again.
    pub already_published: u64,
    /// Failed publishes recorded in the outbox as attempts (parked ones included).
    pub failed_attempts: u64,
    /// Events parked, after `max_attempts` failures or at once for an error that is not
    /// retriable.
    pub parked: u64,
    /// Events left pending because an earlier event of their aggregate was not published
    /// (parked, or not yet delivered): the sweeper publishes them, in order, once it is.
    pub held_back: u64,
    /// Pages of stream records handled (`GetRecords` answers with records).
    pub pages: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Checkpoints deleted because nothing needs them any more: another stream's, or
    /// those of shards the stream no longer lists (trimmed).
    pub checkpoints_deleted: u64,
    /// Sweeps run.
    pub sweeps: u64,
    /// Times this relay took the lease with a new fencing token.
    pub lease_takeovers: u64,
    /// Times this relay stopped publishing because its lease was taken over or lapsed.
    pub leases_lost: u64,
    /// Outbox or stream operations that failed (each was retried).
    pub store_errors: u64,
}

impl StreamsRelayReport {
    /// Whether nothing happened that an operator should look at: no event parked, no
    /// store error, no lease lost.
    pub fn is_clean(&self) -> bool {
        self.parked == 0 && self.store_errors == 0 && self.leases_lost == 0
    }
}
