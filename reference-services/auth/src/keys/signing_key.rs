//! [`SigningKey`]: one Ed25519 key pair with its `kid` (the RFC 7638 thumbprint of its
//! public key), when it was made and when it stopped signing.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::KeyError;

/// An Ed25519 signing key: the pair, its `kid`, its PKCS#8 form (what is stored), when it
/// was created, and when it was retired (stopped signing), if it was.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
    kid: String,
    pub(super) created_at: OffsetDateTime,
    pub(super) retired_at: Option<OffsetDateTime>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key pair from the system's random generator.
    pub(super) fn generate(now: OffsetDateTime) -> Result<Self, KeyError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(KeyError::Generate)?;
        Self::from_pkcs8(pkcs8.as_ref().to_vec(), now, None)
    }

    /// The key stored as `pkcs8`.
    pub(super) fn from_pkcs8(
        pkcs8: Vec<u8>,
        created_at: OffsetDateTime,
        retired_at: Option<OffsetDateTime>,
    ) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(KeyError::Rejected)?;
        let kid = thumbprint(pair.public_key().as_ref());
        Ok(Self {
            pair,
            pkcs8,
            kid,
            created_at,
            retired_at,
        })
    }

    /// The key's id: the RFC 7638 JWK thumbprint (SHA-256, base64url) of its public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#8 DER, for the key file.
    pub(super) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The public key as a JWK (`OKP`, `Ed25519`, with `kid`, `alg` and `use`).
    pub fn public_jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key: SHA-256 of the JWK's required
/// members in lexicographic order, without whitespace, base64url without padding.
fn thumbprint(public: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thumbprint_is_rfc_8037s_example() {
        // RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
        let public = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&public),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn a_stored_key_reads_back_with_the_same_kid() {
        let key = SigningKey::generate(OffsetDateTime::now_utc()).unwrap();
        let again = SigningKey::from_pkcs8(key.pkcs8().to_vec(), key.created_at, None).unwrap();
        assert_eq!(again.kid(), key.kid());
        assert_eq!(key.public_jwk()["kid"], key.kid());
        assert_eq!(key.kid().len(), 43);
    }
}
