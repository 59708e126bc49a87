//! The in-process cache of processed keys, in front of the store.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::idempotency::Fingerprint;

/// Recently processed keys with their fingerprints, least recently used evicted first;
/// an entry counts only for the retention time of its record.
#[derive(Debug)]
pub(crate) struct ProcessedCache {
    entries: Mutex<LruCache<String, (Fingerprint, Instant)>>,
    retain: Duration,
}

/// What the cache knows of a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cached {
    /// Processed with this same payload.
    Processed,
    /// Processed with another payload.
    Mismatch,
    /// Not known here: ask the store.
    Unknown,
}

impl ProcessedCache {
    pub(crate) fn new(capacity: NonZeroUsize, retain: Duration) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
            retain,
        }
    }

    pub(crate) fn lookup(&self, key: &str, fingerprint: &Fingerprint) -> Cached {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(key) {
            Some((_, at)) if at.elapsed() > self.retain => {
                entries.pop(key);
                Cached::Unknown
            }
            Some((stored, _)) if stored == fingerprint => Cached::Processed,
            Some(_) => Cached::Mismatch,
            None => Cached::Unknown,
        }
    }

    pub(crate) fn remember(&self, key: String, fingerprint: Fingerprint) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.put(key, (fingerprint, Instant::now()));
    }
}
