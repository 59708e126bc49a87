//! [`Problem`]: an RFC 9457 `application/problem+json` error response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request_id::RequestId;

/// An error answered as `application/problem+json` (RFC 9457): `type` names the kind of
/// problem, `title` says it in a few words, `detail` says what happened *and what to do*.
///
/// ```
/// use axum::http::StatusCode;
/// use dovetail_http::Problem;
///
/// let problem = Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
///     .detail("no policy has the id pol-9; list policies with GET /policies?customer_id=...");
/// assert_eq!(problem.status(), StatusCode::NOT_FOUND);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    type_uri: String,
    title: String,
    #[serde(serialize_with = "status_code")]
    status: StatusCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldProblem>,
    #[serde(skip)]
    retry_after_seconds: Option<u32>,
}

/// One field's problem inside a [`Problem`]: where (a JSON pointer-like path) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldProblem {
    /// The field, such as `coverage_limit` or `items[2].amount`.
    pub field: String,
    /// What is wrong with it and what to send instead.
    pub message: String,
}

fn status_code<S: serde::Serializer>(
    status: &StatusCode,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl Problem {
    /// A problem of kind `kind` (the last segment of its type URI,
    /// `https://dovetail.dev/problems/<kind>`).
    pub fn new(status: StatusCode, kind: &str, title: impl Into<String>) -> Self {
        Self {
            type_uri: format!("https://dovetail.dev/problems/{kind}"),
            title: title.into(),
            status,
            detail: None,
            errors: Vec::new(),
            retry_after_seconds: None,
        }
    }

    /// Says what happened and what the caller can do about it.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a field's problem.
    #[must_use]
    pub fn field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldProblem {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    /// Asks the caller to retry after `seconds` (a `Retry-After` header).
    #[must_use]
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail, if any.
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// 400: the request cannot be read (malformed JSON, a bad header).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "The request cannot be read",
        )
        .detail(detail)
    }

    /// 422: the request was read but its content is invalid.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is invalid",
        )
        .detail(detail)
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").detail(detail)
    }

    /// 409: the request conflicts with the resource's state.
    pub fn conflict(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            kind,
            "Conflict with the current state",
        )
        .detail(detail)
    }

    /// 500: our fault; the detail must not leak internals, the log has them.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .detail(detail)
    }

    /// 503: a dependency is unavailable; retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        )
        .detail(detail)
        .retry_after(1)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// A problem as answered: its members and, inside a
/// [`RequestIdLayer`](crate::request_id::RequestIdLayer), the id of the request answered
/// as `request_id`.
#[derive(Serialize)]
struct Rendered<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let request_id = RequestId::current();
        let rendered = Rendered {
            problem: &self,
            request_id: request_id.as_ref().map(RequestId::as_str),
        };
        let body = serde_json::to_vec(&rendered).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after_seconds {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
