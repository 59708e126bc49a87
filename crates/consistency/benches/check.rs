//! Benchmark of the check against a full comparison, on in-memory views (not a timed
//! test): 100,000 items with 0, 10 and 1,000 differences.
//!
//! Run with: `cargo bench -p dovetail-consistency`.
//! For each case, 5 rounds of the check (default config: leaf ranges of one bucket) and
//! of a full comparison (every entry of both sides read with one `entries(FULL)` call
//! each, then merged in (bucket, key) order), alternating which goes first. Prints, per
//! side, the entries read, range reads and digests read, the median times, and the
//! ratios: entries read / 100,000 and check time / full-comparison time.
//!
//! The differences cycle through four kinds: an update the replica missed, a delete it
//! missed, an item it lost, an item it holds extra. `MemoryView` answers a digest by
//! summing its per-bucket digests (up to 2,048 of them for a half of the key space), as a
//! SQL store would sum its bucket rows.
//!
//! What the figures showed (a two-core VM shared with other builds, so the times are
//! noisy; the counts are exact): per side, 0/0/1 (entries / range reads / digests) for no
//! difference, 264/10/85 for 10 (0.26% of the entries) and 22,414/892/2,400 for 1,000
//! (22%); the check took 0.03%, 0.4% and 22% of the full comparison's time (about 95 ms,
//! most of it copying 100,000 entries out of each view).

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use dovetail_consistency::{
    BucketRange, Check, CheckConfig, CheckReport, Entry, MemoryView, View, bucket,
};

const ITEMS: usize = 100_000;
const ROUNDS: usize = 5;

fn stores(differences: usize) -> (MemoryView, MemoryView) {
    let (owner, replica) = (MemoryView::new(), MemoryView::new());
    for i in 0..ITEMS {
        owner.put(format!("item-{i}"), 1);
        replica.put(format!("item-{i}"), 1);
    }
    let stride = ITEMS / differences.max(1);
    for n in 0..differences {
        let key = format!("item-{}", n * stride);
        match n % 4 {
            0 => drop(owner.put(key, 2)),
            1 => drop(owner.delete(key, 2)),
            2 => drop(replica.forget(&key)),
            _ => drop(replica.put(format!("extra-{n}"), 1)),
        }
    }
    (owner, replica)
}

/// Every entry of both sides, compared in (bucket, key) order: how many keys differ.
async fn full_comparison(owner: &MemoryView, replica: &MemoryView) -> usize {
    let source = owner.entries(BucketRange::FULL).await.unwrap();
    let copy = replica.entries(BucketRange::FULL).await.unwrap();
    // The bucket of each entry, computed once: the merge compares (bucket, key).
    let buckets = |entries: &[Entry]| entries.iter().map(|e| bucket(&e.key)).collect::<Vec<_>>();
    let (source_buckets, copy_buckets) = (buckets(&source), buckets(&copy));
    let visible = |e: &Entry| (!e.deleted).then_some(e.version);
    let (mut i, mut j, mut differing) = (0, 0, 0);
    while i < source.len() || j < copy.len() {
        let step = match (at(&source, &source_buckets, i), at(&copy, &copy_buckets, j)) {
            (Some(s), Some(r)) => s.cmp(&r),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (s, r) = match step {
            Ordering::Less => (visible(&source[i]), None),
            Ordering::Greater => (None, visible(&copy[j])),
            Ordering::Equal => (visible(&source[i]), visible(&copy[j])),
        };
        differing += usize::from(s != r);
        i += usize::from(step != Ordering::Greater);
        j += usize::from(step != Ordering::Less);
    }
    differing
}

/// The (bucket, key) of the `i`th entry, if any.
fn at<'a>(entries: &'a [Entry], buckets: &[u32], i: usize) -> Option<(u32, &'a str)> {
    entries.get(i).map(|e| (buckets[i], e.key.as_str()))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    println!(
        "check vs full comparison, {ITEMS} items, {ROUNDS} rounds, medians; \
         per side: entries read / range reads / digests read"
    );
    for differences in [0, 10, 1_000] {
        let (owner, replica) = stores(differences);
        let check = Check::new(&owner, &replica, CheckConfig::default());
        let (mut check_times, mut full_times) = (Vec::new(), Vec::new());
        let mut last: Option<CheckReport> = None;
        let mut full_reads = (0, 0);
        for round in 0..ROUNDS {
            let mut timed_check = || {
                let started = Instant::now();
                let report = runtime.block_on(check.run()).unwrap();
                check_times.push(started.elapsed());
                report
            };
            let mut timed_full = || {
                owner.reset_reads();
                replica.reset_reads();
                let started = Instant::now();
                let found = runtime.block_on(full_comparison(&owner, &replica));
                full_times.push(started.elapsed());
                assert_eq!(found, differences, "the full comparison disagrees");
                full_reads = (owner.reads().entries, replica.reads().entries);
            };
            let report = if round % 2 == 0 {
                let report = timed_check();
                timed_full();
                report
            } else {
                timed_full();
                timed_check()
            };
            assert_eq!(report.counts.total(), differences as u64, "{report:?}");
            last = Some(report);
        }
        let report = last.unwrap();
        let (check_time, full_time) = (median(check_times), median(full_times));
        let (s, r) = (report.source_cost, report.replica_cost);
        println!(
            "{differences:>5} differences: check source {}/{}/{}, replica {}/{}/{}; \
             full source {}, replica {}",
            s.entries_read,
            s.entry_reads,
            s.digests_read,
            r.entries_read,
            r.entry_reads,
            r.digests_read,
            full_reads.0,
            full_reads.1,
        );
        println!(
            "       entries read / {ITEMS}: source {:.4}, replica {:.4}; \
             time check {check_time:?}, full {full_time:?}, ratio {:.4}",
            s.entries_read as f64 / ITEMS as f64,
            r.entries_read as f64 / ITEMS as f64,
            check_time.as_secs_f64() / full_time.as_secs_f64(),
        );
    }
}
