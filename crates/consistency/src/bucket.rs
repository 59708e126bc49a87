//! The hashed key space: which bucket a key belongs to, and half-open ranges of buckets.

use std::fmt;

use serde::Serialize;

/// How many bits of a key's hash choose its bucket.
pub const BUCKET_BITS: u32 = 12;

/// How many buckets the key space has: `1 << BUCKET_BITS`, 4,096.
///
/// Fixed for the crate, because stores persist each key's bucket (and a digest per
/// bucket) next to their data: changing it would be a migration of every store.
pub const BUCKETS: u32 = 1 << BUCKET_BITS;

pub(crate) const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, of `bytes`: for each byte, `hash ^= byte; hash *= 0x100000001b3`,
/// starting from `0xcbf29ce484222325`.
///
/// Written out here rather than taken from `std`, whose hasher is seeded at random per
/// process: every store in every service, in any language, must compute the same value.
///
/// ```
/// use dovetail_consistency::fnv1a64;
///
/// assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET_BASIS, bytes)
}

/// Continues an FNV-1a 64 hash over more bytes.
pub(crate) fn fnv1a64_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
pub(crate) fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The bucket of `key`, in `0..BUCKETS`: the top [`BUCKET_BITS`] bits of
/// `fmix64(fnv1a64(key))`, where [`fnv1a64`] runs over the key's UTF-8 bytes and
/// `fmix64` is MurmurHash3's 64-bit finaliser (`h ^= h >> 33; h *= 0xff51afd7ed558ccd;
/// h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33`, wrapping).
///
/// FNV alone spreads keys that differ in their last bytes (`policy-1`, `policy-2`)
/// badly over its top bits, and its bottom bits are no better; the finaliser makes every
/// bit of the key affect every bit of the bucket. A store computes the bucket on each
/// write and keeps it with the entry, so that a range of buckets is an index range.
///
/// ```
/// use dovetail_consistency::{BUCKETS, bucket};
///
/// assert_eq!(bucket("policy-1"), bucket("policy-1"));
/// assert!(bucket("policy-1") < BUCKETS);
/// ```
pub fn bucket(key: &str) -> u32 {
    let hash = fmix64(fnv1a64(key.as_bytes()));
    // The shift leaves BUCKET_BITS (12) bits: no truncation.
    #[allow(clippy::cast_possible_truncation)]
    let bucket = (hash >> (64 - BUCKET_BITS)) as u32;
    bucket
}

/// A non-empty, half-open range of buckets, `start..end`, within `0..BUCKETS`.
///
/// The check starts from [`BucketRange::FULL`] and [`split`](Self::split)s the ranges
/// whose digests differ in two halves.
///
/// ```
/// use dovetail_consistency::{BUCKETS, BucketRange};
///
/// let (left, right) = BucketRange::FULL.split().expect("4,096 buckets split");
/// assert_eq!((left.start(), left.end()), (0, BUCKETS / 2));
/// assert_eq!((right.start(), right.end()), (BUCKETS / 2, BUCKETS));
/// assert!(BucketRange::new(5, 5).is_none(), "empty");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BucketRange {
    start: u32,
    end: u32,
}

impl BucketRange {
    /// Every bucket: `0..BUCKETS`.
    pub const FULL: Self = Self {
        start: 0,
        end: BUCKETS,
    };

    /// The range `start..end`, or `None` when it is empty (`start >= end`) or reaches
    /// past [`BUCKETS`].
    pub fn new(start: u32, end: u32) -> Option<Self> {
        (start < end && end <= BUCKETS).then_some(Self { start, end })
    }

    /// The range of one bucket, or `None` when `bucket >= BUCKETS`.
    pub fn single(bucket: u32) -> Option<Self> {
        Self::new(bucket, bucket.checked_add(1)?)
    }

    /// The first bucket in the range.
    pub fn start(self) -> u32 {
        self.start
    }

    /// The first bucket after the range.
    pub fn end(self) -> u32 {
        self.end
    }

    /// How many buckets the range holds (at least one).
    pub fn len(self) -> u32 {
        self.end - self.start
    }

    /// Always `false`: a range holds at least one bucket. Here for clippy's sake.
    pub fn is_empty(self) -> bool {
        false
    }

    /// Whether `bucket` is in the range.
    pub fn contains(self, bucket: u32) -> bool {
        (self.start..self.end).contains(&bucket)
    }

    /// The two halves, `start..mid` and `mid..end` with `mid = start + len / 2`, or
    /// `None` for a range of one bucket.
    pub fn split(self) -> Option<(Self, Self)> {
        if self.len() < 2 {
            return None;
        }
        let mid = self.start + self.len() / 2;
        Some((
            Self {
                start: self.start,
                end: mid,
            },
            Self {
                start: mid,
                end: self.end,
            },
        ))
    }
}

impl fmt::Display for BucketRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "buckets {}..{}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV reference (Fowler, Noll, Vo), FNV-1a 64-bit.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn buckets_are_stable() {
        // Pinned: a change here silently invalidates every store's persisted buckets.
        assert_eq!(bucket(""), 0xefd);
        assert_eq!(bucket("a"), 0x82a);
        assert_eq!(bucket("foobar"), 0x2c2);
    }

    #[test]
    fn buckets_spread_evenly() {
        let mut counts = vec![0_u32; BUCKETS as usize];
        let keys = 409_600_u32;
        for i in 0..keys {
            counts[bucket(&format!("policy-{i}")) as usize] += 1;
        }
        let (min, max) = (counts.iter().min(), counts.iter().max());
        // 100 a bucket on average (a standard deviation of 10): within 40..170.
        assert!(min > Some(&40) && max < Some(&170), "{min:?}..{max:?}");
    }

    #[test]
    fn ranges_split_in_halves_down_to_single_buckets() {
        let mut ranges = vec![BucketRange::FULL];
        let mut leaves = Vec::new();
        while let Some(range) = ranges.pop() {
            match range.split() {
                Some((left, right)) => {
                    assert_eq!(left.end(), right.start());
                    assert_eq!(left.len() + right.len(), range.len());
                    assert!(left.len().abs_diff(right.len()) <= 1);
                    ranges.push(right);
                    ranges.push(left);
                }
                None => leaves.push(range.start()),
            }
        }
        assert_eq!(leaves, (0..BUCKETS).collect::<Vec<_>>());

        let odd = BucketRange::new(3, 6).expect("valid");
        let (left, right) = odd.split().expect("three buckets split");
        assert_eq!(
            (left.start(), left.end(), right.start(), right.end()),
            (3, 4, 4, 6)
        );
    }

    #[test]
    fn invalid_ranges_are_refused() {
        assert!(BucketRange::new(0, 0).is_none());
        assert!(BucketRange::new(4, 3).is_none());
        assert!(BucketRange::new(0, BUCKETS + 1).is_none());
        assert!(BucketRange::single(BUCKETS).is_none());
        assert_eq!(BucketRange::single(7).map(BucketRange::len), Some(1));
        assert!(BucketRange::FULL.contains(BUCKETS - 1));
        assert!(!BucketRange::FULL.contains(BUCKETS));
    }
}
