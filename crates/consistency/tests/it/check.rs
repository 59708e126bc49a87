//! The check's behaviour on in-memory views: writes in flight, cost, the cap, errors.

use std::future::{Future, ready};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use dovetail_consistency::{
    BUCKETS, BucketRange, Check, CheckConfig, CheckError, Digest, Drift, Entry, MemoryView, Side,
    View, ViewError, ViewOperation,
};

const NOW_MS: u64 = 1_800_000_000_000;

fn twins(items: usize) -> (MemoryView, MemoryView) {
    let (owner, replica) = (MemoryView::new(), MemoryView::new());
    for i in 0..items {
        owner.put(format!("item-{i}"), 1);
        replica.put(format!("item-{i}"), 1);
    }
    (owner, replica)
}

#[tokio::test]
async fn a_write_in_flight_is_rechecked_not_reported() {
    let (owner, replica) = twins(1_000);
    // Changed a second ago: the replica may not have it yet.
    owner.insert(Entry::live("item-1", 2).changed_at(NOW_MS - 1_000));
    // Changed a minute ago: the replica should have it by now.
    owner.insert(Entry::live("item-2", 2).changed_at(NOW_MS - 60_000));
    // Deleted a second ago.
    owner.insert(Entry::tombstone("item-3", 2).changed_at(NOW_MS - 1_000));
    // Ahead is a bug whatever the owner's change time.
    owner.insert(Entry::live("item-4", 2).changed_at(NOW_MS - 1_000));
    replica.put("item-4", 3);

    let config = CheckConfig {
        expected_lag: Duration::from_secs(5),
        ..CheckConfig::default()
    };
    let report = Check::new(&owner, &replica, config)
        .run_at(NOW_MS)
        .await
        .unwrap();

    assert_eq!(report.watermark_ms, NOW_MS - 5_000);
    let mut recheck = report.recheck.clone();
    recheck.sort();
    assert_eq!(recheck, ["item-1", "item-3"]);
    let mut found: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.drift))
        .collect();
    found.sort_by_key(|(key, _)| *key);
    assert_eq!(
        found,
        [
            (
                "item-2",
                Drift::ReplicaBehind {
                    source_version: 2,
                    replica_version: 1
                }
            ),
            (
                "item-4",
                Drift::ReplicaAhead {
                    source_version: 2,
                    replica_version: 3
                }
            ),
        ]
    );
    assert_eq!(report.counts.replica_ahead, 1);
    assert_eq!(report.counts.total(), 2);
    assert!(!report.is_consistent());

    // The next round, once the lag has passed, reports what is still there.
    let later = Check::new(&owner, &replica, CheckConfig::default())
        .run_at(NOW_MS + 60_000)
        .await
        .unwrap();
    assert!(later.recheck.is_empty());
    assert_eq!(later.counts.total(), 4);
}

#[tokio::test]
async fn ten_differences_in_100k_items_read_a_small_fraction() {
    let items = 100_000;
    let (owner, replica) = twins(items);
    for i in 0..10 {
        owner.put(format!("item-{}", i * 9_973), 2);
    }
    let report = Check::new(&owner, &replica, CheckConfig::default())
        .run()
        .await
        .unwrap();

    assert_eq!(report.differences.len(), 10);
    assert!(report.differences.iter().all(|d| matches!(
        d.drift,
        Drift::ReplicaBehind {
            source_version: 2,
            replica_version: 1
        }
    )));
    for cost in [report.source_cost, report.replica_cost] {
        assert!(
            cost.entries_read < items as u64 / 20,
            "read {} of {items} entries",
            cost.entries_read
        );
        // One digest for the whole, then at most one a level (12 levels) a difference.
        assert!(
            cost.digests_read <= 1 + 10 * u64::from(BUCKETS.ilog2()),
            "{cost:?}"
        );
        assert_eq!(cost.entry_reads, 10, "one leaf bucket a difference");
    }
    // The report's counters agree with what the views served.
    assert_eq!(owner.reads().entries, report.source_cost.entries_read);
    assert_eq!(replica.reads().entries, report.replica_cost.entries_read);
    assert_eq!(owner.reads().digests, report.source_cost.digests_read);
    assert_eq!(replica.reads().entry_reads, report.replica_cost.entry_reads);
}

#[tokio::test]
async fn identical_stores_cost_one_digest_a_side() {
    let (owner, replica) = twins(10_000);
    // Tombstones kept on one side only do not count.
    owner.delete("gone", 4);
    // Views are taken by value, by reference or shared.
    let (owner, replica) = (Arc::new(owner), Arc::new(replica));
    let report = Check::new(
        Arc::clone(&owner),
        Arc::clone(&replica),
        CheckConfig::default(),
    )
    .run()
    .await
    .unwrap();
    assert!(report.is_consistent());
    assert_eq!(report.source_cost.digests_read, 1);
    assert_eq!(report.replica_cost.digests_read, 1);
    assert_eq!(
        report.source_cost.entries_read + report.replica_cost.entries_read,
        0
    );
}

#[tokio::test]
async fn the_check_stops_at_max_differences_and_says_so() {
    let (owner, replica) = twins(5_000);
    for i in 0..50 {
        replica.forget(&format!("item-{}", i * 97));
    }
    let capped = CheckConfig {
        max_differences: 10,
        ..CheckConfig::default()
    };
    let report = Check::new(&owner, &replica, capped).run().await.unwrap();
    assert_eq!(report.differences.len(), 10);
    assert!(report.truncated);
    assert!(report.counts.total() >= 10);
    let full = Check::new(&owner, &replica, CheckConfig::default())
        .run()
        .await
        .unwrap();
    assert_eq!(full.differences.len(), 50);
    assert!(!full.truncated);
    assert_eq!(full.counts.missing_in_replica, 50);
    assert!(report.source_cost.entries_read < full.source_cost.entries_read);
    // In (bucket, key) order, and the capped list is the start of the full one.
    assert!(
        full.differences
            .is_sorted_by_key(|d| (dovetail_consistency::bucket(&d.key), d.key.clone()))
    );
    assert_eq!(report.differences[..], full.differences[..10]);
}

#[tokio::test]
async fn any_leaf_size_finds_the_same_differences() {
    let (owner, replica) = twins(3_000);
    owner.put("item-5", 3);
    replica.put("extra", 1);
    owner.delete("item-6", 2);
    let mut seen = Vec::new();
    for leaf_buckets in [1, 2, 7, 64, BUCKETS, u32::MAX] {
        let config = CheckConfig {
            leaf_buckets,
            ..CheckConfig::default()
        };
        let report = Check::new(&owner, &replica, config).run().await.unwrap();
        seen.push(report.differences);
    }
    assert_eq!(seen[0].len(), 3);
    assert!(seen.iter().all(|found| *found == seen[0]), "{seen:?}");
}

/// A view whose backend is down.
struct Down;

impl View for Down {
    fn digest(&self, _: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        ready(Err(ViewError::new(
            "test",
            io::Error::other("connection refused"),
        )))
    }

    fn entries(
        &self,
        _: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        ready(Err(ViewError::new(
            "test",
            io::Error::other("connection refused"),
        )))
    }
}

#[tokio::test]
async fn a_failing_view_fails_the_check_naming_the_side() {
    let owner = MemoryView::new();
    let error = Check::new(&owner, Down, CheckConfig::default())
        .run()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CheckError::View {
                side: Side::Replica,
                operation: ViewOperation::Digest,
                range: BucketRange::FULL,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "the check could not read the digest of buckets 0..4096 from the replica"
    );
}

#[tokio::test]
async fn a_leaf_size_of_zero_is_refused() {
    let view = MemoryView::new();
    let config = CheckConfig {
        leaf_buckets: 0,
        ..CheckConfig::default()
    };
    let error = Check::new(&view, &view, config).run().await.unwrap_err();
    assert!(
        matches!(error, CheckError::InvalidConfig { .. }),
        "{error:?}"
    );
}
