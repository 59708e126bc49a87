//! The contract suite of `dovetail_consistency::View`: the checks every implementation
//! passes, owners' and replicas', in memory and on real servers alike.
//!
//! A view is read-only, and what a store lets one write differs: a policy store drafts
//! policies under ids the caller picks and raises their versions one by one, a claim
//! store picks its own ids, a replica or a search index takes any key and version. So a
//! check writes through a [`ViewFixture`] the caller implements on the store's own API,
//! which says what it wrote (the [`Entry`] the view must show from then on). Stores that
//! delete (keeping a tombstone) implement [`DeleteFixture`] too and run the delete checks
//! as well; stores that never delete (an owner whose items end in a status) do not, and
//! have no such test, rather than one that passes without checking.
//!
//! Each check takes a fresh, empty store. Run them one test each with
//! [`consistency_contract_tests!`](crate::consistency_contract_tests) (and
//! [`consistency_contract_delete_tests!`](crate::consistency_contract_delete_tests)), or
//! all in one test with [`run_all`] (and [`run_delete_checks`]).
//!
//! # Example
//! ```
//! use dovetail_consistency::{Entry, MemoryView};
//! use dovetail_testkit::consistency_contract::ViewFixture;
//!
//! /// A store that takes any key and version: `create` picks them.
//! struct Memory(MemoryView);
//!
//! impl ViewFixture for Memory {
//!     type View = MemoryView;
//!     fn view(&self) -> &MemoryView {
//!         &self.0
//!     }
//!     async fn create(&self, n: u32) -> Entry {
//!         let entry = Entry::live(format!("item-{n}"), 1);
//!         self.0.insert(entry.clone());
//!         entry
//!     }
//!     async fn update(&self, key: &str) -> Entry {
//!         let version = self.0.get(key).expect("created before").version + 1;
//!         self.0.put(key, version);
//!         Entry::live(key, version)
//!     }
//! }
//!
//! mod memory_view {
//!     // One #[tokio::test] per check.
//!     dovetail_testkit::consistency_contract_tests!(|| async {
//!         super::Memory(dovetail_consistency::MemoryView::new())
//!     });
//! }
//! # fn main() {}
//! ```

use std::collections::BTreeMap;
use std::future::Future;

use dovetail_consistency::{BUCKETS, BucketRange, Digest, Entry, View, bucket};

/// How many items the checks that need a populated store create: enough to fill many
/// buckets and leave most empty, few enough for a server-backed store to write quickly.
pub const ITEMS: u32 = 40;

/// A fresh, empty store under test, written through its own API.
///
/// Each write returns once the view shows it (an index that refreshes on its own
/// schedule refreshes before returning), and panics when the store fails: a fixture is
/// test code. Keys must be distinct across `create` calls.
pub trait ViewFixture: Send + Sync {
    /// The view the checks read.
    type View: View;

    /// The view of the store.
    fn view(&self) -> &Self::View;

    /// Creates the `n`th item (`n` counts from 0, one call per `n`) through the store's
    /// API, under a key no other call used, and returns the entry the view must now
    /// show for it: its key, its version, live. Its change time is not compared.
    fn create(&self, n: u32) -> impl Future<Output = Entry> + Send;

    /// Changes the item `key` (one [`create`](Self::create) made) through the store's
    /// API, to a higher version, and returns the entry the view must now show for it.
    fn update(&self, key: &str) -> impl Future<Output = Entry> + Send;
}

/// A store under test that deletes items and keeps a tombstone of each.
pub trait DeleteFixture: ViewFixture {
    /// Deletes the item `key` (one [`create`](ViewFixture::create) made) through the
    /// store's API, and returns the tombstone the view must now show for it (deleted, at
    /// the deletion's version).
    fn delete(&self, key: &str) -> impl Future<Output = Entry> + Send;
}

/// The names of the checks every view passes, in the order [`run_all`] runs them.
pub const CHECKS: [&str; 6] = [
    "an_empty_store_has_the_empty_digest",
    "entries_are_what_was_written_in_bucket_then_key_order",
    "entries_hold_only_their_range",
    "the_digest_of_a_range_is_the_digest_of_its_entries",
    "digests_add_up_over_split_ranges",
    "an_update_replaces_the_version",
];

/// The names of the checks a view of a store that deletes passes as well, in the order
/// [`run_delete_checks`] runs them.
pub const DELETE_CHECKS: [&str; 2] = [
    "a_delete_leaves_a_tombstone_outside_the_digest",
    "tombstones_are_listed_in_order_with_live_entries",
];

/// Runs every check of [`CHECKS`] in turn, each on a store from `make_fixture`.
///
/// # Panics
/// When a check fails; the message names what went wrong.
pub async fn run_all<F, Make, Fut>(make_fixture: Make)
where
    F: ViewFixture,
    Make: Fn() -> Fut,
    Fut: Future<Output = F>,
{
    an_empty_store_has_the_empty_digest(make_fixture().await).await;
    entries_are_what_was_written_in_bucket_then_key_order(make_fixture().await).await;
    entries_hold_only_their_range(make_fixture().await).await;
    the_digest_of_a_range_is_the_digest_of_its_entries(make_fixture().await).await;
    digests_add_up_over_split_ranges(make_fixture().await).await;
    an_update_replaces_the_version(make_fixture().await).await;
}

/// Runs every check of [`DELETE_CHECKS`] in turn, each on a store from `make_fixture`.
///
/// # Panics
/// When a check fails; the message names what went wrong.
pub async fn run_delete_checks<F, Make, Fut>(make_fixture: Make)
where
    F: DeleteFixture,
    Make: Fn() -> Fut,
    Fut: Future<Output = F>,
{
    a_delete_leaves_a_tombstone_outside_the_digest(make_fixture().await).await;
    tombstones_are_listed_in_order_with_live_entries(make_fixture().await).await;
}

/// One `#[tokio::test]` per check of [`CHECKS`], each on a fixture from `$make_fixture`
/// (an expression giving a closure that returns a future of the fixture). Needs `tokio`
/// with the `macros` and `rt-multi-thread` features in the calling crate.
///
/// # Example
/// See [the module](crate::consistency_contract).
#[macro_export]
macro_rules! consistency_contract_tests {
    ($make_fixture:expr) => {
        $crate::consistency_contract_tests!(@tests $make_fixture;
            an_empty_store_has_the_empty_digest,
            entries_are_what_was_written_in_bucket_then_key_order,
            entries_hold_only_their_range,
            the_digest_of_a_range_is_the_digest_of_its_entries,
            digests_add_up_over_split_ranges,
            an_update_replaces_the_version,
        );
    };
    (@tests $make_fixture:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = ($make_fixture)().await;
                $crate::consistency_contract::$check(fixture).await;
            }
        )+
    };
}

/// One `#[tokio::test]` per check of [`DELETE_CHECKS`], for a fixture that implements
/// [`DeleteFixture`]; as [`consistency_contract_tests!`](crate::consistency_contract_tests).
#[macro_export]
macro_rules! consistency_contract_delete_tests {
    ($make_fixture:expr) => {
        $crate::consistency_contract_tests!(@tests $make_fixture;
            a_delete_leaves_a_tombstone_outside_the_digest,
            tombstones_are_listed_in_order_with_live_entries,
        );
    };
}

/// A fresh, empty store has the empty digest over every range and no entries.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn an_empty_store_has_the_empty_digest<F: ViewFixture>(fixture: F) {
    let view = fixture.view();
    for range in sample_ranges(&[]) {
        assert_eq!(
            digest(view, range).await,
            Digest::EMPTY,
            "the digest of {range} of an empty store"
        );
    }
    assert_eq!(
        entries(view, BucketRange::FULL).await,
        [],
        "the entries of an empty store"
    );
}

/// After [`ITEMS`] creates, the entries of the full range are exactly what the fixture
/// said it wrote, in (bucket, key) order.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn entries_are_what_was_written_in_bucket_then_key_order<F: ViewFixture>(fixture: F) {
    let written = populate(&fixture).await;
    let read = entries(fixture.view(), BucketRange::FULL).await;
    assert_in_order(&read, BucketRange::FULL);
    assert_eq!(
        read,
        expected(&written),
        "the entries of the full range are those written"
    );
}

/// The entries of a range are those of its buckets only, in order: for every range
/// sampled (single buckets of the keys written, their neighbours, halves, quarters, odd
/// ranges), exactly the written entries whose bucket it holds.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn entries_hold_only_their_range<F: ViewFixture>(fixture: F) {
    let written = populate(&fixture).await;
    let all = expected(&written);
    for range in sample_ranges(&all) {
        let read = entries(fixture.view(), range).await;
        assert_in_order(&read, range);
        let wanted: Vec<Entry> = all
            .iter()
            .filter(|entry| range.contains(entry.bucket()))
            .cloned()
            .collect();
        assert_eq!(read, wanted, "the entries of {range}");
    }
}

/// The digest of every range sampled is [`Digest::of`] its entries, and that of the
/// full range the digest of what was written.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn the_digest_of_a_range_is_the_digest_of_its_entries<F: ViewFixture>(fixture: F) {
    let written = populate(&fixture).await;
    let all = expected(&written);
    let view = fixture.view();
    assert_eq!(
        digest(view, BucketRange::FULL).await,
        Digest::of(&all),
        "the digest of the full range is that of the entries written"
    );
    for range in sample_ranges(&all) {
        let read = entries(view, range).await;
        assert_eq!(
            digest(view, range).await,
            Digest::of(&read),
            "the digest of {range} against its entries {read:?}"
        );
    }
}

/// Digests are additive: the digest of a range is the sum of its halves', down four
/// levels from the full range and for every range sampled, and the sum over every
/// single bucket holding a key plus the rest is the whole.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn digests_add_up_over_split_ranges<F: ViewFixture>(fixture: F) {
    let written = populate(&fixture).await;
    let all = expected(&written);
    let view = fixture.view();
    let mut ranges = vec![(BucketRange::FULL, 0)];
    while let Some((range, depth)) = ranges.pop() {
        let Some((left, right)) = range.split() else {
            continue;
        };
        let (whole, left_digest, right_digest) = (
            digest(view, range).await,
            digest(view, left).await,
            digest(view, right).await,
        );
        assert_eq!(
            left_digest + right_digest,
            whole,
            "the digests of {left} and {right} add up to that of {range}"
        );
        if depth < 4 {
            ranges.push((left, depth + 1));
            ranges.push((right, depth + 1));
        }
    }
    for range in sample_ranges(&all) {
        if let Some((left, right)) = range.split() {
            assert_eq!(
                digest(view, left).await + digest(view, right).await,
                digest(view, range).await,
                "the digests of {left} and {right} add up to that of {range}"
            );
        }
    }
    let mut by_bucket = Digest::EMPTY;
    let mut buckets: Vec<u32> = all.iter().map(Entry::bucket).collect();
    buckets.dedup();
    for index in &buckets {
        by_bucket += digest(view, single(*index)).await;
    }
    assert_eq!(
        by_bucket,
        digest(view, BucketRange::FULL).await,
        "the buckets holding keys ({buckets:?}) hold the whole digest"
    );
}

/// An update replaces the version: the key is listed once, at its new version, and the
/// digests of its bucket and of the whole count it once, at that version.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn an_update_replaces_the_version<F: ViewFixture>(fixture: F) {
    let mut written = populate(&fixture).await;
    let view = fixture.view();
    let before = digest(view, BucketRange::FULL).await;
    let keys: Vec<String> = written.keys().step_by(3).cloned().collect();
    for key in &keys {
        let old = written[key].clone();
        let new = fixture.update(key).await;
        assert_eq!(new.key, *key, "update({key}) says it wrote another key");
        assert!(
            new.version > old.version && !new.deleted,
            "update({key}) wrote {new:?} after {old:?}: an update is live at a higher version"
        );
        written.insert(key.clone(), new.clone());
        let bucket_entries = entries(view, single(new.bucket())).await;
        let listed: Vec<&Entry> = bucket_entries
            .iter()
            .filter(|entry| entry.key == *key)
            .collect();
        assert_eq!(
            listed,
            [&without_time(&new)],
            "the entries of {key}'s bucket after its update"
        );
        assert_eq!(
            digest(view, single(new.bucket())).await,
            Digest::of(&bucket_entries),
            "the digest of {key}'s bucket after its update"
        );
    }
    let after = digest(view, BucketRange::FULL).await;
    assert_eq!(after.count, before.count, "updates add no entry");
    assert_ne!(after, before, "updates change the digest");
    assert_eq!(after, Digest::of(&expected(&written)));
}

/// A delete leaves a tombstone at the deletion's version: listed in the entries of its
/// bucket (once, deleted), counted in no digest.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn a_delete_leaves_a_tombstone_outside_the_digest<F: DeleteFixture>(fixture: F) {
    let mut written = populate(&fixture).await;
    let view = fixture.view();
    let key = written
        .keys()
        .next()
        .cloned()
        .expect("populate wrote items");
    let old = written[&key].clone();
    let tombstone = fixture.delete(&key).await;
    assert!(
        tombstone.deleted && tombstone.key == key && tombstone.version > old.version,
        "delete({key}) wrote {tombstone:?} after {old:?}: a tombstone of the key at a higher version"
    );
    written.insert(key.clone(), tombstone.clone());
    let range = single(tombstone.bucket());
    let bucket_entries = entries(view, range).await;
    let listed: Vec<&Entry> = bucket_entries.iter().filter(|e| e.key == key).collect();
    assert_eq!(
        listed,
        [&without_time(&tombstone)],
        "the entries of {key}'s bucket after its delete"
    );
    let live: Vec<&Entry> = bucket_entries.iter().filter(|e| !e.deleted).collect();
    assert_eq!(
        digest(view, range).await,
        Digest::of(live),
        "the digest of {key}'s bucket leaves the tombstone out"
    );
    let whole = digest(view, BucketRange::FULL).await;
    assert_eq!(whole.count, u64::from(ITEMS) - 1, "one fewer live entry");
    assert_eq!(whole, Digest::of(&expected(&written)));
}

/// Tombstones take their place in (bucket, key) order among live entries, and a range's
/// digest is that of its live entries only.
///
/// # Panics
/// When the view does not keep the contract.
pub async fn tombstones_are_listed_in_order_with_live_entries<F: DeleteFixture>(fixture: F) {
    let mut written = populate(&fixture).await;
    let keys: Vec<String> = written.keys().step_by(2).cloned().collect();
    for key in &keys {
        let tombstone = fixture.delete(key).await;
        written.insert(key.clone(), tombstone);
    }
    let all = expected(&written);
    let view = fixture.view();
    let read = entries(view, BucketRange::FULL).await;
    assert_in_order(&read, BucketRange::FULL);
    assert_eq!(read, all, "the entries, tombstones included");
    for range in sample_ranges(&all) {
        let read = entries(view, range).await;
        assert_eq!(
            digest(view, range).await,
            Digest::of(&read),
            "the digest of {range} (its tombstones left out) against {read:?}"
        );
    }
}

/// Creates [`ITEMS`] items; what the fixture says it wrote, by key.
async fn populate<F: ViewFixture>(fixture: &F) -> BTreeMap<String, Entry> {
    let mut written = BTreeMap::new();
    for n in 0..ITEMS {
        let entry = fixture.create(n).await;
        assert!(
            !entry.deleted,
            "create({n}) wrote {entry:?}: a new item is live"
        );
        let key = entry.key.clone();
        assert!(
            written.insert(key.clone(), entry).is_none(),
            "create({n}) reused the key {key}: each create needs a key of its own"
        );
    }
    written
}

/// What the view must list for `written`: in (bucket, key) order, change times left out.
fn expected(written: &BTreeMap<String, Entry>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = written.values().map(without_time).collect();
    entries.sort_by(|a, b| (a.bucket(), &a.key).cmp(&(b.bucket(), &b.key)));
    entries
}

fn without_time(entry: &Entry) -> Entry {
    Entry {
        changed_at_ms: None,
        ..entry.clone()
    }
}

/// The ranges the checks read: the full range, halves and quarters, an odd range, the
/// first and last buckets, and, for a sample of the keys in `entries`, the key's bucket,
/// the empty-or-not buckets beside it and a range of three around it.
fn sample_ranges(entries: &[Entry]) -> Vec<BucketRange> {
    let quarter = BUCKETS / 4;
    let mut ranges = vec![
        BucketRange::FULL,
        range(0, BUCKETS / 2),
        range(BUCKETS / 2, BUCKETS),
        range(quarter, 3 * quarter),
        range(3 * quarter, BUCKETS),
        range(7, 1_000),
        single(0),
        single(BUCKETS - 1),
    ];
    for entry in entries.iter().step_by(4) {
        let at = entry.bucket();
        ranges.push(single(at));
        if at > 0 {
            ranges.push(single(at - 1));
            ranges.push(range(at - 1, (at + 2).min(BUCKETS)));
        }
        if at + 1 < BUCKETS {
            ranges.push(single(at + 1));
        }
    }
    ranges
}

fn range(start: u32, end: u32) -> BucketRange {
    BucketRange::new(start, end).expect("the checks build valid ranges")
}

fn single(index: u32) -> BucketRange {
    BucketRange::single(index).expect("a bucket of the key space")
}

fn assert_in_order(entries: &[Entry], range: BucketRange) {
    for entry in entries {
        assert!(
            range.contains(bucket(&entry.key)),
            "{entry:?} (bucket {}) is listed for {range}",
            entry.bucket()
        );
    }
    for pair in entries.windows(2) {
        assert!(
            (pair[0].bucket(), &pair[0].key) < (pair[1].bucket(), &pair[1].key),
            "entries out of (bucket, key) order, or a key listed twice: {:?} before {:?}",
            pair[0],
            pair[1]
        );
    }
}

async fn digest<V: View>(view: &V, range: BucketRange) -> Digest {
    view.digest(range)
        .await
        .unwrap_or_else(|error| panic!("digest({range}) failed: {}", crate::error_chain(&error)))
}

/// The entries of `range`, change times left out (the checks do not compare them).
async fn entries<V: View>(view: &V, range: BucketRange) -> Vec<Entry> {
    view.entries(range)
        .await
        .unwrap_or_else(|error| panic!("entries({range}) failed: {}", crate::error_chain(&error)))
        .iter()
        .map(without_time)
        .collect()
}

#[cfg(test)]
mod tests {
    use dovetail_consistency::{Entry, MemoryView};

    use super::{DeleteFixture, ViewFixture};

    /// `MemoryView`, which takes any key and version.
    struct Memory(MemoryView);

    impl ViewFixture for Memory {
        type View = MemoryView;

        fn view(&self) -> &MemoryView {
            &self.0
        }

        async fn create(&self, n: u32) -> Entry {
            // Versions of their own per key, so that a view mixing keys up shows.
            let entry = Entry::live(format!("policy-{n}"), u64::from(n % 5) + 1);
            self.0.insert(entry.clone());
            entry
        }

        async fn update(&self, key: &str) -> Entry {
            let version = self.0.get(key).expect("created before").version + 2;
            self.0.put(key, version);
            Entry::live(key, version)
        }
    }

    impl DeleteFixture for Memory {
        async fn delete(&self, key: &str) -> Entry {
            let version = self.0.get(key).expect("created before").version + 1;
            self.0.delete(key, version);
            Entry::tombstone(key, version)
        }
    }

    mod memory_view {
        use dovetail_consistency::MemoryView;

        crate::consistency_contract_tests!(|| async { super::Memory(MemoryView::new()) });
        crate::consistency_contract_delete_tests!(|| async { super::Memory(MemoryView::new()) });
    }

    /// A store that keeps a deleted item live fails the suite: the checks check.
    #[tokio::test]
    #[should_panic(expected = "after its delete")]
    async fn a_store_that_keeps_deleted_items_live_fails() {
        struct Counting(MemoryView);
        impl ViewFixture for Counting {
            type View = MemoryView;
            fn view(&self) -> &MemoryView {
                &self.0
            }
            async fn create(&self, n: u32) -> Entry {
                let entry = Entry::live(format!("k{n}"), 1);
                self.0.insert(entry.clone());
                entry
            }
            async fn update(&self, key: &str) -> Entry {
                self.0.put(key, 2);
                Entry::live(key, 2)
            }
        }
        impl DeleteFixture for Counting {
            async fn delete(&self, key: &str) -> Entry {
                // The bug: the item is kept live at the tombstone's version.
                self.0.put(key, 3);
                Entry::tombstone(key, 3)
            }
        }
        super::a_delete_leaves_a_tombstone_outside_the_digest(Counting(MemoryView::new())).await;
    }
}
