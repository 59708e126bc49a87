//! [`JwksSource`]: the verifying keys, from a static JWKS or fetched from a URL and cached,
//! fetched again (at a bounded rate) for an unknown `kid` and when the cache is old.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use tokio::time::Instant;

use super::{Algorithm, JwksError};

/// How a fetched key set is cached and fetched again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JwksConfig {
    /// At most one fetch per this interval, whatever asks for it (unknown kids, an old
    /// cache). Default 30 s: a flood of tokens with made-up kids costs the auth service
    /// one request per interval.
    pub refetch_interval: Duration,
    /// The cache is fetched again when older than this, so that a key removed from the
    /// set stops verifying. Default 5 minutes. If the fetch fails, the old keys stay.
    pub max_age: Duration,
    /// Timeout of one fetch. Default 5 s.
    pub fetch_timeout: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            refetch_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// A verifying key from the set: its algorithm and key material.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// One version of the key set; `generation` counts the versions, so that what was
/// verified with an older one can be told apart.
pub(crate) struct KeySet {
    pub(crate) generation: u64,
    keys: HashMap<String, VerifyingKey>,
    fetched_at: Instant,
}

impl KeySet {
    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }
}

/// Where the verifying keys come from: a JWKS URL (fetched, cached, fetched again for an
/// unknown `kid` at most once per [`JwksConfig::refetch_interval`], concurrent callers
/// sharing one fetch) or a static JWKS. Cheap to clone; clones share the cache.
///
/// Only asymmetric keys with a `kid` are used: `OKP`/`Ed25519` for EdDSA and `EC`/`P-256`
/// for ES256. Other keys (RSA, `oct` secrets) are skipped, so no key of the set can be
/// used as an HMAC secret.
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Origin,
    config: JwksConfig,
    current: RwLock<Arc<KeySet>>,
    /// The last fetch; held across a fetch, so concurrent callers wait for it and share
    /// its result.
    last_fetch: tokio::sync::Mutex<LastFetch>,
}

/// When the last fetch that counts against the refetch interval was tried, and whether
/// it failed. The first successful load does not count: the first unknown `kid` after
/// start-up (a key rotated in meanwhile) may fetch at once.
#[derive(Default)]
struct LastFetch {
    at: Option<Instant>,
    failed: bool,
}

enum Origin {
    Static,
    Url {
        url: String,
        client: reqwest::Client,
    },
}

impl std::fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let origin = match &self.inner.origin {
            Origin::Static => "static",
            Origin::Url { url, .. } => url.as_str(),
        };
        f.debug_struct("JwksSource")
            .field("origin", &origin)
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// A static key set, from the JSON of a JWKS (`{"keys": [...]}`): for a service that
    /// has the keys locally, and for tests.
    ///
    /// # Errors
    /// [`JwksError::Parse`] if the text is not a JWKS.
    pub fn from_json(jwks: &str) -> Result<Self, JwksError> {
        let set = parse(jwks.as_bytes(), "static key set")?;
        Ok(Self::with(
            Origin::Static,
            JwksConfig::default(),
            keys_of(&set),
        ))
    }

    /// A key set fetched from `url`. Nothing is fetched until a token needs a key (or
    /// [`refresh`](Self::refresh) is called, which a service may do at start-up).
    ///
    /// # Errors
    /// [`JwksError::Fetch`] if the HTTP client cannot be built.
    pub fn from_url(url: impl Into<String>, config: JwksConfig) -> Result<Self, JwksError> {
        let url = url.into();
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|source| JwksError::Fetch {
                url: url.clone(),
                source: Box::new(source),
            })?;
        Ok(Self::with(
            Origin::Url { url, client },
            config,
            HashMap::new(),
        ))
    }

    fn with(origin: Origin, config: JwksConfig, keys: HashMap<String, VerifyingKey>) -> Self {
        Self {
            inner: Arc::new(Inner {
                origin,
                config,
                current: RwLock::new(Arc::new(KeySet {
                    generation: 0,
                    keys,
                    fetched_at: Instant::now(),
                })),
                last_fetch: tokio::sync::Mutex::new(LastFetch::default()),
            }),
        }
    }

    /// Fetches the key set now, unless the last fetch was less than the refetch interval
    /// ago.
    ///
    /// # Errors
    /// [`JwksError::RateLimited`], [`JwksError::Static`], or why the fetch failed; the
    /// cached keys stay in every case.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        self.fetch_if_allowed(None).await.map(drop)
    }

    /// The kids of the current key set (sorted), for logs and tests.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.snapshot().keys.keys().cloned().collect();
        kids.sort();
        kids
    }

    fn snapshot(&self) -> Arc<KeySet> {
        match self.inner.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The current key set, fetched again first if it is older than `max_age` (and a
    /// fetch is allowed); a failed fetch keeps the old set.
    pub(crate) async fn current(&self) -> Arc<KeySet> {
        let snapshot = self.snapshot();
        let stale = matches!(self.inner.origin, Origin::Url { .. })
            && (snapshot.generation == 0
                || snapshot.fetched_at.elapsed() >= self.inner.config.max_age);
        if !stale {
            return snapshot;
        }
        match self.fetch_if_allowed(Some(snapshot.generation)).await {
            Ok(fresh) => fresh,
            Err(JwksError::RateLimited { .. }) => self.snapshot(),
            Err(error) => {
                tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "JWKS refresh failed; keeping the cached keys");
                self.snapshot()
            }
        }
    }

    /// The key `kid` after fetching the set again (at a bounded rate), for a `kid` the
    /// set of generation `seen` did not have: `None` if the fresh set lacks it too. With
    /// the generation of the set it was found in.
    pub(crate) async fn key_after_refetch(
        &self,
        kid: &str,
        seen: u64,
    ) -> Result<(Option<VerifyingKey>, u64), JwksError> {
        let set = self.fetch_if_allowed(Some(seen)).await?;
        Ok((set.get(kid).cloned(), set.generation))
    }

    /// Fetches the set unless the last fetch was less than the refetch interval ago. If
    /// another caller fetched while this one waited (the generation moved past `seen`),
    /// its result is used instead.
    async fn fetch_if_allowed(&self, seen: Option<u64>) -> Result<Arc<KeySet>, JwksError> {
        let Origin::Url { url, client } = &self.inner.origin else {
            return Err(JwksError::Static);
        };
        let mut last_fetch = self.inner.last_fetch.lock().await;
        let current = self.snapshot();
        if let Some(seen) = seen
            && current.generation > seen
        {
            return Ok(current);
        }
        if let Some(at) = last_fetch.at
            && at.elapsed() < self.inner.config.refetch_interval
        {
            return Err(JwksError::RateLimited {
                last_fetch_failed: last_fetch.failed,
            });
        }
        let started = Instant::now();
        let fetched = fetch(client, url).await;
        let initial_load = current.generation == 0 && fetched.is_ok();
        if !initial_load {
            last_fetch.at = Some(started);
        }
        last_fetch.failed = fetched.is_err();
        let set = fetched?;
        let fresh = Arc::new(KeySet {
            generation: current.generation + 1,
            keys: keys_of(&set),
            fetched_at: Instant::now(),
        });
        tracing::debug!(url = %url, keys = fresh.keys.len(), generation = fresh.generation, "JWKS fetched");
        match self.inner.current.write() {
            Ok(mut slot) => *slot = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<JwkSet, JwksError> {
    let failed = |source: reqwest::Error| JwksError::Fetch {
        url: url.to_owned(),
        source: Box::new(source),
    };
    let response = client.get(url).send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        return Err(JwksError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    let body = response.bytes().await.map_err(failed)?;
    parse(&body, url)
}

fn parse(body: &[u8], origin: &str) -> Result<JwkSet, JwksError> {
    serde_json::from_slice(body).map_err(|source| JwksError::Parse {
        origin: origin.to_owned(),
        source: Box::new(source),
    })
}

/// The usable keys of a set, by kid.
fn keys_of(set: &JwkSet) -> HashMap<String, VerifyingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            match usable(jwk) {
                Some(key) => Some((kid, key)),
                None => {
                    tracing::debug!(kid = %kid, "JWKS key skipped: not an Ed25519 or P-256 key for its algorithm");
                    None
                }
            }
        })
        .collect()
}

fn usable(jwk: &Jwk) -> Option<VerifyingKey> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let stated = jwk.common.key_algorithm;
    let agrees = match stated {
        None => true,
        Some(KeyAlgorithm::EdDSA) => algorithm == Algorithm::EdDSA,
        Some(KeyAlgorithm::ES256) => algorithm == Algorithm::ES256,
        Some(_) => false,
    };
    if !agrees {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn only_asymmetric_keys_with_a_kid_are_kept() {
        let jwks = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "ed"},
            {"kty": "OKP", "crv": "Ed25519", "x": X},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "lying", "alg": "ES256"}
        ]});
        let source = JwksSource::from_json(&jwks.to_string()).unwrap();
        assert_eq!(source.kids(), vec!["ed".to_owned()]);
    }

    #[test]
    fn text_that_is_not_a_jwks_is_a_parse_error() {
        assert!(matches!(
            JwksSource::from_json("{\"keys\": 3}"),
            Err(JwksError::Parse { .. })
        ));
    }
}
