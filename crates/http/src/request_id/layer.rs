//! [`RequestIdLayer`] and [`RequestIdService`]: every request gets a [`RequestId`], a
//! tracing span that records it, and an answer that echoes it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{REQUEST_ID_HEADER, RequestId};

/// Gives every request a [`RequestId`] — the caller's `x-request-id` when it is fit to log,
/// otherwise a new UUIDv7 — and:
///
/// - puts it in the request's extensions (handlers take `RequestId` as an extractor);
/// - serves the request inside an `info` span named `request` with fields `request_id`,
///   `method` and `path`, so every log line of the request carries them;
/// - makes it [`RequestId::current`] while the request is served, so problems carry it
///   and clients can pass it downstream;
/// - sets `x-request-id` on the answer, whatever the answer is.
///
/// Put it outermost, so that it sees every answer, fallbacks included:
///
/// ```
/// use axum::{Router, routing::get};
/// use dovetail_http::request_id::{RequestId, RequestIdLayer};
///
/// let app: Router = Router::new()
///     .route("/whoami", get(|id: RequestId| async move { id.to_string() }))
///     .layer(RequestIdLayer::new());
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer {
    _private: (),
}

impl RequestIdLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// The service [`RequestIdLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response> + Send + 'static,
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
        let id = RequestId::from_headers_or_generate(request.headers());
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %request.method(),
            path = %request.uri().path(),
        );
        request.extensions_mut().insert(id.clone());
        let header = id.header_value();
        let served = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let mut answer = id.scope(served).await?;
                answer.headers_mut().insert(REQUEST_ID_HEADER, header);
                Ok(answer)
            }
            .instrument(span),
        )
    }
}
