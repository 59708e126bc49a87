//! The identifiers of the idempotent consumer: keys, payload fingerprints and lease owners.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The key that identifies one logical message across its deliveries, e.g. the event id
/// or an `Idempotency-Key` header: not empty, at most [`IdempotencyKey::MAX_LEN`] bytes.
///
/// # Example
/// ```
/// use dovetail_events::idempotency::IdempotencyKey;
///
/// let key = IdempotencyKey::new("0190f5d8-7a6b-7c3e-9f00-5d1c0e2a4b11")?;
/// assert_eq!(key.as_str(), "0190f5d8-7a6b-7c3e-9f00-5d1c0e2a4b11");
/// assert!(IdempotencyKey::new("").is_err());
/// assert!(IdempotencyKey::new("x".repeat(513)).is_err());
/// # Ok::<(), dovetail_events::idempotency::InvalidIdentifier>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted, in bytes of UTF-8.
    pub const MAX_LEN: usize = 512;

    /// Validates `key`.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] when `key` is empty or longer than [`Self::MAX_LEN`] bytes.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidIdentifier> {
        let key = key.into();
        check("idempotency key", &key, Self::MAX_LEN)?;
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = InvalidIdentifier;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Self::new(key)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidIdentifier;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl TryFrom<&str> for IdempotencyKey {
    type Error = InvalidIdentifier;

    fn try_from(key: &str) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

/// Who holds a lease: one value per consumer instance (process), e.g. a random UUID made
/// at start-up. Not empty, at most [`LeaseOwner::MAX_LEN`] bytes.
///
/// Ownership alone does not decide whether a lease is still held: two tasks of one
/// instance share an owner, so the stores check the lease's fencing token as well.
///
/// # Example
/// ```
/// use dovetail_events::idempotency::LeaseOwner;
///
/// let fixed = LeaseOwner::new("claims-consumer-1")?;
/// assert_eq!(fixed.as_str(), "claims-consumer-1");
/// assert_ne!(LeaseOwner::random(), LeaseOwner::random());
/// # Ok::<(), dovetail_events::idempotency::InvalidIdentifier>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// The longest owner accepted, in bytes of UTF-8.
    pub const MAX_LEN: usize = 128;

    /// Validates `owner`.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] when `owner` is empty or longer than [`Self::MAX_LEN`] bytes.
    pub fn new(owner: impl Into<String>) -> Result<Self, InvalidIdentifier> {
        let owner = owner.into();
        check("lease owner", &owner, Self::MAX_LEN)?;
        Ok(Self(owner))
    }

    /// A fresh owner: a random UUID, for one consumer instance.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The owner as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LeaseOwner {
    type Err = InvalidIdentifier;

    fn from_str(owner: &str) -> Result<Self, Self::Err> {
        Self::new(owner)
    }
}

fn check(what: &'static str, value: &str, max: usize) -> Result<(), InvalidIdentifier> {
    if value.is_empty() {
        return Err(InvalidIdentifier::Empty { what });
    }
    if value.len() > max {
        return Err(InvalidIdentifier::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Why an [`IdempotencyKey`] or [`LeaseOwner`] was refused.
///
/// ### Handling
/// The input is wrong, not the system: reject the message or request that carried it
/// (for an HTTP `Idempotency-Key` header, a 400 with this message); retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIdentifier {
    /// The value is empty.
    #[error("the {what} is empty")]
    Empty {
        /// What was being validated, e.g. `"idempotency key"`.
        what: &'static str,
    },
    /// The value is longer than allowed.
    #[error("the {what} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        /// What was being validated, e.g. `"idempotency key"`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
}

/// The SHA-256 of a message's payload bytes. A key reused with a payload of another
/// fingerprint is rejected as [`PayloadMismatch`](super::IdempotencyError::PayloadMismatch).
///
/// Displays as 64 lowercase hex digits and parses back from them.
///
/// # Example
/// ```
/// use dovetail_events::idempotency::Fingerprint;
///
/// let fingerprint = Fingerprint::of(b"{\"amount\":\"12.50\"}");
/// assert_eq!(fingerprint, Fingerprint::of(b"{\"amount\":\"12.50\"}"));
/// assert_ne!(fingerprint, Fingerprint::of(b"{\"amount\":\"99.00\"}"));
/// assert_eq!(fingerprint.to_string().parse::<Fingerprint>()?, fingerprint);
/// # Ok::<(), dovetail_events::idempotency::InvalidFingerprint>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The SHA-256 of `payload`.
    pub fn of(payload: &[u8]) -> Self {
        Self(Sha256::digest(payload).into())
    }

    /// A fingerprint from its 32 bytes, e.g. as read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fingerprint from a slice that must hold exactly 32 bytes.
    ///
    /// # Errors
    /// [`InvalidFingerprint`] when the slice has another length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidFingerprint> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidFingerprint)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(InvalidFingerprint);
        }
        let mut bytes = [0_u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

fn hex_digit(digit: u8) -> Result<u8, InvalidFingerprint> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        b'A'..=b'F' => Ok(digit - b'A' + 10),
        _ => Err(InvalidFingerprint),
    }
}

/// A fingerprint was not 32 bytes, or not 64 hex digits.
///
/// ### Handling
/// A stored record is damaged or was written by something else; the stores report it as
/// [`CorruptRecord`](super::IdempotencyError::CorruptRecord).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 32 bytes (64 hex digits)")]
#[non_exhaustive]
pub struct InvalidFingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_and_round_trips_through_hex() {
        let fingerprint = Fingerprint::of(b"abc");
        assert_eq!(
            fingerprint.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            fingerprint
                .to_string()
                .to_uppercase()
                .parse::<Fingerprint>(),
            Ok(fingerprint)
        );
        assert_eq!("ab".parse::<Fingerprint>(), Err(InvalidFingerprint));
        assert_eq!(
            "zz".repeat(32).parse::<Fingerprint>(),
            Err(InvalidFingerprint)
        );
        assert_eq!(Fingerprint::from_slice(&[0; 31]), Err(InvalidFingerprint));
    }

    #[test]
    fn keys_are_bounded_in_bytes_not_chars() {
        assert!(IdempotencyKey::new("é".repeat(256)).is_ok());
        assert_eq!(
            IdempotencyKey::new("é".repeat(257)),
            Err(InvalidIdentifier::TooLong {
                what: "idempotency key",
                len: 514,
                max: 512
            })
        );
        assert!(LeaseOwner::new("").is_err());
    }
}
