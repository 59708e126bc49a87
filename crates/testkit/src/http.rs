//! Assertions on HTTP answers of the services under test.

use serde_json::Value;

/// Asserts `response` is an RFC 9457 problem (`application/problem+json`) with `status`,
/// whose `detail` contains `needle`, and returns its body for further checks.
///
/// # Panics
/// When any of that does not hold, with what was found.
pub async fn assert_problem(response: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(response.status(), status, "the answer's status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .map(reqwest::header::HeaderValue::as_bytes),
        Some(&b"application/problem+json"[..]),
        "a problem must be application/problem+json"
    );
    let body: Value = response.json().await.expect("a problem's body is JSON");
    assert_eq!(body["status"], status, "the problem's status field: {body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(needle),
        "detail {detail:?} should contain {needle:?}"
    );
    body
}

/// Asserts `response` refuses a bearer token that does not verify: a 401 problem whose
/// `WWW-Authenticate` challenge names `error="invalid_token"` (RFC 6750 §3.1) and whose
/// detail contains `needle`; returns the problem's body.
///
/// # Panics
/// When any of that does not hold, with what was found.
pub async fn assert_invalid_token(response: reqwest::Response, needle: &str) -> Value {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "a refused token is answered with a Bearer invalid_token challenge, not {challenge:?}"
    );
    assert_problem(response, 401, needle).await
}
