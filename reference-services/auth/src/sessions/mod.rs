//! Sessions: refresh tokens in families, their rotation and revocation, and log-in
//! throttling, on SQLite (embedded default, `data/auth-sessions.db`) or Redis (several
//! instances sharing one store).
//!
//! - **Refresh tokens** are 256 random bits, base64url; a store keeps only their SHA-256
//!   ([`RefreshToken`], [`TokenDigest`]). Each log-in starts a *family* bound to the user
//!   and to a stamp of their password hash ([`CredentialStamp`]). `POST /sessions/refresh`
//!   reads the token's family and its user, then marks the token used and issues the
//!   family's next one, atomically ([`SessionStore::rotate`]): of two refreshes with one
//!   token exactly one succeeds. (Reading the user first means a failing user store
//!   answers 503 before the token is used up, so the client can retry with it.)
//!   Presenting a used token again is *reuse* — someone has a copy — and revokes the
//!   whole family, newest token included. A refresh for a user who is disabled, gone, or
//!   whose password hash changed since the log-in revokes the family too; a password
//!   change and a disable also revoke every family of the user at once
//!   ([`Sessions::revoke_user`]). `POST /sessions/logout` revokes one family.
//!   Tokens expire after `refresh_ttl_seconds` unused, families after
//!   `family_ttl_seconds` however often they are refreshed.
//! - **Throttling** counts failed log-ins per account (the SHA-256 of the normalised
//!   email: unknown emails are counted exactly like known ones) and per client address,
//!   and failed refreshes per address, each in a *fixed window* that opens at its first
//!   failure ([`ThrottleConfig`]). Each attempt is counted (an atomic increment) before
//!   the password is checked, so attempts made at once cannot all slip under the limit;
//!   past the limit they get 429 with `Retry-After` (the time left in the window), so a
//!   throttled attempt costs no argon2 and its answer is the same whether or not the
//!   email has an account. A success takes its attempt back (and clears the account's
//!   counter); a refused attempt stays counted, which does not move the window's end.
//!   A fixed window is one counter with one expiry per key; its cost is that a burst
//!   straddling two windows can make up to twice the limit of attempts, which still
//!   bounds guessing to a few per account per window. A per-account limit also lets
//!   anyone lock an account out for a window; the per-address limit bounds how many
//!   accounts one address can do that to. The client address (an IPv6 address by its
//!   /64) is the TCP peer, unless the peer is listed in `http.trusted_proxies`: then the
//!   rightmost `X-Forwarded-For` entry that is no trusted proxy. Behind the gateway, list
//!   it there, else every request counts against the gateway's address.
//! - **When the store is unreachable** the service *fails closed*: log-in, refresh and
//!   log-out answer 503 problem+json with `Retry-After` naming the session store
//!   ([`SessionError::Store`]). No session is issued that could not be revoked, and no
//!   log-in runs unthrottled. Access tokens already issued keep working at the other
//!   services until they expire, since those verify them offline; `/readyz` reports the
//!   store. A password change or disable that cannot revoke the sessions still succeeds:
//!   the refresh check on the user refuses those sessions anyway.
//!
//! No token, digest, stamp, password or Redis password appears in a log line, an error or
//! `Debug` output.

mod any;
mod config;
mod error;
mod redis;
mod service;
mod sqlite;
mod store;
mod throttle;

pub(crate) use throttle::retry_after_seconds;
mod token;

use std::time::Duration;

pub use any::AnySessionStore;
pub use config::{Limit, SessionBackend, SessionsConfig, ThrottleConfig};
pub use error::SessionStoreError;
pub use redis::RedisSessionStore;
pub use service::{SessionTokens, Sessions};
pub use sqlite::SqliteSessionStore;
pub use store::{FamilyInfo, NewFamily, Rotation, SessionStore, Window};
pub use token::{CredentialStamp, RefreshToken, TokenDigest};

use crate::accounts::AccountError;

/// Why a session operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Too many failed attempts for the account or from the address in this window.
    ///
    /// ### Handling
    /// 429 with `Retry-After`; the same for known and unknown emails.
    #[error("too many failed attempts; retry after the window ends")]
    Throttled {
        /// How long until the window ends.
        retry_after: Duration,
    },
    /// The refresh token is malformed, unknown or expired.
    ///
    /// ### Handling
    /// 401; log in again.
    #[error("the refresh token is unknown or expired")]
    InvalidRefreshToken,
    /// The session was revoked: the token was used twice, the user logged out, changed
    /// their password or was disabled.
    ///
    /// ### Handling
    /// 401; log in again.
    #[error("the session was revoked")]
    Revoked,
    /// The account operation under it was refused or failed.
    ///
    /// ### Handling
    /// As the [`AccountError`] says.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The session store is unreachable or failed.
    ///
    /// ### Handling
    /// 503 with `Retry-After` (fail closed).
    #[error("the session store is unavailable")]
    Store(#[source] SessionStoreError),
    /// The random generator failed to make a token.
    ///
    /// ### Handling
    /// 503; the host is unwell.
    #[error("the random generator failed to make a refresh token")]
    Random,
}
