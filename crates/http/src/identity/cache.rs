//! [`VerifiedTokens`]: identities of tokens already verified, by the whole token, so a
//! client that sends the same token again is not checked again from scratch.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::Identity;

struct Entry {
    identity: Identity,
    /// The key set generation the token was verified with: a hit from an older one is a
    /// miss, so a key removed from the set stops verifying its cached tokens too.
    generation: u64,
    /// `exp` plus the leeway: a hit after it is a miss (and the full check says expired).
    valid_until: i64,
}

/// A bounded LRU of verified tokens; capacity 0 turns it off.
///
/// Keyed by the token itself: a hit needs the exact bytes that were verified, signature
/// included, compared in full (no digest whose collisions would matter), and hashed with
/// hashbrown's randomly seeded default hasher, a fraction of a SHA-256's cost. The
/// tokens it holds are ones the process has already received in requests.
pub(crate) struct VerifiedTokens {
    entries: Option<Mutex<LruCache<Box<str>, Entry>>>,
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The identity of a token verified with key set `generation`, still valid at `now`.
    pub(crate) fn get(&self, token: &str, generation: u64, now: i64) -> Option<Identity> {
        let mut entries = self.entries.as_ref()?.lock().ok()?;
        let entry = entries.get(token)?;
        if entry.generation == generation && now <= entry.valid_until {
            Some(entry.identity.clone())
        } else {
            entries.pop(token);
            None
        }
    }

    pub(crate) fn insert(
        &self,
        token: &str,
        identity: Identity,
        generation: u64,
        valid_until: i64,
    ) {
        let Some(entries) = &self.entries else { return };
        if let Ok(mut entries) = entries.lock() {
            entries.put(
                Box::from(token),
                Entry {
                    identity,
                    generation,
                    valid_until,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;

    fn identity() -> Identity {
        Identity::new("u", [], None, "j", OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_hit_needs_the_same_generation_and_an_unexpired_token() {
        let cache = VerifiedTokens::new(4);
        let token = "a.b.c";
        cache.insert(token, identity(), 1, 100);
        assert!(cache.get(token, 1, 100).is_some());
        assert!(cache.get("a.b.d", 1, 100).is_none());
        assert!(cache.get(token, 1, 101).is_none());
        cache.insert(token, identity(), 1, 100);
        assert!(cache.get(token, 2, 50).is_none());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let cache = VerifiedTokens::new(0);
        cache.insert("t", identity(), 0, 100);
        assert!(cache.get("t", 0, 0).is_none());
    }
}
