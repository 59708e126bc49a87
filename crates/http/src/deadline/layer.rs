//! [`DeadlineLayer`] and [`DeadlineService`]: a request that carries a [`DEADLINE_HEADER`]
//! is served under that deadline; once it passes, the handler's future is dropped (its
//! work stops) and the answer is [`Deadline::exceeded_problem`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{DEADLINE_HEADER, Deadline};

/// Honours the [`DEADLINE_HEADER`] of every request:
///
/// - no header: the request is served as if the layer were not there (or, with
///   [`with_max`](Self::with_max), under that limit);
/// - a value that is not a deadline: 400 problem saying what to send
///   ([`BadDeadline`](super::BadDeadline)), the inner service is not called;
/// - a deadline that has passed already (`0`): 504 ([`Deadline::exceeded_problem`]), the
///   inner service is not called;
/// - otherwise the [`Deadline`] goes into the request's extensions (handlers take it as
///   an extractor, `Deadline` or `Option<Deadline>`, and pass it to their own calls) and
///   the inner service runs under [`tokio::time::timeout_at`]. When the deadline passes
///   first, its future is dropped — the work it was doing stops at its next `.await` —
///   and the answer is 504.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use dovetail_http::deadline::{Deadline, DeadlineLayer};
///
/// async fn report(deadline: Option<Deadline>) -> String {
///     match deadline {
///         Some(deadline) => format!("{} ms left", deadline.remaining().as_millis()),
///         None => "no deadline".to_owned(),
///     }
/// }
///
/// let app: Router = Router::new()
///     .route("/report", get(report))
///     .layer(DeadlineLayer::new());
/// # let _ = app;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer {
    max: Option<Duration>,
}

impl DeadlineLayer {
    /// The layer: a request without the header has no deadline.
    pub fn new() -> Self {
        Self::default()
    }

    /// The layer with a service-wide limit: every request is served under at most `max`,
    /// the caller's deadline when it is earlier. A request without the header gets
    /// `max`, as a [`Deadline`] in its extensions like any other.
    ///
    /// ```
    /// use std::time::Duration;
    /// use dovetail_http::deadline::DeadlineLayer;
    ///
    /// let layer = DeadlineLayer::with_max(Duration::from_secs(30));
    /// # let _ = layer;
    /// ```
    pub fn with_max(max: Duration) -> Self {
        Self { max: Some(max) }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            max: self.max,
        }
    }
}

/// The service [`DeadlineLayer`] wraps around an inner one.
#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    max: Option<Duration>,
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
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
        let deadline = match Deadline::from_headers(request.headers()) {
            Ok(deadline) => deadline,
            Err(bad) => {
                tracing::debug!(error = %bad, "refused a request with a bad {DEADLINE_HEADER}");
                return Box::pin(async move { Ok(bad.problem().into_response()) });
            }
        };
        let deadline = match (deadline, self.max) {
            (Some(deadline), Some(max)) => deadline.capped(max),
            (Some(deadline), None) => deadline,
            (None, Some(max)) => Deadline::after(max),
            (None, None) => return Box::pin(self.inner.call(request)),
        };
        if deadline.has_passed() {
            tracing::debug!("a request arrived with its deadline passed; not served");
            return Box::pin(async { Ok(Deadline::exceeded_problem().into_response()) });
        }
        request.extensions_mut().insert(deadline);
        // The inner service was polled ready: it serves this request, now.
        let served = self.inner.call(request);
        Box::pin(async move {
            if let Ok(answer) = tokio::time::timeout_at(deadline.instant(), served).await {
                answer
            } else {
                tracing::info!("the request's deadline passed; its work was stopped");
                Ok(Deadline::exceeded_problem().into_response())
            }
        })
    }
}
