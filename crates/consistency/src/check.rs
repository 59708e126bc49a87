//! The check: compare digests from the full key space down, bisect only the ranges that
//! differ, and diff the entries of the small ranges left.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryFutureExt as _;
use futures_util::future::try_join;

use crate::bucket::{BUCKETS, BucketRange};
use crate::diff::{classify, merge, sort};
use crate::digest::Digest;
use crate::error::{CheckError, ViewOperation};
use crate::report::{CheckReport, Cost, Difference, Drift, Side};
use crate::view::{Entry, View};

/// How a [`Check`] runs.
///
/// ```
/// use std::time::Duration;
/// use dovetail_consistency::CheckConfig;
///
/// let config = CheckConfig { expected_lag: Duration::from_secs(5), ..CheckConfig::default() };
/// assert_eq!(config.leaf_buckets, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    /// Ranges of this many buckets or fewer are not bisected further: their entries are
    /// read from both sides and compared. Default 1: the fewest entries read, at the cost
    /// of one more digest read per side and level. At least 1.
    pub leaf_buckets: u32,
    /// How long the owner's writes may take to reach the replica. A difference on a key
    /// the owner changed after `now - expected_lag` (the watermark) is a write in flight:
    /// it goes to [`CheckReport::recheck`] instead of the differences. Default 30 s.
    pub expected_lag: Duration,
    /// The most differences and recheck keys (together) to list; the check stops reading once it
    /// has this many and sets [`CheckReport::truncated`]. Default 1,000.
    pub max_differences: usize,
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            leaf_buckets: 1,
            expected_lag: Duration::from_secs(30),
            max_differences: 1_000,
        }
    }
}

/// One check of a replica against its owner (the source of truth).
///
/// Compares the digests of the full bucket range on both sides; where they differ, splits
/// the range in two and compares again (reading the left half's digest and computing the
/// right one as the whole minus the left), down to ranges of
/// [`leaf_buckets`](CheckConfig::leaf_buckets), whose entries it reads from both sides
/// and compares key by key. Ranges are visited in bucket order, so the differences come
/// out in (bucket, key) order.
///
/// The two sides' digests are read concurrently. A leaf's entries are read from the
/// replica first and from the owner after: a replica only holds versions its owner wrote
/// before, so with that order a write in flight can make the replica look behind (and
/// then the owner's change time puts the key in `recheck`) but never ahead; a
/// [`Drift::ReplicaAhead`] is always a bug.
///
/// See the [crate docs](crate) for an example and the cost.
#[derive(Debug, Clone)]
pub struct Check<S, R> {
    source: S,
    replica: R,
    config: CheckConfig,
}

impl<S: View, R: View> Check<S, R> {
    /// A check of `replica` against `source`.
    pub fn new(source: S, replica: R, config: CheckConfig) -> Self {
        Self {
            source,
            replica,
            config,
        }
    }

    /// Runs the check now, with the watermark at the system clock's now minus
    /// [`expected_lag`](CheckConfig::expected_lag).
    ///
    /// # Errors
    ///
    /// [`CheckError::View`] when either side cannot be read, [`CheckError::InvalidConfig`]
    /// when `leaf_buckets` is 0.
    pub async fn run(&self) -> Result<CheckReport, CheckError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        self.run_at(now_ms).await
    }

    /// Runs the check as if it were `now_ms` (milliseconds since the Unix epoch): the
    /// watermark is `now_ms` minus [`expected_lag`](CheckConfig::expected_lag). For
    /// tests, and for callers with a clock of their own.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    pub async fn run_at(&self, now_ms: u64) -> Result<CheckReport, CheckError> {
        if self.config.leaf_buckets == 0 {
            return Err(CheckError::InvalidConfig {
                reason: "leaf_buckets is 0; use 1 or more (1 reads the fewest entries)",
            });
        }
        let leaf_buckets = self.config.leaf_buckets.min(BUCKETS);
        let mut found = Found {
            report: CheckReport {
                differences: Vec::new(),
                truncated: false,
                recheck: Vec::new(),
                counts: Default::default(),
                watermark_ms: now_ms.saturating_sub(millis(self.config.expected_lag)),
                source_cost: Cost::default(),
                replica_cost: Cost::default(),
            },
            max: self.config.max_differences,
        };

        let full = BucketRange::FULL;
        let (source, replica) = self.digests(full, &mut found.report).await?;
        // Depth first, left half first: the differences come out in bucket order.
        let mut pending = vec![(full, source, replica)];
        while let Some((range, source, replica)) = pending.pop() {
            if source == replica {
                continue;
            }
            if found.is_full() {
                found.report.truncated = true;
                break;
            }
            match range.split() {
                Some((left, right)) if range.len() > leaf_buckets => {
                    let (left_source, left_replica) = self.digests(left, &mut found.report).await?;
                    pending.push((right, source - left_source, replica - left_replica));
                    pending.push((left, left_source, left_replica));
                }
                _ => self.compare_entries(range, &mut found).await?,
            }
        }
        Ok(found.report)
    }

    /// Both sides' digests of `range`, read concurrently.
    async fn digests(
        &self,
        range: BucketRange,
        report: &mut CheckReport,
    ) -> Result<(Digest, Digest), CheckError> {
        let source = self
            .source
            .digest(range)
            .map_err(move |source| view_error(Side::Source, ViewOperation::Digest, range, source));
        let replica = self
            .replica
            .digest(range)
            .map_err(move |source| view_error(Side::Replica, ViewOperation::Digest, range, source));
        let digests = try_join(source, replica).await;
        report.source_cost.digests_read += 1;
        report.replica_cost.digests_read += 1;
        digests
    }

    /// Reads the entries of `range` from both sides (the replica first, see [`Check`])
    /// and records how they differ.
    async fn compare_entries(
        &self,
        range: BucketRange,
        found: &mut Found,
    ) -> Result<(), CheckError> {
        let mut replica =
            self.replica.entries(range).await.map_err(|source| {
                view_error(Side::Replica, ViewOperation::Entries, range, source)
            })?;
        count_entries(&mut found.report.replica_cost, &replica);
        let mut source =
            self.source.entries(range).await.map_err(|source| {
                view_error(Side::Source, ViewOperation::Entries, range, source)
            })?;
        count_entries(&mut found.report.source_cost, &source);
        sort(&mut source);
        sort(&mut replica);
        merge(&source, &replica, |s, r| {
            if let Some(drift) = classify(s, r) {
                found.record(s, r, drift);
            }
        });
        Ok(())
    }
}

/// The findings so far.
struct Found {
    report: CheckReport,
    max: usize,
}

impl Found {
    fn is_full(&self) -> bool {
        self.report.differences.len() + self.report.recheck.len() >= self.max
    }

    fn record(&mut self, source: Option<&Entry>, replica: Option<&Entry>, drift: Drift) {
        let Some(key) = source.or(replica).map(|entry| &entry.key) else {
            return;
        };
        let in_flight = source
            .and_then(|entry| entry.changed_at_ms)
            .is_some_and(|changed| changed > self.report.watermark_ms);
        if let Drift::ReplicaAhead {
            source_version,
            replica_version,
        } = drift
        {
            tracing::error!(
                key = %key,
                source_version,
                replica_version,
                "a replica holds a version its owner never wrote; highest-version-wins is broken \
                 in the replica's projection or in the owner's versioning"
            );
        } else if in_flight {
            if !self.is_full() {
                self.report.recheck.push(key.clone());
            } else {
                self.report.truncated = true;
            }
            return;
        }
        self.report.counts.count(drift);
        if self.is_full() {
            self.report.truncated = true;
        } else {
            self.report
                .differences
                .push(Difference::new(key.clone(), drift));
        }
    }
}

fn count_entries(cost: &mut Cost, entries: &[Entry]) {
    cost.entry_reads += 1;
    cost.entries_read += entries.len() as u64;
}

fn view_error(
    side: Side,
    operation: ViewOperation,
    range: BucketRange,
    source: crate::error::ViewError,
) -> CheckError {
    CheckError::View {
        side,
        operation,
        range,
        source,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
