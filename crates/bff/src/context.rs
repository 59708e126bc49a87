//! [`CallContext`]: what every downstream call of one request carries: the request's
//! [`Deadline`], the caller's `Authorization`, `traceparent` and the request id.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use dovetail_http::Problem;
use dovetail_http::deadline::{BadDeadline, Deadline};
use dovetail_http::request_id::{REQUEST_ID_HEADER, RequestId};

/// The W3C trace context header, passed on as it came.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// What the calls made for one incoming request carry downstream.
///
/// Build it from the incoming request's headers behind `dovetail_http`'s
/// `IdentityLayer`, so the `Authorization` passed on is a bearer token that layer
/// verified.
///
/// ```
/// use std::time::Duration;
/// use axum::http::{HeaderMap, HeaderValue};
/// use dovetail_bff::CallContext;
///
/// let mut incoming = HeaderMap::new();
/// incoming.insert("authorization", HeaderValue::from_static("Bearer eyJ..."));
/// incoming.insert("dovetail-deadline-ms", HeaderValue::from_static("300"));
/// let context = CallContext::from_headers(&incoming, Duration::from_secs(2))?;
/// assert!(context.deadline().remaining() <= Duration::from_millis(300));
/// assert_eq!(context.request_id().len(), 36); // none came: a new one
/// # Ok::<(), dovetail_http::deadline::BadDeadline>(())
/// ```
#[derive(Debug, Clone)]
pub struct CallContext {
    deadline: Deadline,
    request_id: HeaderValue,
    propagated: HeaderMap,
}

impl CallContext {
    /// A context for a request that starts here: `deadline`, a new request id, nothing
    /// else to pass on.
    pub fn new(deadline: Deadline) -> Self {
        Self {
            deadline,
            request_id: RequestId::generate().header_value(),
            propagated: HeaderMap::new(),
        }
    }

    /// The context of an incoming request: its deadline header (capped at `budget`, the
    /// longest this route may take; `budget` when the header is absent), its
    /// `Authorization`, `traceparent` and `x-request-id` (a new one when absent or not
    /// 1 to 128 visible ASCII characters).
    ///
    /// # Errors
    /// [`BadDeadline`] when the deadline header cannot be read (answer its 400 problem).
    pub fn from_headers(headers: &HeaderMap, budget: Duration) -> Result<Self, BadDeadline> {
        let deadline = match Deadline::from_headers(headers)? {
            Some(asked) => asked.capped(budget),
            None => Deadline::after(budget),
        };
        let mut propagated = HeaderMap::new();
        for name in [AUTHORIZATION, HeaderName::from_static(TRACEPARENT_HEADER)] {
            if let Some(value) = headers.get(&name) {
                propagated.insert(name, value.clone());
            }
        }
        let request_id = RequestId::from_headers_or_generate(headers).header_value();
        Ok(Self {
            deadline,
            request_id,
            propagated,
        })
    }

    /// This context with the caller's `Authorization` header set to `value`.
    #[must_use]
    pub fn with_authorization(mut self, value: HeaderValue) -> Self {
        self.propagated.insert(AUTHORIZATION, value);
        self
    }

    /// This context with `traceparent` set to `value`.
    #[must_use]
    pub fn with_traceparent(mut self, value: HeaderValue) -> Self {
        self.propagated
            .insert(HeaderName::from_static(TRACEPARENT_HEADER), value);
        self
    }

    /// This context with the request id `value`.
    #[must_use]
    pub fn with_request_id(mut self, value: HeaderValue) -> Self {
        self.request_id = value;
        self
    }

    /// The request's deadline.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The request id (for logs and answers).
    pub fn request_id(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// Puts the propagated headers and the request id into a downstream call's headers.
    pub(crate) fn insert_into(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.propagated {
            headers.insert(name, value.clone());
        }
        headers.insert(REQUEST_ID_HEADER, self.request_id.clone());
    }
}

/// The longest a route may take when no [`RouteBudget`] says otherwise: two seconds.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(2);

/// The longest the requests of a router may take, for the [`CallContext`] extractor:
/// add it with `.layer(axum::Extension(RouteBudget(...)))`. The caller's deadline header
/// can shorten it, never lengthen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteBudget(pub Duration);

/// A handler takes the request's [`CallContext`] as an extractor: the deadline header
/// capped at the [`RouteBudget`] (or [`DEFAULT_BUDGET`]); a bad header is a 400 problem.
impl<S: Send + Sync> FromRequestParts<S> for CallContext {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let budget = parts
            .extensions
            .get::<RouteBudget>()
            .map_or(DEFAULT_BUDGET, |budget| budget.0);
        let context = Self::from_headers(&parts.headers, budget).map_err(|bad| bad.problem())?;
        // Behind `RequestIdLayer`, the id it answers with (possibly one it made).
        Ok(match parts.extensions.get::<RequestId>() {
            Some(id) => context.with_request_id(id.header_value()),
            None => context,
        })
    }
}
