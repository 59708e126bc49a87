//! [`RequestId`]: the id that ties together every log line and every answer of one
//! request, carried from hop to hop in the [`REQUEST_ID_HEADER`] (`x-request-id`).
//!
//! [`RequestIdLayer`] takes the caller's id when it is fit to log (visible ASCII, at most
//! [`MAX_REQUEST_ID_LEN`] characters) or makes a UUIDv7, puts it in the request's
//! extensions, runs the request inside a `request` tracing span that records it (so every
//! log line of the request carries `request_id=…`), and echoes it in the answer's
//! `x-request-id`. Problems answered inside the span carry it as their `request_id`
//! member.
//!
//! ```
//! use axum::http::HeaderMap;
//! use dovetail_http::request_id::{REQUEST_ID_HEADER, RequestId};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(REQUEST_ID_HEADER, "req-42".parse()?);
//! assert_eq!(RequestId::from_headers_or_generate(&headers).as_str(), "req-42");
//!
//! headers.insert(REQUEST_ID_HEADER, "has spaces, not fit to log".parse()?);
//! let made = RequestId::from_headers_or_generate(&headers);
//! assert_eq!(made.as_str().len(), 36, "a UUIDv7 in its hyphenated form");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod layer;

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

pub use layer::{RequestIdLayer, RequestIdService};

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The longest request id taken from a caller; a longer one is replaced by a new id.
pub const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// One request's id: visible ASCII (`!` to `~`), 1 to [`MAX_REQUEST_ID_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// `text` as a request id, if it is one: not empty, at most [`MAX_REQUEST_ID_LEN`]
    /// characters, each visible ASCII (no spaces, no control characters), so it can go
    /// into log lines and headers as it is.
    pub fn parse(text: &str) -> Option<Self> {
        let fit = !text.is_empty()
            && text.len() <= MAX_REQUEST_ID_LEN
            && text.bytes().all(|byte| byte.is_ascii_graphic());
        fit.then(|| Self(Arc::from(text)))
    }

    /// A new id: a UUIDv7, so ids sort by the time they were made.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().hyphenated().to_string()))
    }

    /// The caller's id from `headers` when it is fit ([`parse`](Self::parse)), otherwise a
    /// new one.
    pub fn from_headers_or_generate(headers: &HeaderMap) -> Self {
        headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    /// The id of the request being served on this task (inside [`RequestIdLayer`]), for a
    /// client to pass downstream. Work spawned onto another task does not see it.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header value.
    ///
    /// # Panics
    /// Never: a request id is visible ASCII.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).expect("a request id is visible ASCII")
    }

    /// Puts [`REQUEST_ID_HEADER`] into `headers`, for a call downstream.
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(REQUEST_ID_HEADER, self.header_value());
    }

    /// Runs `future` with this id as [`current`](Self::current).
    pub(crate) async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request's id, put there by [`RequestIdLayer`]; behind no such layer, the caller's
/// (when fit) or a new one.
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| Self::from_headers_or_generate(&parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_visible_ascii_of_at_most_128_characters() {
        assert_eq!(
            RequestId::parse("abc-123_~!").map(|id| id.to_string()),
            Some("abc-123_~!".to_owned())
        );
        assert!(RequestId::parse(&"x".repeat(MAX_REQUEST_ID_LEN)).is_some());
        for unfit in [
            "",
            "has space",
            "tab\there",
            "new\nline",
            "é",
            &"x".repeat(MAX_REQUEST_ID_LEN + 1),
        ] {
            assert_eq!(RequestId::parse(unfit), None, "{unfit:?}");
        }
    }

    #[test]
    fn a_generated_id_is_a_uuid_v7() {
        let id = RequestId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(RequestId::generate(), id);
    }
}
