//! The port: what the check reads from a store, owner or replica alike.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bucket::{BucketRange, bucket};
use crate::digest::Digest;
use crate::error::ViewError;

/// One key of a store as the check sees it: its version, and whether the store holds it
/// as a tombstone (deleted at that version, kept so that a late, older write is refused).
///
/// ```
/// use dovetail_consistency::Entry;
///
/// let owner = Entry::live("policy-1", 4).changed_at(1_700_000_000_000);
/// assert_eq!(owner.changed_at_ms, Some(1_700_000_000_000));
/// assert!(Entry::tombstone("policy-2", 7).deleted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    /// The key (an aggregate's id, a document's id).
    pub key: String,
    /// The version the store holds; on a replica, the highest version it applied.
    pub version: u64,
    /// `true` for a tombstone: the key was deleted at `version`.
    pub deleted: bool,
    /// When the owner last changed the key (its write time, milliseconds since the Unix
    /// epoch), if the store knows it. Read from the owner only, to leave writes in flight
    /// for the next round (see [`CheckConfig::expected_lag`](crate::CheckConfig)); a
    /// replica may leave it `None`. Not part of any [`Digest`].
    pub changed_at_ms: Option<u64>,
}

impl Entry {
    /// A live entry with no change time.
    pub fn live(key: impl Into<String>, version: u64) -> Self {
        Self {
            key: key.into(),
            version,
            deleted: false,
            changed_at_ms: None,
        }
    }

    /// A tombstone with no change time: the key was deleted at `version`.
    pub fn tombstone(key: impl Into<String>, version: u64) -> Self {
        Self {
            deleted: true,
            ..Self::live(key, version)
        }
    }

    /// The same entry, changed by its owner at `ms` (milliseconds since the Unix epoch).
    #[must_use]
    pub fn changed_at(self, ms: u64) -> Self {
        Self {
            changed_at_ms: Some(ms),
            ..self
        }
    }

    /// The entry's [`bucket`].
    pub fn bucket(&self) -> u32 {
        bucket(&self.key)
    }
}

/// What a store gives the check: digests of bucket ranges, and the entries of small
/// ranges. Implemented by the owner of the data (the source of truth) and by each of its
/// replicas (another service's read model, a search index).
///
/// A store keeps, next to each entry, its [`bucket`] (indexed, so that a bucket range
/// is an index range) and, per bucket, a [`Digest`] updated in the same transaction as
/// each write (see [`Digest::add_entry`]). An owner also keeps when each key last changed, and
/// reports it in [`Entry::changed_at_ms`].
///
/// [`MemoryView`](crate::MemoryView) implements it for tests and examples.
pub trait View: Send + Sync {
    /// The digest of the live entries whose bucket is in `range`.
    ///
    /// # Errors
    ///
    /// A [`ViewError`] when the store cannot be read; the check stops with it.
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send;

    /// The entries, tombstones included, whose bucket is in `range`, in (bucket, key)
    /// order. The check calls it on small ranges only (at most
    /// [`CheckConfig::leaf_buckets`](crate::CheckConfig) buckets).
    ///
    /// # Errors
    ///
    /// A [`ViewError`] when the store cannot be read; the check stops with it.
    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send;
}

impl<T: View + ?Sized> View for &T {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        T::digest(self, range)
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        T::entries(self, range)
    }
}

impl<T: View + ?Sized> View for Arc<T> {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        T::digest(self, range)
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        T::entries(self, range)
    }
}
