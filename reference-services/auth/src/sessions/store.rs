//! [`SessionStore`]: the port every session backend implements — families of refresh
//! tokens with atomic rotation and reuse detection, revocation, and failure counters in
//! fixed windows — and the records it speaks.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::SessionStoreError;
use super::token::{CredentialStamp, TokenDigest};

/// A family to start at log-in, with its first token.
#[derive(Debug, Clone)]
pub struct NewFamily {
    /// The family's id (random, not secret).
    pub family_id: String,
    /// Whose session it is.
    pub user_id: String,
    /// The stamp of the user's password hash at log-in.
    pub credential: CredentialStamp,
    /// The first token's digest.
    pub first: TokenDigest,
    /// When the first token stops being accepted.
    pub token_expires: SystemTime,
    /// When the family ends, however often it is refreshed.
    pub family_expires: SystemTime,
}

/// A family as a rotation finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyInfo {
    /// The family's id.
    pub family_id: String,
    /// Whose session it is.
    pub user_id: String,
    /// The stamp of the user's password hash when the family started.
    pub credential: CredentialStamp,
    /// When the family ends (no token of it outlives this).
    pub expires: SystemTime,
}

/// What [`SessionStore::rotate`] did with a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rotation {
    /// The token was the family's current one: it is now used, and the next token is
    /// the family's current one.
    Rotated(FamilyInfo),
    /// The token had been used already: someone holds a copy. The whole family is now
    /// revoked, the newest token included.
    Reused(FamilyInfo),
    /// The token's family was revoked before (log-out, reuse, password change).
    Revoked,
    /// The token or its family is past its lifetime.
    Expired,
    /// No such token (never issued, or expired and cleaned up).
    Unknown,
}

/// A counter of failures in a fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Failures counted since the window started.
    pub failures: u32,
    /// How long until the window ends and the count starts again from zero.
    pub resets_in: Duration,
}

/// Where refresh-token families, revocations and failure counters live.
///
/// Every backend passes the same contract suite (`tests/it/sessions_contract.rs`).
/// Times come from the caller, so that every backend decides expiry alike; backends with
/// their own expiry (Redis TTLs) set it from the same times.
pub trait SessionStore: Clone + Send + Sync + 'static {
    /// Stores a new family and its first token, and adds the family to its user's.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn start(
        &self,
        family: NewFamily,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;

    /// The family of `presented` if the token is known, whatever its state (a read that
    /// lets a refresh check the user before it uses the token up).
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn family_of(
        &self,
        presented: TokenDigest,
    ) -> impl Future<Output = Result<Option<FamilyInfo>, SessionStoreError>> + Send;

    /// Atomically: if `presented` is its family's current token, marks it used and makes
    /// `next` (expiring at `next_expires`, capped at the family's end) the current one;
    /// if it was used before, revokes the family. Of two rotations of one token, exactly
    /// one gets [`Rotation::Rotated`] and the other [`Rotation::Reused`].
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn rotate(
        &self,
        presented: TokenDigest,
        next: TokenDigest,
        next_expires: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Rotation, SessionStoreError>> + Send;

    /// Revokes the family of `presented` (log-out); `true` if it had one.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn revoke_family_of(
        &self,
        presented: TokenDigest,
    ) -> impl Future<Output = Result<bool, SessionStoreError>> + Send;

    /// Revokes the family `family_id` (a refresh refused for the user's sake).
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn revoke_family(
        &self,
        family_id: &str,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;

    /// Revokes every family of `user_id` (password change, disable); how many were live.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn revoke_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<u64, SessionStoreError>> + Send;

    /// The failures counted under `key` in its current window, if one is open.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn failures(
        &self,
        key: &str,
        now: SystemTime,
    ) -> impl Future<Output = Result<Option<Window>, SessionStoreError>> + Send;

    /// Counts one failure under `key`, opening a window of `window` if none is open.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn record_failure(
        &self,
        key: &str,
        window: Duration,
        now: SystemTime,
    ) -> impl Future<Output = Result<Window, SessionStoreError>> + Send;

    /// Takes back one failure counted under `key` (an attempt counted before it ran
    /// that succeeded); nothing when no window is open.
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn forgive_failure(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;

    /// Forgets the failures under `key` (a successful log-in).
    ///
    /// # Errors
    /// [`SessionStoreError`] when the store fails.
    fn clear_failures(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(), SessionStoreError>> + Send;

    /// Whether the store answers (for `/readyz`).
    ///
    /// # Errors
    /// [`SessionStoreError`] when it does not.
    fn ping(&self) -> impl Future<Output = Result<(), SessionStoreError>> + Send;
}

/// The time `millis` after the Unix epoch (the epoch for negative values).
pub(crate) fn from_epoch_millis(millis: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}
