//! An in-memory view, for tests and examples: a sorted map of entries and a digest per
//! bucket kept up to date on each write, counting the reads it serves.

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::bucket::{BUCKETS, BucketRange, bucket};
use crate::digest::Digest;
use crate::error::ViewError;
use crate::view::{Entry, View};

/// A [`View`] held in memory, for tests and examples (not a store to run a service on:
/// nothing is durable, and every read takes one lock).
///
/// It stores what it is given, without highest-version-wins, so that a test can build
/// any state, impossible ones included (a replica ahead of its owner). It keeps a
/// [`Digest`] per bucket up to date on each write, as a real store would in the write's
/// transaction, and counts the reads it serves ([`reads`](Self::reads)), so that a test
/// can assert what a check cost.
///
/// ```
/// use dovetail_consistency::{BucketRange, Digest, Entry, MemoryView};
///
/// let view = MemoryView::new();
/// view.put("policy-1", 1);
/// view.put("policy-1", 2);
/// view.delete("policy-2", 5);
/// assert_eq!(view.get("policy-1"), Some(Entry::live("policy-1", 2)));
/// assert_eq!(view.digest_of(BucketRange::FULL), Digest::of([&Entry::live("policy-1", 2)]));
/// assert_eq!(view.len(), 2, "the tombstone is kept");
/// ```
#[derive(Debug)]
pub struct MemoryView {
    state: Mutex<State>,
    digests_read: AtomicU64,
    entry_reads: AtomicU64,
    entries_read: AtomicU64,
}

#[derive(Debug)]
struct State {
    entries: BTreeMap<(u32, String), Entry>,
    buckets: Vec<Digest>,
}

/// The reads a [`MemoryView`] served since it was made or last
/// [reset](MemoryView::reset_reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryReads {
    /// Calls of [`View::digest`].
    pub digests: u64,
    /// Calls of [`View::entries`].
    pub entry_reads: u64,
    /// Entries those calls returned.
    pub entries: u64,
}

impl Default for MemoryView {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryView {
    /// An empty view.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                entries: BTreeMap::new(),
                buckets: vec![Digest::EMPTY; BUCKETS as usize],
            }),
            digests_read: AtomicU64::new(0),
            entry_reads: AtomicU64::new(0),
            entries_read: AtomicU64::new(0),
        }
    }

    /// Stores `entry` in place of whatever the key held, and returns that.
    pub fn insert(&self, entry: Entry) -> Option<Entry> {
        let mut state = self.lock();
        let bucket = entry.bucket();
        let index = bucket as usize;
        state.buckets[index].add_entry(&entry);
        let old = state.entries.insert((bucket, entry.key.clone()), entry);
        if let Some(old) = &old {
            state.buckets[index].remove_entry(old);
        }
        old
    }

    /// Stores `key` live at `version`, with no change time.
    pub fn put(&self, key: impl Into<String>, version: u64) -> Option<Entry> {
        self.insert(Entry::live(key, version))
    }

    /// Stores a tombstone for `key` at `version`, with no change time.
    pub fn delete(&self, key: impl Into<String>, version: u64) -> Option<Entry> {
        self.insert(Entry::tombstone(key, version))
    }

    /// Forgets `key` altogether (a purged tombstone, or a key never written), and returns
    /// what it held.
    pub fn forget(&self, key: &str) -> Option<Entry> {
        let mut state = self.lock();
        let bucket = bucket(key);
        let old = state.entries.remove(&(bucket, key.to_owned()));
        if let Some(old) = &old {
            state.buckets[bucket as usize].remove_entry(old);
        }
        old
    }

    /// What the view holds for `key` (not counted as a read).
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.lock()
            .entries
            .get(&(bucket(key), key.to_owned()))
            .cloned()
    }

    /// How many entries, tombstones included.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the view holds no entry, not even a tombstone.
    pub fn is_empty(&self) -> bool {
        self.lock().entries.is_empty()
    }

    /// The digest of `range` (not counted as a read).
    pub fn digest_of(&self, range: BucketRange) -> Digest {
        let state = self.lock();
        state.buckets[range.start() as usize..range.end() as usize]
            .iter()
            .fold(Digest::EMPTY, |sum, digest| sum + *digest)
    }

    /// The entries of `range` in (bucket, key) order (not counted as a read).
    pub fn entries_of(&self, range: BucketRange) -> Vec<Entry> {
        let from = Bound::Included((range.start(), String::new()));
        let to = Bound::Excluded((range.end(), String::new()));
        self.lock()
            .entries
            .range((from, to))
            .map(|(_, entry)| entry.clone())
            .collect()
    }

    /// The reads served so far.
    pub fn reads(&self) -> MemoryReads {
        MemoryReads {
            digests: self.digests_read.load(Ordering::Relaxed),
            entry_reads: self.entry_reads.load(Ordering::Relaxed),
            entries: self.entries_read.load(Ordering::Relaxed),
        }
    }

    /// Starts counting reads from zero again.
    pub fn reset_reads(&self) {
        self.digests_read.store(0, Ordering::Relaxed);
        self.entry_reads.store(0, Ordering::Relaxed);
        self.entries_read.store(0, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves no half-done write: each one updates the
        // map and the digest under the lock with no fallible step in between.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl View for MemoryView {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        self.digests_read.fetch_add(1, Ordering::Relaxed);
        ready(Ok(self.digest_of(range)))
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        let entries = self.entries_of(range);
        self.entry_reads.fetch_add(1, Ordering::Relaxed);
        self.entries_read
            .fetch_add(entries.len() as u64, Ordering::Relaxed);
        ready(Ok(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_digests_follow_every_write() {
        let view = MemoryView::new();
        for i in 0..500 {
            view.put(format!("k{i}"), 1);
        }
        for i in 0..100 {
            view.put(format!("k{i}"), 2);
        }
        for i in 100..150 {
            view.delete(format!("k{i}"), 3);
        }
        for i in 150..160 {
            view.forget(&format!("k{i}"));
        }
        let all = view.entries_of(BucketRange::FULL);
        assert_eq!(all.len(), 490);
        assert_eq!(view.digest_of(BucketRange::FULL), Digest::of(&all));
        assert_eq!(view.digest_of(BucketRange::FULL).count, 440);
        let (left, right) = BucketRange::FULL.split().expect("splits");
        assert_eq!(
            view.digest_of(left),
            Digest::of(all.iter().filter(|e| left.contains(e.bucket())))
        );
        assert_eq!(
            view.digest_of(left) + view.digest_of(right),
            view.digest_of(BucketRange::FULL)
        );
    }

    #[test]
    fn entries_come_in_bucket_then_key_order_within_the_range() {
        let view = MemoryView::new();
        for i in 0..2_000 {
            view.put(format!("k{i}"), 1);
        }
        let range = BucketRange::new(100, 300).expect("valid");
        let entries = view.entries_of(range);
        assert!(entries.iter().all(|e| range.contains(e.bucket())));
        assert!(entries.is_sorted_by_key(|e| (e.bucket(), e.key.clone())));
        let expected = (0..2_000)
            .filter(|i| range.contains(bucket(&format!("k{i}"))))
            .count();
        assert_eq!(entries.len(), expected);
    }
}
