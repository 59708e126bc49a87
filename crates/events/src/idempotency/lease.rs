//! What a claim returns: a lease on the key, the outcome of the first processing, or
//! word that another consumer holds the key.

use std::fmt;
use std::time::SystemTime;

use super::{IdempotencyKey, LeaseOwner};

/// A consumer's exclusive, expiring right to process one key.
///
/// The fencing token tells leases on one key apart: it is strictly greater than the token
/// of every earlier lease on that key, so a consumer whose lease expired and was taken
/// over (even by another task of the same [`LeaseOwner`]) is refused by
/// [`heartbeat`](super::IdempotencyStore::heartbeat) and
/// [`complete`](super::IdempotencyStore::complete). Hand the token to downstream writes
/// that can check it, to fence them too.
///
/// Stores make tokens from their clock in milliseconds, and from the previous token plus
/// one on a takeover, whichever is greater, so tokens keep growing even after a record
/// was released or removed.
///
/// # Example
/// ```
/// use std::time::{Duration, SystemTime};
/// use dovetail_events::idempotency::{IdempotencyKey, Lease, LeaseOwner};
///
/// let held_until = SystemTime::now() + Duration::from_secs(30);
/// let lease = Lease::new(IdempotencyKey::new("evt-1")?, LeaseOwner::random(), 7, held_until);
/// assert_eq!(lease.fencing_token(), 7);
/// assert!(lease.is_live_at(SystemTime::now()));
/// # Ok::<(), dovetail_events::idempotency::InvalidIdentifier>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    key: IdempotencyKey,
    owner: LeaseOwner,
    fencing_token: u64,
    held_until: SystemTime,
}

impl Lease {
    /// A lease as a store hands it out. Stores call this; consumers get leases from
    /// [`try_claim`](super::IdempotencyStore::try_claim).
    pub fn new(
        key: IdempotencyKey,
        owner: LeaseOwner,
        fencing_token: u64,
        held_until: SystemTime,
    ) -> Self {
        Self {
            key,
            owner,
            fencing_token,
            held_until,
        }
    }

    /// The key the lease is on.
    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    /// Who holds it.
    pub fn owner(&self) -> &LeaseOwner {
        &self.owner
    }

    /// Its fencing token: greater than that of every earlier lease on the key.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// When it expires unless extended by a heartbeat (by the store's clock).
    pub fn held_until(&self) -> SystemTime {
        self.held_until
    }

    /// Whether the lease has not yet expired at `now`.
    pub fn is_live_at(&self, now: SystemTime) -> bool {
        now < self.held_until
    }
}

/// The result of the first processing of a key, kept for its duplicates: opaque bytes,
/// e.g. a serialized response or an empty marker.
///
/// Keep it small: every store keeps it in the record (DynamoDB items are limited to
/// 400 KB, all attributes together).
///
/// # Example
/// ```
/// use dovetail_events::idempotency::StoredOutcome;
///
/// let outcome = StoredOutcome::from(r#"{"status":201}"#);
/// assert_eq!(outcome.as_bytes(), br#"{"status":201}"#);
/// assert!(StoredOutcome::empty().as_bytes().is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StoredOutcome(Vec<u8>);

impl StoredOutcome {
    /// An outcome of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// No bytes: the message was processed, nothing more to say.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for StoredOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) if text.len() <= 256 => write!(f, "StoredOutcome({text:?})"),
            _ => write!(f, "StoredOutcome({} bytes)", self.0.len()),
        }
    }
}

impl From<Vec<u8>> for StoredOutcome {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for StoredOutcome {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<&str> for StoredOutcome {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<String> for StoredOutcome {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

/// What [`try_claim`](super::IdempotencyStore::try_claim) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The caller holds the key now: process the message, then
    /// [`complete`](super::IdempotencyStore::complete) or
    /// [`release`](super::IdempotencyStore::release).
    Claimed {
        /// The lease to heartbeat, complete or release.
        lease: Lease,
        /// `None` for a first delivery; the owner of the expired lease this claim took
        /// over otherwise (that consumer crashed or stalled: its effects may be partial).
        taken_over_from: Option<LeaseOwner>,
    },
    /// The key was processed already: this delivery is a duplicate and gets the first
    /// processing's outcome. Acknowledge it without processing it again.
    Processed(StoredOutcome),
    /// Another lease on the key is live: the message is being processed elsewhere.
    /// Leave it for redelivery (for SQS, do not delete it).
    InProgress {
        /// When that lease expires unless it is extended.
        held_until: SystemTime,
    },
}

impl ClaimOutcome {
    /// The lease, when the claim was granted.
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Self::Claimed { lease, .. } => Some(lease),
            Self::Processed(_) | Self::InProgress { .. } => None,
        }
    }
}

/// What writing a "processed" marker inside the caller's own transaction found.
///
/// See `SqliteIdempotencyStore::mark_processed_in` and
/// `DynamoDbIdempotencyStore::processed_marker_put`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MarkOutcome {
    /// The marker is written in the transaction: commit it with the handler's writes.
    Marked,
    /// The key was processed already: roll back the handler's writes and answer the
    /// duplicate with this outcome.
    Duplicate(StoredOutcome),
    /// A lease-based consumer holds a live claim on the key: roll back and let the
    /// message be redelivered.
    InProgress {
        /// When that lease expires unless it is extended.
        held_until: SystemTime,
    },
}
