//! [`SelfVerifier`] and the middleware that puts a verified `Identity` into a request:
//! dovetail-http's `IdentityLayer`, with a verifier over this service's own keys that is
//! rebuilt when they rotate.

use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dovetail_http::identity::{IdentityLayer, JwksError, JwksSource, JwtVerifier, VerifierConfig};
use tower::{Layer, ServiceExt};

use crate::keys::KeyRing;

/// Verifies this service's own tokens against its key ring (no HTTP round trip), with
/// the same checks every other service makes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SelfVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    keys: KeyRing,
    config: VerifierConfig,
    current: RwLock<(u64, JwtVerifier)>,
}

impl SelfVerifier {
    /// A verifier of tokens as `config` says, against `keys`.
    ///
    /// # Errors
    /// [`JwksError::Parse`] if the ring's JWKS does not parse (it always does).
    pub fn new(keys: KeyRing, config: VerifierConfig) -> Result<Self, JwksError> {
        let generation = keys.generation();
        let verifier = build(&keys, &config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                keys,
                config,
                current: RwLock::new((generation, verifier)),
            }),
        })
    }

    /// The verifier of the current keys: rebuilt after a rotation.
    pub fn current(&self) -> JwtVerifier {
        let generation = self.inner.keys.generation();
        {
            let current = self
                .inner
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if current.0 == generation {
                return current.1.clone();
            }
        }
        let mut current = self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match build(&self.inner.keys, &self.inner.config) {
            Ok(verifier) => *current = (generation, verifier),
            Err(error) => tracing::error!(
                error = %error,
                "cannot build a verifier of the rotated keys; keeping the previous one"
            ),
        }
        current.1.clone()
    }
}

fn build(keys: &KeyRing, config: &VerifierConfig) -> Result<JwtVerifier, JwksError> {
    let source = JwksSource::from_json(&keys.jwks().to_string())?;
    Ok(JwtVerifier::new(config.clone(), source))
}

/// Runs the rest of the request behind `IdentityLayer` with the current verifier: a 401
/// problem unless the bearer token verifies.
pub(super) async fn authenticate(
    State(verifier): State<SelfVerifier>,
    request: Request,
    next: Next,
) -> Response {
    let inner = tower::service_fn(move |request: Request| {
        let next = next.clone();
        async move { Ok::<_, Infallible>(next.run(request).await) }
    });
    match IdentityLayer::new(verifier.current())
        .layer(inner)
        .oneshot(request)
        .await
    {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
