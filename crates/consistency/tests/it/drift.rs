//! Property: from any base set and any injected divergences, the check finds exactly
//! the injected differences, with the right kinds, and nothing else; an owner's write
//! after the watermark goes to `recheck` instead.

use std::collections::{BTreeMap, BTreeSet};

use std::time::Duration;

use dovetail_consistency::{BUCKETS, Check, CheckConfig, Drift, Entry, MemoryView, bucket};

const NOW_MS: u64 = 1_800_000_000_000;
const LAG: Duration = Duration::from_secs(10);
use proptest::prelude::*;

/// What to do to one key, and the drift it should produce (if any).
#[derive(Debug, Clone, Copy)]
enum Divergence {
    /// The replica lost the key.
    Missing,
    /// The replica holds a key the owner never had.
    Extra,
    /// The owner moved on; the replica did not.
    Behind,
    /// The replica holds a version the owner never wrote.
    Ahead,
    /// The owner deleted the key; the replica still holds it.
    MissedDelete,
    /// The replica applied a delete and missed the re-creation.
    MissedRecreate,
    /// The owner purged its tombstone; the replica still holds the key.
    ExtraAfterPurge,
    /// Both deleted it (no drift).
    BothDeleted,
    /// The owner deleted it, the replica purged its tombstone (no drift).
    ReplicaPurged,
    /// The owner deleted it twice over; the replica saw the first delete (no drift).
    OlderReplicaTombstone,
}

fn divergence() -> impl Strategy<Value = Divergence> {
    use Divergence::*;
    prop_oneof![
        Just(Missing),
        Just(Extra),
        Just(Behind),
        Just(Ahead),
        Just(MissedDelete),
        Just(MissedRecreate),
        Just(ExtraAfterPurge),
        Just(BothDeleted),
        Just(ReplicaPurged),
        Just(OlderReplicaTombstone),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_check_finds_exactly_the_injected_differences(
        base in prop::collection::btree_map(0..5_000_u32, 1..50_u64, 1..400),
        divergences in prop::collection::vec(
            (any::<prop::sample::Index>(), 1..5_u64, divergence(), any::<bool>()),
            0..40,
        ),
        leaf_buckets in prop_oneof![Just(1_u32), Just(2), Just(3), Just(16), Just(BUCKETS)],
    ) {
        let (owner, replica) = (MemoryView::new(), MemoryView::new());
        let keys: Vec<String> = base.keys().map(|i| format!("key-{i}")).collect();
        for (key, version) in keys.iter().zip(base.values()) {
            owner.put(key.clone(), *version);
            replica.put(key.clone(), *version);
        }

        let mut expected = BTreeMap::new();
        let mut touched = BTreeSet::new();
        let mut expected_recheck = BTreeSet::new();
        for (n, (index, step, divergence, in_flight)) in divergences.into_iter().enumerate() {
            // The owner's writes happened a second ago (in flight) or a minute ago.
            let changed_at = if in_flight { NOW_MS - 1_000 } else { NOW_MS - 60_000 };
            let key = keys[index.index(keys.len())].clone();
            if matches!(divergence, Divergence::Extra) {
                let extra = format!("extra-{n}");
                replica.put(extra.clone(), step);
                expected.insert(extra, Drift::ExtraInReplica { replica_version: step });
                continue;
            }
            if !touched.insert(key.clone()) {
                continue;
            }
            let v = owner.get(&key).unwrap().version;
            let drift = match divergence {
                Divergence::Missing => {
                    replica.forget(&key);
                    Some(Drift::MissingInReplica { source_version: v })
                }
                Divergence::Behind => {
                    owner.insert(Entry::live(key.clone(), v + step).changed_at(changed_at));
                    if in_flight {
                        expected_recheck.insert(key.clone());
                        continue;
                    }
                    Some(Drift::ReplicaBehind { source_version: v + step, replica_version: v })
                }
                Divergence::Ahead => {
                    replica.put(key.clone(), v + step);
                    Some(Drift::ReplicaAhead { source_version: v, replica_version: v + step })
                }
                Divergence::MissedDelete => {
                    owner.insert(Entry::tombstone(key.clone(), v + step).changed_at(changed_at));
                    if in_flight {
                        expected_recheck.insert(key.clone());
                        continue;
                    }
                    Some(Drift::MissedDelete { source_version: v + step, replica_version: v })
                }
                Divergence::MissedRecreate => {
                    replica.delete(key.clone(), v + 1);
                    owner.put(key.clone(), v + 1 + step);
                    Some(Drift::ReplicaBehind { source_version: v + 1 + step, replica_version: v + 1 })
                }
                Divergence::ExtraAfterPurge => {
                    owner.forget(&key);
                    Some(Drift::ExtraInReplica { replica_version: v })
                }
                Divergence::BothDeleted => {
                    owner.delete(key.clone(), v + step);
                    replica.delete(key.clone(), v + step);
                    None
                }
                Divergence::ReplicaPurged => {
                    owner.delete(key.clone(), v + step);
                    replica.forget(&key);
                    None
                }
                Divergence::OlderReplicaTombstone => {
                    replica.delete(key.clone(), v + 1);
                    owner.delete(key.clone(), v + 1 + step);
                    None
                }
                Divergence::Extra => None,
            };
            if let Some(drift) = drift {
                expected.insert(key, drift);
            }
        }

        let config = CheckConfig { leaf_buckets, max_differences: 10_000, expected_lag: LAG };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let report = runtime.block_on(Check::new(&owner, &replica, config).run_at(NOW_MS)).unwrap();

        let found: BTreeMap<String, Drift> =
            report.differences.iter().map(|d| (d.key.clone(), d.drift)).collect();
        prop_assert_eq!(found.len(), report.differences.len(), "a key reported twice");
        prop_assert_eq!(&found, &expected);
        let recheck: BTreeSet<String> = report.recheck.iter().cloned().collect();
        prop_assert_eq!(recheck.len(), report.recheck.len(), "a key rechecked twice");
        prop_assert_eq!(recheck, expected_recheck);
        prop_assert!(!report.truncated);
        prop_assert_eq!(report.counts.total(), expected.len() as u64);
        let ahead = expected.values().filter(|d| matches!(d, Drift::ReplicaAhead { .. })).count();
        prop_assert_eq!(report.counts.replica_ahead, ahead as u64);
        prop_assert!(report.differences.is_sorted_by_key(|d| (bucket(&d.key), d.key.clone())));
        prop_assert_eq!(report.is_consistent(), expected.is_empty());
        prop_assert_eq!(owner.reads().entries, report.source_cost.entries_read);
        prop_assert_eq!(replica.reads().digests, report.replica_cost.digests_read);
    }
}
