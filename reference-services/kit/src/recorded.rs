//! [`RecordedResponse`]: the answer to a write, kept with its `Idempotency-Key` so that a
//! retried request gets the same answer without a second effect.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// What a write answered: status, the resource's version (its `ETag`) and location, and
/// the JSON body. Stored in the same transaction as the write, under the request's
/// `Idempotency-Key`; answered again (with `Idempotent-Replayed: true`) to a retry.
///
/// ```
/// use dovetail_service_kit::RecordedResponse;
///
/// let recorded = RecordedResponse::created("/policies/pol-1", 1, serde_json::json!({"id": "pol-1"}));
/// let bytes = recorded.to_bytes();
/// assert_eq!(RecordedResponse::from_bytes(&bytes).unwrap(), recorded);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResponse {
    /// The HTTP status.
    pub status: u16,
    /// The resource's version after the write.
    pub version: Option<u64>,
    /// The resource's path, for `Location`.
    pub location: Option<String>,
    /// The body.
    pub body: serde_json::Value,
}

impl RecordedResponse {
    /// A `201 Created` of the resource at `location`, version `version`.
    pub fn created(location: impl Into<String>, version: u64, body: serde_json::Value) -> Self {
        Self {
            status: StatusCode::CREATED.as_u16(),
            version: Some(version),
            location: Some(location.into()),
            body,
        }
    }

    /// The bytes to store.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes.
    ///
    /// # Errors
    /// When the bytes are not a recorded response (a record from another program).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    fn into_response_with(self, replayed: bool) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = (status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(version) = self.version {
            headers.insert(header::ETAG, crate::etag(version));
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(header::LOCATION, location);
        }
        if replayed {
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
        }
        response
    }

    /// The response to a retry: the recorded one, marked `Idempotent-Replayed: true`.
    pub fn replayed(self) -> Response {
        self.into_response_with(true)
    }
}

impl IntoResponse for RecordedResponse {
    fn into_response(self) -> Response {
        self.into_response_with(false)
    }
}
