//! Extractors whose rejections are [`Problem`]s that say what to fix: JSON bodies, query
//! strings, `If-Match` and `Idempotency-Key`.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::Problem;

/// A JSON body, read strictly: the `Content-Type` must be JSON, the text well-formed and
/// the value of the right shape (declare `#[serde(deny_unknown_fields)]` on the type to
/// refuse unknown fields). A rejection is a [`Problem`] naming the line and column of a
/// syntax error (400) or the path of the field that does not fit (422).
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !(essence == "application/json" || essence.ends_with("+json")) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "The body must be JSON",
            )
            .detail(format!(
                "send the body as JSON with `Content-Type: application/json` (got {:?})",
                if content_type.is_empty() {
                    "no Content-Type"
                } else {
                    content_type
                }
            )));
        }
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                Problem::new(
                    rejection.status(),
                    "unreadable-body",
                    "The body cannot be read",
                )
                .detail(rejection.body_text())
            })?;
        parse_json(&body).map(ApiJson)
    }
}

/// Reads `body` as a `T`, with the problems [`ApiJson`] answers.
///
/// # Errors
/// A 400 [`Problem`] for an empty or malformed body, a 422 one for a value of the wrong
/// shape, naming the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "the body is empty; send a JSON object (see the OpenAPI document at /openapi.json)",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        json_problem(&path, &error.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|error| json_problem(".", &error))?;
    Ok(value)
}

fn json_problem(path: &str, error: &serde_json::Error) -> Problem {
    match error.classify() {
        serde_json::error::Category::Data => {
            let field = if path == "." { "(the body)" } else { path };
            let message = strip_position(&error.to_string());
            Problem::invalid(format!("`{field}`: {message}")).field(field, message)
        }
        _ => Problem::bad_request(format!(
            "the body is not well-formed JSON: {error}; check quotes, commas and braces"
        )),
    }
}

/// serde_json ends data errors with " at line 1 column 42", which means little to a
/// caller once the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// A query string read into `T`; a rejection is a 400 [`Problem`] naming the parameter.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                Problem::bad_request(format!(
                    "{}; see the parameters in the OpenAPI document at /openapi.json",
                    rejection.body_text()
                ))
            })
    }
}

/// The version a write expects, from `If-Match: "<version>"` (the `ETag` of the last
/// read). Missing: 428; not a version ETag: 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfMatch(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Err(Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "if-match-required",
                "If-Match is required",
            )
            .detail(
                "send `If-Match` with the ETag of your last read of this resource (GET it \
                 first), so that a change made in between is not overwritten",
            ));
        };
        let text = value.to_str().unwrap_or("").trim();
        let version = text
            .strip_prefix("W/")
            .unwrap_or(text)
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
            .and_then(|inner| inner.parse::<u64>().ok());
        version.map(IfMatch).ok_or_else(|| {
            Problem::bad_request(format!(
                "If-Match {text:?} is not an ETag this service gave out; send the ETag of \
                 your last read, such as \"3\" (with the quotes)"
            ))
        })
    }
}

/// The `ETag` of a resource at `version`: `"<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// The optional `Idempotency-Key` header of a POST: 1 to 255 visible ASCII characters.
/// A repeated request with the same key gets the first one's answer; the same key with
/// another body is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKeyHeader(pub Option<String>);

impl IdempotencyKeyHeader {
    /// The key, or a 400 [`Problem`] saying it is required here.
    ///
    /// # Errors
    /// When the request had no key.
    pub fn required(self) -> Result<String, Problem> {
        self.0.ok_or_else(|| {
            Problem::bad_request(
                "this request needs an `Idempotency-Key` header (a UUID you generate once per \
                 intended request and resend on retries), so a retry cannot file it twice",
            )
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKeyHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value.to_str().unwrap_or("");
        let valid = (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(Some(key.to_owned())))
        } else {
            Err(Problem::bad_request(
                "`Idempotency-Key` must be 1 to 255 visible ASCII characters, such as a UUID",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_json;
    use axum::http::StatusCode;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn names_the_field_of_a_wrong_type() {
        let problem = parse_json::<Body>(br#"{"name":"a","count":"x"}"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let detail = problem.detail_text().unwrap();
        assert!(
            detail.starts_with("`count`: invalid type: string"),
            "{detail}"
        );
        assert!(!detail.contains("line"), "{detail}");
    }

    #[test]
    fn names_an_unknown_field() {
        let problem = parse_json::<Body>(br#"{"name":"a","count":1,"colour":2}"#).unwrap_err();
        assert_eq!(problem.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            problem
                .detail_text()
                .unwrap()
                .contains("unknown field `colour`")
        );
    }

    #[test]
    fn malformed_and_empty_bodies_are_bad_requests() {
        for body in [
            &b"{\"name\":"[..],
            b"",
            b"  ",
            br#"{"name":"a","count":1} trailing"#,
        ] {
            let problem = parse_json::<Body>(body).unwrap_err();
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST, "{problem}");
        }
        let problem = parse_json::<Body>(b"{\"name\":").unwrap_err();
        assert!(
            problem.detail_text().unwrap().contains("line 1 column 8"),
            "{problem}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        let problem = parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err();
        assert!(
            problem
                .detail_text()
                .unwrap()
                .contains("missing field `count`"),
            "{problem}"
        );
    }
}
