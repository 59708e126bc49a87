//! [`IdentityLayer`] and [`IdentityService`]: every request must carry a bearer token that
//! verifies; its [`Identity`] goes into the request's extensions, anything else is a 401.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{Identity, JwtVerifier, Unauthorized, VerifyError};

/// Puts a verified [`Identity`] into every request's extensions, or answers 401
/// ([`Unauthorized`]) without calling the inner service.
///
/// Apply it to the API router only, and merge the routes that must stay open (`/healthz`,
/// `/readyz`, `/metrics`) after it, so the layer never sees them:
///
/// ```
/// use axum::{Router, routing::get};
/// use dovetail_http::identity::{Identity, IdentityLayer, JwksSource, JwtVerifier, VerifierConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = JwksSource::from_json(r#"{"keys": []}"#)?;
/// let verifier = JwtVerifier::new(VerifierConfig::new("https://auth.example", "claims"), keys);
///
/// let api = Router::new()
///     .route("/claims", get(|identity: Identity| async move { identity.subject().to_owned() }))
///     .layer(IdentityLayer::new(verifier));
/// let app: Router = api.merge(Router::new().route("/healthz", get(|| async { "ok" })));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IdentityLayer {
    verifier: JwtVerifier,
}

impl IdentityLayer {
    /// A layer that verifies with `verifier`.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for IdentityLayer {
    type Service = IdentityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdentityService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`IdentityLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct IdentityService<S> {
    inner: S,
    verifier: JwtVerifier,
}

impl<S, B> Service<Request<B>> for IdentityService<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is the one not yet polled ready; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match identify(&verifier, request.headers().get(header::AUTHORIZATION)).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(error) => Ok(Unauthorized::from(error).into_response()),
            }
        })
    }
}

/// The identity an `Authorization` header's bearer token verifies to.
async fn identify(
    verifier: &JwtVerifier,
    authorization: Option<&HeaderValue>,
) -> Result<Identity, VerifyError> {
    let token = bearer_token(authorization)?;
    verifier.verify(token).await
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case, RFC 7235).
fn bearer_token(authorization: Option<&HeaderValue>) -> Result<&str, VerifyError> {
    let value = authorization.ok_or(VerifyError::Missing)?;
    let text = value.to_str().map_err(|_| VerifyError::Malformed {
        reason: "the Authorization header is not ASCII",
    })?;
    let (scheme, token) = text.split_once(' ').ok_or(VerifyError::Malformed {
        reason: "the Authorization header is not `Bearer <token>`",
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(VerifyError::Malformed {
            reason: "the Authorization scheme is not Bearer",
        });
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(VerifyError::Malformed {
            reason: "the bearer token is empty",
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let value = HeaderValue::from_static("bearer a.b.c");
        assert_eq!(bearer_token(Some(&value)).unwrap(), "a.b.c");
    }

    #[test]
    fn another_scheme_or_an_empty_token_is_malformed() {
        for header in ["Basic dXNlcjpwYXNz", "Bearer ", "Bearer"] {
            let value = HeaderValue::from_static(header);
            assert!(
                matches!(
                    bearer_token(Some(&value)),
                    Err(VerifyError::Malformed { .. })
                ),
                "{header}"
            );
        }
        assert!(matches!(bearer_token(None), Err(VerifyError::Missing)));
    }
}
