//! The digest of a range of entries: a count and a wrapping sum of entry hashes,
//! additive so that a store can keep one per bucket up to date on each write.

use std::ops::{Add, AddAssign, Sub, SubAssign};

use serde::{Deserialize, Serialize};

use crate::bucket::{FNV_OFFSET_BASIS, fmix64, fnv1a64_extend};
use crate::view::Entry;

/// The stable 64-bit hash of one live entry: [FNV-1a 64](crate::fnv1a64) of the key's
/// UTF-8 bytes followed by the version's 8 little-endian bytes, then MurmurHash3's
/// 64-bit finaliser (`fmix64`) so that nearby versions give unrelated hashes.
///
/// The version has a fixed width, so no two (key, version) pairs hash the same bytes.
/// Tombstones have no hash: they are not part of a [`Digest`] (see there why).
///
/// ```
/// use dovetail_consistency::entry_hash;
///
/// assert_eq!(entry_hash("policy-1", 3), entry_hash("policy-1", 3));
/// assert_ne!(entry_hash("policy-1", 3), entry_hash("policy-1", 4));
/// ```
pub fn entry_hash(key: &str, version: u64) -> u64 {
    let hash = fnv1a64_extend(FNV_OFFSET_BASIS, key.as_bytes());
    fmix64(fnv1a64_extend(hash, &version.to_le_bytes()))
}

/// The digest of the live entries of a range of buckets: how many there are, and the
/// wrapping sum of their [`entry_hash`]es.
///
/// Additive: the digest of a range is the sum of its parts' digests, and the digest of
/// a part is the whole minus the rest. A store keeps one digest per bucket and, in the
/// same transaction as each write, [`remove_entry`](Self::remove_entry)s the entry's old state and
/// [`add_entry`](Self::add_entry)s its new one; the digest of a range is then the sum over its
/// buckets. The check reads the digest of a range's left half only and computes the
/// right one by subtraction.
///
/// Tombstones do not count: [`add_entry`](Self::add_entry) and [`remove_entry`](Self::remove_entry) ignore
/// them. What a reader of a store sees is its live entries, and two stores that agree on
/// those agree, however long each keeps its tombstones; a replica that purges its old
/// tombstones does not make its digests differ from its owner's forever.
///
/// ```
/// use dovetail_consistency::{Digest, Entry};
///
/// let mut bucket = Digest::EMPTY;
/// bucket.add_entry(&Entry::live("policy-1", 1));
/// // An update: out with the old state, in with the new one.
/// bucket.remove_entry(&Entry::live("policy-1", 1));
/// bucket.add_entry(&Entry::live("policy-1", 2));
/// assert_eq!(bucket, Digest::of([&Entry::live("policy-1", 2)]));
///
/// // A delete leaves a tombstone, which does not count.
/// bucket.remove_entry(&Entry::live("policy-1", 2));
/// bucket.add_entry(&Entry::tombstone("policy-1", 3));
/// assert_eq!(bucket, Digest::EMPTY);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    /// How many live entries.
    pub count: u64,
    /// The wrapping sum of their [`entry_hash`]es.
    pub sum: u64,
}

impl Digest {
    /// The digest of no entries.
    pub const EMPTY: Self = Self { count: 0, sum: 0 };

    /// The digest of one entry: [`EMPTY`](Self::EMPTY) for a tombstone.
    pub fn of_entry(entry: &Entry) -> Self {
        if entry.deleted {
            Self::EMPTY
        } else {
            Self {
                count: 1,
                sum: entry_hash(&entry.key, entry.version),
            }
        }
    }

    /// The digest of some entries (tombstones ignored).
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Self {
        entries
            .into_iter()
            .map(Self::of_entry)
            .fold(Self::EMPTY, Add::add)
    }

    /// Adds an entry's state (nothing for a tombstone).
    pub fn add_entry(&mut self, entry: &Entry) {
        *self += Self::of_entry(entry);
    }

    /// Takes an entry's state out (nothing for a tombstone): the inverse of
    /// [`add_entry`](Self::add_entry).
    pub fn remove_entry(&mut self, entry: &Entry) {
        *self -= Self::of_entry(entry);
    }
}

impl Add for Digest {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self {
            count: self.count.wrapping_add(other.count),
            sum: self.sum.wrapping_add(other.sum),
        }
    }
}

impl Sub for Digest {
    type Output = Self;

    fn sub(self, other: Self) -> Self {
        Self {
            count: self.count.wrapping_sub(other.count),
            sum: self.sum.wrapping_sub(other.sum),
        }
    }
}

impl AddAssign for Digest {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl SubAssign for Digest {
    fn sub_assign(&mut self, other: Self) {
        *self = *self - other;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn entry_hashes_are_stable() {
        // Pinned: every store in every service must compute these same values.
        assert_eq!(entry_hash("", 0), 0x7bd3_144f_29c0_cc9e);
        assert_eq!(entry_hash("policy-1", 1), 0xa65a_331e_a87f_51c5);
        assert_eq!(entry_hash("policy-1", 2), 0x75aa_59f6_2e62_cc3b);
    }

    #[test]
    fn tombstones_do_not_count() {
        assert_eq!(Digest::of_entry(&Entry::tombstone("k", 9)), Digest::EMPTY);
        let mut digest = Digest::of([&Entry::live("k", 1)]);
        digest.remove_entry(&Entry::tombstone("k", 2));
        assert_eq!(digest.count, 1);
    }

    fn entries() -> impl Strategy<Value = Vec<Entry>> {
        prop::collection::vec(("[a-z]{1,6}", 0..50_u64, any::<bool>()), 0..40).prop_map(|raw| {
            raw.into_iter()
                .map(|(key, version, deleted)| Entry {
                    deleted,
                    ..Entry::live(key, version)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn the_digest_of_a_whole_is_the_sum_of_its_parts(entries in entries(), at in 0..40_usize) {
            let at = at.min(entries.len());
            let (left, right) = entries.split_at(at);
            let whole = Digest::of(&entries);
            prop_assert_eq!(whole, Digest::of(left) + Digest::of(right));
            prop_assert_eq!(whole - Digest::of(left), Digest::of(right));
            prop_assert_eq!(whole.count, entries.iter().filter(|e| !e.deleted).count() as u64);

            let mut running = Digest::EMPTY;
            for entry in &entries {
                running.add_entry(entry);
            }
            prop_assert_eq!(running, whole);
            for entry in left {
                running.remove_entry(entry);
            }
            prop_assert_eq!(running, Digest::of(right));
        }
    }
}
