//! [`RequestIdLayer`]: every request into the gateway has an `x-request-id` (the
//! caller's, or a new one), every answer carries it back, and every log line of the
//! request is in a span that names it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument as _;

use crate::REQUEST_ID_HEADER;

/// Gives each request a request id and puts it on the answer.
///
/// A request id the caller sent is kept when it is 1 to 128 visible ASCII characters;
/// otherwise a new UUID replaces it. [`CallContext`](crate::CallContext) then passes it
/// to every downstream.
///
/// ```
/// use axum::{Router, routing::get};
/// use dovetail_bff::RequestIdLayer;
///
/// let app: Router = Router::new().route("/", get(|| async { "ok" })).layer(RequestIdLayer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service [`RequestIdLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .filter(|value| acceptable(value))
            .cloned()
            .unwrap_or_else(crate::context::new_request_id);
        request.headers_mut().insert(REQUEST_ID_HEADER, id.clone());
        let span = tracing::info_span!(
            "request",
            request_id = id.to_str().unwrap_or_default(),
            method = %request.method(),
            path = request.uri().path(),
        );
        let call = self.inner.call(request);
        Box::pin(
            async move {
                let mut response = call.await?;
                response.headers_mut().insert(REQUEST_ID_HEADER, id);
                Ok(response)
            }
            .instrument(span),
        )
    }
}

pub(crate) fn acceptable(value: &HeaderValue) -> bool {
    (1..=128).contains(&value.len()) && value.as_bytes().iter().all(u8::is_ascii_graphic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ids_are_kept() {
        assert!(acceptable(&HeaderValue::from_static("req-42")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("two words")));
        let long = "x".repeat(129);
        assert!(!acceptable(&HeaderValue::from_str(&long).unwrap()));
    }
}
