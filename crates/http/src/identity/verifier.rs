//! [`JwtVerifier`]: checks a bearer JWT (algorithm, key, signature, then claims) and says
//! who it is from.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use serde::Deserialize;

use super::cache::VerifiedTokens;
use super::claims::{Expected, RawClaims};
use super::error::cut;
use super::jwks::VerifyingKey;
use super::{Algorithm, Identity, JwksError, JwksSource, VerifyError};

/// What a token must satisfy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// The only accepted `iss`, e.g. `https://auth.dovetail.internal`.
    pub issuer: String,
    /// This service's name; `aud` must contain it.
    pub audience: String,
    /// The accepted `alg`s. Default: EdDSA only. Anything else, and `none`, is refused.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default 30 s; keep it small.
    pub leeway: Duration,
    /// How many verified tokens to remember (by the whole token) so that the
    /// same token is not verified from scratch on every request; 0 turns it off. A hit
    /// still checks expiry, and every entry is dropped when the key set changes.
    /// Default 10,000.
    pub verified_cache_capacity: usize,
}

impl VerifierConfig {
    /// Tokens from `issuer` for `audience`, with the defaults (EdDSA, 30 s leeway).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithms: vec![Algorithm::EdDSA],
            leeway: Duration::from_secs(30),
            verified_cache_capacity: 10_000,
        }
    }
}

/// Verifies bearer JWTs against a [`JwksSource`]: the header's `alg` must be configured
/// (never `none`, never HMAC), its `kid` must be a key of the set for that algorithm, the
/// signature must verify, and `iss`, `aud`, `exp`, `nbf`, `iat`, `sub` and `jti` must be
/// right. Cheap to clone.
///
/// ```
/// use dovetail_http::identity::{JwksSource, JwtVerifier, VerifierConfig};
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = JwksSource::from_json(r#"{"keys": []}"#)?;
/// let verifier = JwtVerifier::new(VerifierConfig::new("https://auth.example", "claims"), keys);
/// assert!(verifier.verify("not-a-token").await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: VerifierConfig,
    keys: JwksSource,
    verified: VerifiedTokens,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("config", &self.inner.config)
            .field("keys", &self.inner.keys)
            .finish_non_exhaustive()
    }
}

/// The JOSE header fields the verifier reads.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
}

impl JwtVerifier {
    /// A verifier of tokens as `config` says, with the keys of `keys`.
    pub fn new(config: VerifierConfig, keys: JwksSource) -> Self {
        let verified = VerifiedTokens::new(config.verified_cache_capacity);
        Self {
            inner: Arc::new(Inner {
                config,
                keys,
                verified,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Who the token (the compact JWS, without `Bearer `) is from.
    ///
    /// # Errors
    /// A [`VerifyError`] saying why the token is refused; see its variants.
    pub async fn verify(&self, token: &str) -> Result<Identity, VerifyError> {
        let now = unix_now();
        let config = &self.inner.config;
        let keys = self.inner.keys.current().await;
        if let Some(identity) = self.inner.verified.get(token, keys.generation, now) {
            return Ok(identity);
        }
        let (alg, kid) = self.read_header(token)?;
        let (key, generation) = match keys.get(&kid) {
            Some(key) => (key.clone(), keys.generation),
            None => self.refetch(&kid, keys.generation).await?,
        };
        if key.algorithm != alg {
            return Err(VerifyError::KeyAlgorithmMismatch {
                kid: cut(&kid, 64),
                alg,
            });
        }
        let claims = verify_signature(token, &key, alg)?;
        let leeway_seconds = i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX);
        let identity = claims.check(&Expected {
            issuer: &config.issuer,
            audience: &config.audience,
            leeway_seconds,
            now,
        })?;
        let valid_until = identity
            .expires_at()
            .unix_timestamp()
            .saturating_add(leeway_seconds);
        self.inner
            .verified
            .insert(token, identity.clone(), generation, valid_until);
        Ok(identity)
    }

    /// The configured algorithm and the kid the header names.
    fn read_header(&self, token: &str) -> Result<(Algorithm, String), VerifyError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed {
                reason: "a JWT has three dot-separated parts",
            });
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| VerifyError::Malformed {
                reason: "the header is not base64url",
            })?;
        let header: RawHeader =
            serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed {
                reason: "the header is not a JSON object with an alg",
            })?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(VerifyError::Unsigned);
        }
        let allowed = &self.inner.config.algorithms;
        let alg = Algorithm::from_jose(&header.alg)
            .filter(|alg| allowed.contains(alg))
            .ok_or_else(|| VerifyError::AlgorithmNotAllowed {
                found: cut(&header.alg, 16),
                allowed: allowed.clone(),
            })?;
        let kid = header.kid.ok_or(VerifyError::MissingKeyId)?;
        Ok((alg, kid))
    }

    /// The key `kid`, which the set of generation `seen` lacks, after fetching the set
    /// again; unknown (401) if it is still missing or the fetch may not happen yet.
    async fn refetch(&self, kid: &str, seen: u64) -> Result<(VerifyingKey, u64), VerifyError> {
        let unknown = || VerifyError::UnknownKey { kid: cut(kid, 64) };
        match self.inner.keys.key_after_refetch(kid, seen).await {
            Ok((Some(key), generation)) => Ok((key, generation)),
            Ok((None, _))
            | Err(
                JwksError::RateLimited {
                    last_fetch_failed: false,
                }
                | JwksError::Static,
            ) => {
                tracing::warn!(kid = %cut(kid, 64), "token refused: its kid is not in the JWKS");
                Err(unknown())
            }
            Err(source) => {
                tracing::warn!(kid = %cut(kid, 64), error = %source, cause = ?std::error::Error::source(&source), "token refused: its kid is unknown and the JWKS cannot be fetched");
                Err(VerifyError::KeySetUnavailable {
                    kid: cut(kid, 64),
                    source,
                })
            }
        }
    }
}

/// The claims, once the signature verified with `key`.
fn verify_signature(
    token: &str,
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<RawClaims, VerifyError> {
    let mut validation = jsonwebtoken::Validation::new(alg.to_jsonwebtoken());
    // The claims are checked by `RawClaims::check`, with messages that say what to fix.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<RawClaims>(token, &key.key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(error) => Err(match error.kind() {
            ErrorKind::Base64(_) | ErrorKind::Utf8(_) => VerifyError::Malformed {
                reason: "a part is not base64url",
            },
            ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => VerifyError::BadClaims {
                reason: "the payload is not the JSON claims of an access token".to_owned(),
            },
            _ => VerifyError::BadSignature,
        }),
    }
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
