//! Read-your-writes: a [`ConsistencyToken`] says which version of an aggregate a write
//! reached, signed by the gateway ([`ConsistencyKey`]) so a client cannot forge one;
//! [`await_version`] waits, within a deadline, until a replica has reached it.

use std::future::Future;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dovetail_http::Problem;
use dovetail_http::deadline::Deadline;
use serde::{Deserialize, Serialize};

use crate::{CallError, Section};

/// The header that carries a consistency token, in a write's answer and a later read.
pub const CONSISTENCY_HEADER: &str = "dovetail-consistency";

/// What a write reached: an aggregate (such as `policy/pol-1`) and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyToken {
    /// The aggregate written, as `<kind>/<id>`.
    #[serde(rename = "a")]
    pub aggregate: String,
    /// The version the write reached.
    #[serde(rename = "v")]
    pub version: u64,
}

/// The gateway's secret for signing tokens (HMAC-SHA256).
///
/// ```
/// use dovetail_bff::{ConsistencyKey, ConsistencyToken};
///
/// let key = ConsistencyKey::new(&[7; 32])?;
/// let written = ConsistencyToken { aggregate: "policy/pol-1".into(), version: 4 };
/// let token = key.sign(&written);
/// assert_eq!(key.verify(&token)?, written);
///
/// let (_, signature) = token.split_once('.').expect("payload.signature");
/// let raised = format!("eyJhIjoicG9saWN5L3BvbC0xIiwidiI6OTl9.{signature}"); // version 99
/// assert!(key.verify(&raised).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ConsistencyKey {
    key: hmac::Key,
}

impl std::fmt::Debug for ConsistencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsistencyKey(..)")
    }
}

/// A secret shorter than 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a consistency key needs at least 32 bytes of secret; it has {0}")]
pub struct WeakKey(pub usize);

/// Why a consistency token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadToken {
    /// Not `<payload>.<signature>` in base64url, or a payload that is not a token.
    ///
    /// ### Handling
    /// A 400: send the token a write answered, unchanged.
    #[error(
        "header {CONSISTENCY_HEADER}: not a consistency token; send the one a write answered, unchanged"
    )]
    Malformed,
    /// The signature does not match: not a token this gateway issued.
    ///
    /// ### Handling
    /// A 400, the same answer as [`BadToken::Malformed`]: say nothing more to a forger.
    #[error(
        "header {CONSISTENCY_HEADER}: not a consistency token; send the one a write answered, unchanged"
    )]
    Forged,
}

impl BadToken {
    /// The 400 problem to answer.
    pub fn problem(&self) -> Problem {
        Problem::bad_request(self.to_string())
    }
}

impl ConsistencyKey {
    /// A key from `secret` (32 bytes or more).
    ///
    /// # Errors
    /// [`WeakKey`] for a shorter secret.
    pub fn new(secret: &[u8]) -> Result<Self, WeakKey> {
        if secret.len() < 32 {
            return Err(WeakKey(secret.len()));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The opaque token for `written`: `<payload>.<signature>`, base64url.
    pub fn sign(&self, written: &ConsistencyToken) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(written).unwrap_or_default());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// The token `text` carries, when this key signed it.
    ///
    /// # Errors
    /// [`BadToken`] for a malformed or forged token.
    pub fn verify(&self, text: &str) -> Result<ConsistencyToken, BadToken> {
        let (payload, tag) = text.trim().split_once('.').ok_or(BadToken::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| BadToken::Malformed)?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).map_err(|_| BadToken::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| BadToken::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| BadToken::Malformed)
    }
}

/// What a replica held when [`await_version`] stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The version it held.
    pub version: u64,
    /// Whether that is the version asked for, or later.
    pub reached: bool,
}

impl Seen {
    /// The section of `data` read from that replica: `ok` when it had reached the
    /// version, `stale` with the version it had otherwise.
    pub fn section<T>(self, data: T) -> Section<T> {
        if self.reached {
            Section::ok(data)
        } else {
            Section::stale(data, self.version)
        }
    }
}

/// Asks `version_of` (a cheap call: the version a replica holds) every `interval` until
/// it reports `wanted` or later, or until `until` passes.
///
/// Give it a deadline earlier than the request's, so that time remains to read the data.
///
/// # Errors
/// The probe's error when it fails before any version was seen.
pub async fn await_version<F, Fut>(
    until: Deadline,
    wanted: u64,
    interval: Duration,
    mut version_of: F,
) -> Result<Seen, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, CallError>>,
{
    let mut last = None;
    loop {
        match tokio::time::timeout_at(until.instant(), version_of()).await {
            Ok(Ok(version)) if version >= wanted => {
                return Ok(Seen {
                    version,
                    reached: true,
                });
            }
            Ok(Ok(version)) => last = Some(version),
            Ok(Err(error)) if last.is_none() => return Err(error),
            Ok(Err(_)) => {}
            Err(_) => break,
        }
        if until.remaining() <= interval {
            break;
        }
        tokio::time::sleep(interval).await;
    }
    last.map(|version| Seen {
        version,
        reached: false,
    })
    .ok_or(CallError::Timeout)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn key() -> ConsistencyKey {
        ConsistencyKey::new(b"a secret of at least thirty-two bytes").unwrap()
    }

    #[test]
    fn a_token_verifies_only_with_its_key_and_unchanged() {
        let written = ConsistencyToken {
            aggregate: "policy/pol-1".into(),
            version: 9,
        };
        let token = key().sign(&written);
        assert_eq!(key().verify(&token).unwrap(), written);

        let other = ConsistencyKey::new(&[1; 32]).unwrap();
        assert_eq!(other.verify(&token), Err(BadToken::Forged));
        // A client that raises the version re-encodes the payload; the signature fails.
        let (_, tag) = token.split_once('.').unwrap();
        let raised = URL_SAFE_NO_PAD.encode(br#"{"a":"policy/pol-1","v":99}"#);
        assert_eq!(
            key().verify(&format!("{raised}.{tag}")),
            Err(BadToken::Forged)
        );
        assert_eq!(key().verify("nonsense"), Err(BadToken::Malformed));
        assert_eq!(ConsistencyKey::new(b"short").unwrap_err(), WeakKey(5));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_until_the_replica_reaches_the_version_or_answers_stale() {
        let replica = AtomicU64::new(3);
        let seen = await_version(
            Deadline::after(Duration::from_secs(1)),
            5,
            Duration::from_millis(10),
            || async { Ok(replica.fetch_add(1, Ordering::SeqCst)) },
        )
        .await
        .unwrap();
        assert_eq!(
            seen,
            Seen {
                version: 5,
                reached: true
            }
        );
        assert_eq!(seen.section("data").outcome(), crate::SectionOutcome::Ok);

        let seen = await_version(
            Deadline::after(Duration::from_millis(100)),
            50,
            Duration::from_millis(10),
            || async { Ok(7) },
        )
        .await
        .unwrap();
        assert_eq!(
            seen,
            Seen {
                version: 7,
                reached: false
            }
        );
        assert_eq!(
            seen.section("data").outcome(),
            crate::SectionOutcome::Stale { version: 7 }
        );
    }
}
