//! [`Downstream`]: the HTTP client of one service, with its own tower stack:
//! concurrency limit → circuit breaker → retries (idempotent calls only, within a
//! budget) → one attempt under the call timeout capped by the request's deadline.

mod breaker;
mod client;
pub(crate) mod report;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tower::ServiceExt as _;
use tower::limit::ConcurrencyLimit;
use tower::retry::Retry;
use tower::retry::budget::{Budget as _, TpsBudget};

pub use breaker::{
    BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer, CircuitBreakerService,
    DownstreamHealth,
};
pub use retry::RetryConfig;

use crate::{CallContext, CallError};
use client::{Attempt, HttpClient};
use retry::RetryPolicy;

/// The header that makes a POST safe to retry: the downstream answers a repeat once.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// How to reach one downstream service and how to protect it.
///
/// ```
/// use std::time::Duration;
/// use dovetail_bff::DownstreamConfig;
///
/// let config = DownstreamConfig {
///     call_timeout: Duration::from_millis(300),
///     concurrency: 32,
///     ..DownstreamConfig::new("policy", "http://127.0.0.1:8081")
/// };
/// assert_eq!(config.retry.budget_ratio, 0.2);
/// ```
#[derive(Debug, Clone)]
pub struct DownstreamConfig {
    /// Its name, in metrics, logs and section details.
    pub name: String,
    /// Its base URL; call paths are appended to it.
    pub base_url: String,
    /// The longest one attempt may take; the request's deadline caps it further.
    pub call_timeout: Duration,
    /// Calls in flight at most; more wait (within their deadline).
    pub concurrency: usize,
    /// Retries of idempotent calls.
    pub retry: RetryConfig,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
    /// Hedged reads: when a GET or HEAD has not answered after this long, a second
    /// attempt is sent and the first good answer wins (the other is dropped). Each hedge
    /// is paid from the retry budget, so hedges and retries together stay within it.
    /// `None` (the default): no hedging.
    pub hedge_after: Option<Duration>,
}

impl DownstreamConfig {
    /// `name` at `base_url`: one second per attempt, 64 calls in flight, the default
    /// retries and breaker.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            call_timeout: Duration::from_secs(1),
            concurrency: 64,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            hedge_after: None,
        }
    }
}

/// A downstream's whole answer. [`Downstream::send`] answers only statuses a section can
/// use (401, 403, 429 and 5xx are errors); [`Downstream::forward`] answers every one.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl DownstreamHealth for Answer {
    /// A 5xx or a 429: the downstream failed or sheds load.
    fn is_downstream_failure(&self) -> bool {
        self.status.is_server_error() || self.status == StatusCode::TOO_MANY_REQUESTS
    }
}

impl Answer {
    /// The body read as JSON, when the status is a success.
    ///
    /// # Errors
    /// [`CallError::Rejected`] for another status, [`CallError::Decode`] for a body that
    /// is not a `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, CallError> {
        if !self.status.is_success() {
            return Err(CallError::Rejected {
                status: self.status,
            });
        }
        serde_json::from_slice(&self.body).map_err(CallError::Decode)
    }
}

/// One call to make: a method, a path (with its query), perhaps a JSON body and an
/// idempotency key.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Option<Bytes>,
    idempotency_key: Option<HeaderValue>,
}

impl Call {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: HeaderMap::new(),
            body: None,
            idempotency_key: None,
        }
    }

    /// A POST of `body` as JSON to `path`.
    ///
    /// # Errors
    /// The serialisation's error.
    pub fn post_json<B: Serialize + ?Sized>(
        path: impl Into<String>,
        body: &B,
    ) -> Result<Self, serde_json::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(Self {
            method: Method::POST,
            path: path.into(),
            headers,
            body: Some(Bytes::from(serde_json::to_vec(body)?)),
            idempotency_key: None,
        })
    }

    /// A call of any method (only GET and HEAD are retried without an idempotency key);
    /// give a body's `Content-Type` with [`header`](Self::header).
    pub fn new(method: Method, path: impl Into<String>, body: Option<Bytes>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HeaderMap::new(),
            body,
            idempotency_key: None,
        }
    }

    /// The call with the header `name` set to `value` (the context's propagated headers
    /// and the deadline are set over it).
    #[must_use]
    pub fn header(mut self, name: axum::http::HeaderName, value: HeaderValue) -> Self {
        if name == IDEMPOTENCY_KEY_HEADER {
            self.idempotency_key = Some(value);
        } else {
            self.headers.insert(name, value);
        }
        self
    }

    /// The call with an `Idempotency-Key`: it may be retried.
    #[must_use]
    pub fn idempotency_key(mut self, key: HeaderValue) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Whether it only reads (GET or HEAD): what may be hedged.
    pub fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }

    /// Whether it may be sent more than once.
    pub fn is_idempotent(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD || self.idempotency_key.is_some()
    }
}

type Stack = ConcurrencyLimit<CircuitBreakerService<Retry<RetryPolicy, HttpClient>>>;

/// The client of one downstream service. Cheap to clone; clones share the breaker, the
/// budget and the concurrency limit.
///
/// ```no_run
/// use std::time::Duration;
/// use dovetail_bff::{CallContext, Downstream, DownstreamConfig};
/// use dovetail_http::deadline::Deadline;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let policy = Downstream::new(DownstreamConfig::new("policy", "http://127.0.0.1:8081"))?;
/// let context = CallContext::new(Deadline::after(Duration::from_millis(800)));
/// let policies: serde_json::Value = policy.get_json(&context, "/policies?customer_id=c-1").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Downstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    base_url: String,
    client: reqwest::Client,
    stack: Stack,
    breaker: Arc<CircuitBreaker>,
    budget: Arc<TpsBudget>,
    hedge_after: Option<Duration>,
}

/// Why a [`Downstream`] cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownstreamError {
    /// The base URL is not an absolute http(s) URL.
    ///
    /// ### Handling
    /// Fix the configuration: `http://host:port`, with no path.
    #[error("downstream {name}: base URL {url:?} is not http://host:port")]
    BadBaseUrl {
        /// The downstream.
        name: String,
        /// What was given.
        url: String,
    },
    /// The HTTP client cannot be built (its TLS backend).
    ///
    /// ### Handling
    /// A build problem; see the source.
    #[error("downstream {name}: the HTTP client cannot be built")]
    Client {
        /// The downstream.
        name: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
}

impl Downstream {
    /// A client for the downstream `config` describes.
    ///
    /// # Errors
    /// [`DownstreamError`] for a bad base URL or a client that cannot be built.
    pub fn new(config: DownstreamConfig) -> Result<Self, DownstreamError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !reqwest::Url::parse(&base_url).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
        {
            return Err(DownstreamError::BadBaseUrl {
                name: config.name,
                url: config.base_url,
            });
        }
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| DownstreamError::Client {
                name: config.name.clone(),
                source,
            })?;
        let breaker = Arc::new(CircuitBreaker::new(config.breaker));
        let budget = Arc::new(config.retry.budget());
        let stack = tower::ServiceBuilder::new()
            .concurrency_limit(config.concurrency.max(1))
            .layer(CircuitBreakerLayer::new(Arc::clone(&breaker)))
            .layer(tower::retry::RetryLayer::new(RetryPolicy {
                config: config.retry,
                budget: Arc::clone(&budget),
                retries: 0,
            }))
            .service(HttpClient {
                client: client.clone(),
                call_timeout: config.call_timeout,
            });
        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name,
                base_url,
                client,
                stack,
                breaker,
                budget,
                hedge_after: config.hedge_after,
            }),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Where its breaker stands.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Makes `call` with what `context` carries: its deadline (the header set on every
    /// attempt to the time that remains), the caller's `Authorization`, `traceparent` and
    /// request id. Answers by the deadline.
    ///
    /// # Errors
    /// [`CallError`]: each variant says what happened and which section outcome it is;
    /// a 401 or 403 is [`CallError::Forbidden`], a 5xx or 429 [`CallError::Failed`].
    pub async fn send(&self, context: &CallContext, call: Call) -> Result<Answer, CallError> {
        self.call(context, call, client::classify).await
    }

    /// Makes `call` as [`send`](Self::send) does, and answers whatever HTTP answer came
    /// back, its status and body as the downstream sent them: what a proxy passes on. A
    /// 5xx still counts against the breaker and is retried when the call is idempotent.
    ///
    /// # Errors
    /// [`CallError::Timeout`], [`CallError::CircuitOpen`] or [`CallError::Transport`]
    /// when no answer came.
    pub async fn forward(&self, context: &CallContext, call: Call) -> Result<Answer, CallError> {
        self.call(context, call, Ok).await
    }

    async fn call(
        &self,
        context: &CallContext,
        call: Call,
        judge: fn(Answer) -> Result<Answer, CallError>,
    ) -> Result<Answer, CallError> {
        let started = Instant::now();
        if context.deadline().has_passed() {
            let result = Err(CallError::Timeout);
            report::call(
                &self.inner.name,
                started.elapsed(),
                &result,
                self.breaker_state(),
            );
            return result;
        }
        let idempotent = call.is_idempotent();
        let hedge_after = self.inner.hedge_after.filter(|_| call.is_read());
        let url = format!("{}{}", self.inner.base_url, call.path);
        let mut builder = self.inner.client.request(call.method, url);
        if let Some(body) = call.body {
            builder = builder.body(body);
        }
        if let Some(key) = call.idempotency_key {
            builder = builder.header(IDEMPOTENCY_KEY_HEADER, key);
        }
        let mut request = builder
            .build()
            .map_err(|error| CallError::Transport(Box::new(error)))?;
        request.headers_mut().extend(call.headers);
        context.insert_into(request.headers_mut());
        let deadline = context.deadline();
        let attempt = Attempt {
            request,
            deadline,
            idempotent,
        };
        self.inner.budget.deposit();
        let exchange = async {
            match (hedge_after, attempt.try_clone()) {
                (Some(after), Some(second)) => self.hedged(attempt, second, after).await,
                _ => self.inner.stack.clone().oneshot(attempt).await,
            }
        };
        let result = match tokio::time::timeout_at(deadline.instant(), exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout),
        };
        report::call(
            &self.inner.name,
            started.elapsed(),
            &result,
            self.inner.breaker.state(),
        );
        let result = result.and_then(judge);
        if let Err(error) = &result {
            tracing::debug!(
                downstream = %self.inner.name,
                request_id = context.request_id(),
                outcome = error.outcome().as_str(),
                "call failed: {error}"
            );
        }
        result
    }

    /// Sends `first`; when it has not answered after `after`, and the retry budget
    /// allows, sends `second` too. The first good answer wins and the other attempt is
    /// dropped; a failed one waits for the other when that one is in flight.
    async fn hedged(
        &self,
        first: Attempt,
        second: Attempt,
        after: Duration,
    ) -> Result<Answer, CallError> {
        let started = std::sync::atomic::AtomicBool::new(false);
        let first = self.inner.stack.clone().oneshot(first);
        let second = async {
            tokio::time::sleep(after).await;
            if !self.inner.budget.withdraw() {
                return std::future::pending().await;
            }
            started.store(true, std::sync::atomic::Ordering::Relaxed);
            report::hedge(&self.inner.name);
            self.inner.stack.clone().oneshot(second).await
        };
        tokio::pin!(first, second);
        tokio::select! {
            biased;
            result = &mut first => {
                if breaker::failed(&result) && started.load(std::sync::atomic::Ordering::Relaxed) {
                    second.await
                } else {
                    result
                }
            }
            result = &mut second => {
                if breaker::failed(&result) { first.await } else { result }
            }
        }
    }

    /// GETs `path` and reads the answer as JSON.
    ///
    /// # Errors
    /// [`CallError`]; a status other than 2xx is [`CallError::Rejected`].
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        context: &CallContext,
        path: &str,
    ) -> Result<T, CallError> {
        self.send(context, Call::get(path)).await?.json()
    }
}
