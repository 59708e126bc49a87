//! [`RefreshToken`]: the opaque secret a client holds (256 random bits, base64url), and
//! [`TokenDigest`], the SHA-256 of it that is all a store keeps.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// How many random bytes a refresh token carries.
const TOKEN_BYTES: usize = 32;

/// A refresh token as the client holds it. Its `Debug` says nothing of the secret, and
/// nothing logs it: only [`digest`](Self::digest) goes to a store.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl RefreshToken {
    /// A new token: 32 bytes from the system's random generator, base64url unpadded.
    ///
    /// # Errors
    /// When the random generator fails.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0_u8; TOKEN_BYTES];
        aws_lc_rs::rand::fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The token a client presented. Anything that is not 43 base64url characters gets
    /// `None`: no such token was ever issued.
    pub fn parse(presented: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(presented.trim()).ok()?;
        (decoded.len() == TOKEN_BYTES).then(|| Self(presented.trim().to_owned()))
    }

    /// The string to give the client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps: the SHA-256 of the token.
    pub fn digest(&self) -> TokenDigest {
        TokenDigest(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

/// The SHA-256 of a refresh token: the key of its record. Knowing it does not give the
/// token, but it still names a live session, so its `Debug` is redacted too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 43 base64url characters (for keys made of text).
    pub fn to_key(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// A digest read back from a store.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

/// A short fingerprint of a user's stored password hash: a family remembers the one it
/// was started with, and a refresh after a password change (new salt, new hash) finds a
/// different one and is refused. A digest of a salted argon2 hash says nothing usable of
/// the password.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialStamp(String);

impl CredentialStamp {
    /// The stamp of `password_hash` (a PHC string): base64url of the first 16 bytes of
    /// its SHA-256.
    pub fn of(password_hash: &str) -> Self {
        let digest = Sha256::digest(password_hash.as_bytes());
        Self(URL_SAFE_NO_PAD.encode(&digest[..16]))
    }

    /// A stamp read back from a store.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The text a store keeps.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CredentialStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialStamp(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_base64url_characters_of_32_random_bytes_and_each_differs() {
        let one = RefreshToken::generate().unwrap();
        let two = RefreshToken::generate().unwrap();
        assert_eq!(one.expose().len(), 43);
        assert_ne!(one, two);
        assert_ne!(one.digest(), two.digest());
        assert_eq!(RefreshToken::parse(one.expose()), Some(one.clone()));
        assert_eq!(
            RefreshToken::parse(one.expose()).unwrap().digest(),
            one.digest()
        );
    }

    #[test]
    fn anything_else_is_not_a_token() {
        for presented in ["", "short", &"A".repeat(44), &"*".repeat(43)] {
            assert!(RefreshToken::parse(presented).is_none(), "{presented:?}");
        }
    }

    #[test]
    fn debug_output_redacts_the_secret_and_its_digest() {
        let token = RefreshToken::generate().unwrap();
        let shown = format!("{token:?} {:?}", token.digest());
        assert!(!shown.contains(token.expose()));
        assert!(!shown.contains(&token.digest().to_key()));
        assert!(shown.contains("redacted"));
        let stamp = CredentialStamp::of("$argon2id$v=19$m=19456,t=2,p=1$salt$hash");
        assert!(!format!("{stamp:?}").contains(stamp.as_str()));
    }

    #[test]
    fn a_new_hash_of_the_same_password_has_another_stamp() {
        assert_ne!(
            CredentialStamp::of("$argon2id$v=19$m=1024,t=1,p=1$c2FsdDE$aGFzaA"),
            CredentialStamp::of("$argon2id$v=19$m=1024,t=1,p=1$c2FsdDI$aGFzaA")
        );
    }
}
