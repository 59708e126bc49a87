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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::deadline::{DEADLINE_HEADER, DeadlineLayer};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn logged() -> &'static str {
        tracing::info!("logged work begins");
        tokio::time::sleep(Duration::from_secs(5)).await;
        tracing::info!("logged work never ends");
        "done"
    }

    /// On the current-thread runtime of `#[tokio::test]`, so the subscriber set for this
    /// thread sees everything the request logs; no other test reaches these call sites.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn every_log_line_of_a_request_carries_its_id_the_deadline_layers_too() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        let app = Router::new()
            .route("/logged", get(logged))
            .layer(DeadlineLayer::new())
            .layer(RequestIdLayer::new());
        let request = Request::get("/logged")
            .header(REQUEST_ID_HEADER, "req-logged-1")
            .header(DEADLINE_HEADER, "50")
            .body(Body::empty())
            .unwrap();
        let answer = app.oneshot(request).await.unwrap();
        assert_eq!(answer.status(), 504);
        assert_eq!(answer.headers()[REQUEST_ID_HEADER], "req-logged-1");

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!logs.contains("never ends"), "{logs}");
        for message in ["logged work begins", "deadline passed"] {
            let found: Vec<&str> = logs.lines().filter(|line| line.contains(message)).collect();
            assert_eq!(found.len(), 1, "{message:?} in {logs}");
            assert!(
                found[0].contains("request{request_id=req-logged-1 method=GET path=/logged}"),
                "{message:?} without its request id: {}",
                found[0]
            );
        }
    }
}
