//! The proxied routes: `/auth/...`, `/policies...`, `/claims...` and `/search` passed to
//! their service through its [`Downstream`] (deadline, breaker, retries of idempotent
//! calls only), and a write's answer given a consistency token.
//!
//! Only the headers a service reads go down (an allow-list: no cookie, no header a
//! client could use to pass for someone else); the gateway sets `X-Forwarded-For` to the
//! peer it saw, replacing whatever the client sent, so the auth service (which trusts it
//! from the gateway's address only) throttles by the real client. The service verifies
//! the bearer token itself: the gateway trusts no identity on these routes, and the
//! answer, problems included, comes back as the service gave it.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use dovetail_bff::{
    CONSISTENCY_HEADER, Call, CallContext, CallError, ConsistencyToken, Downstream,
    IDEMPOTENCY_KEY_HEADER, RouteBudget,
};
use dovetail_http::Problem;

use crate::Gateway;

/// The largest request body the gateway passes on: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The request headers passed to a service (besides `Authorization`, `traceparent`,
/// `x-request-id` and the deadline, which every downstream call carries).
const PASSED_ON: [&str; 6] = [
    "accept",
    "accept-language",
    "content-type",
    "if-match",
    "if-none-match",
    IDEMPOTENCY_KEY_HEADER,
];

/// The answer headers not passed back: hop-by-hop ones, and the length (set again).
const NOT_PASSED_BACK: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The service behind a route prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Auth,
    Policy,
    Claim,
    Search,
}

/// The proxied routes.
pub(crate) fn router(gateway: Gateway) -> Router {
    let budget = RouteBudget(gateway.tuning.proxy_budget());
    Router::new()
        .route("/auth/{*rest}", any(to_auth))
        .route("/policies", any(to_policy))
        .route("/policies/{*rest}", any(to_policy))
        .route("/claims", any(to_claim))
        .route("/claims/{*rest}", any(to_claim))
        .route("/search", any(to_search))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::Extension(budget))
        .with_state(gateway)
}

async fn to_auth(State(gateway): State<Gateway>, cx: CallContext, request: Request) -> Response {
    forward(&gateway, Target::Auth, cx, request).await
}

async fn to_policy(State(gateway): State<Gateway>, cx: CallContext, request: Request) -> Response {
    forward(&gateway, Target::Policy, cx, request).await
}

async fn to_claim(State(gateway): State<Gateway>, cx: CallContext, request: Request) -> Response {
    forward(&gateway, Target::Claim, cx, request).await
}

async fn to_search(State(gateway): State<Gateway>, cx: CallContext, request: Request) -> Response {
    forward(&gateway, Target::Search, cx, request).await
}

async fn forward(gateway: &Gateway, target: Target, cx: CallContext, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
        )
        .detail(format!(
            "the gateway passes bodies of at most {MAX_BODY_BYTES} bytes; send a smaller one"
        ))
        .into_response();
    };
    if let Some(problem) = dot_segment(parts.uri.path()) {
        return problem.into_response();
    }
    let path_and_query = parts.uri.path_and_query().map_or("/", |path| path.as_str());
    let path = match target {
        Target::Auth => path_and_query
            .strip_prefix("/auth")
            .unwrap_or(path_and_query),
        _ => path_and_query,
    };
    let downstream = gateway.downstream(target_name(target));
    let mut call = Call::new(
        parts.method.clone(),
        path,
        (!body.is_empty()).then_some(body),
    );
    for name in PASSED_ON {
        if let Some(value) = parts.headers.get(name) {
            call = call.header(HeaderName::from_static(name), value.clone());
        }
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>()
        && let Ok(value) = HeaderValue::from_str(&peer.ip().to_string())
    {
        call = call.header(HeaderName::from_static("x-forwarded-for"), value);
    }
    match downstream.forward(&cx, call).await {
        Ok(answer) => {
            let token = written(
                target,
                &parts.method,
                &answer.status,
                &answer.headers,
                &answer.body,
            )
            .map(|written| gateway.key.sign(&written));
            let mut response = (answer.status, answer.body).into_response();
            let headers = response.headers_mut();
            for (name, value) in &answer.headers {
                if !NOT_PASSED_BACK.contains(&name.as_str()) {
                    headers.append(name, value.clone());
                }
            }
            if let Some(token) = token.and_then(|token| HeaderValue::from_str(&token).ok()) {
                headers.insert(CONSISTENCY_HEADER, token);
            }
            response
        }
        Err(error) => unanswered(downstream, &error).into_response(),
    }
}

/// A 400 for a path with a `.` or `..` segment (as sent or percent-encoded): the URL
/// the service is called at would resolve it, and `/claims/../replica/...` would reach a
/// route the gateway does not serve.
fn dot_segment(path: &str) -> Option<Problem> {
    let dotted = path.split('/').any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    dotted.then(|| {
        Problem::bad_request(format!(
            "the path {path:?} has a `.` or `..` segment; send the resource's own path, \
             such as /claims/<claim_id>"
        ))
    })
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Auth => "auth",
        Target::Policy => "policy",
        Target::Claim => "claim",
        Target::Search => "search",
    }
}

/// What a successful write to the policy or claim service reached: the aggregate in
/// the answer's body (`policy_id` or `claim_id`) at the version of its `ETag`.
fn written(
    target: Target,
    method: &Method,
    status: &StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<ConsistencyToken> {
    let (kind, id_field) = match target {
        Target::Policy => ("policy", "policy_id"),
        Target::Claim => ("claim", "claim_id"),
        Target::Auth | Target::Search => return None,
    };
    if !status.is_success() || !matches!(*method, Method::POST | Method::PATCH | Method::PUT) {
        return None;
    }
    let version = headers
        .get(header::ETAG)?
        .to_str()
        .ok()?
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()?;
    let snapshot: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = snapshot.get(id_field)?.as_str()?;
    Some(ConsistencyToken {
        aggregate: format!("{kind}/{id}"),
        version,
    })
}

/// The problem for a call that got no answer.
pub(crate) fn unanswered(downstream: &Downstream, error: &CallError) -> Problem {
    let service = downstream.name();
    match error {
        CallError::Timeout => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline-exceeded",
            "Deadline exceeded",
        )
        .detail(format!(
            "the {service} service did not answer before the request's deadline; retry, or \
             send a longer dovetail-deadline-ms"
        )),
        CallError::CircuitOpen => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit-open",
            "Service unavailable",
        )
        .detail(format!(
            "the {service} service failed repeatedly and is not being called for a few \
             seconds; retry after the time Retry-After gives"
        ))
        .retry_after(5),
        _ => Problem::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway")
            .detail(format!(
                "the {service} service could not be reached ({error}); retry later"
            ))
            .retry_after(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused_as_sent_or_encoded() {
        for path in [
            "/claims/../replica/policies/p",
            "/claims/%2e%2e/replica",
            "/claims/%2E./x",
            "/policies/./p",
            "/auth/.%2e/admin",
        ] {
            let problem = dot_segment(path).expect(path);
            assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
        }
        for path in [
            "/claims/clm-1",
            "/policies/pol.1/issue",
            "/auth/.well-known/jwks.json",
        ] {
            assert!(dot_segment(path).is_none(), "{path}");
        }
    }

    #[test]
    fn a_write_names_its_aggregate_and_the_version_of_its_etag() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("\"3\""));
        let body = Bytes::from_static(br#"{"policy_id":"pol-1","version":3}"#);
        let token = written(
            Target::Policy,
            &Method::POST,
            &StatusCode::OK,
            &headers,
            &body,
        );
        assert_eq!(
            token,
            Some(ConsistencyToken {
                aggregate: "policy/pol-1".into(),
                version: 3
            })
        );
        // Reads, failures, other services and answers without an ETag give none.
        assert!(
            written(
                Target::Policy,
                &Method::GET,
                &StatusCode::OK,
                &headers,
                &body
            )
            .is_none()
        );
        assert!(
            written(
                Target::Policy,
                &Method::POST,
                &StatusCode::CONFLICT,
                &headers,
                &body
            )
            .is_none()
        );
        assert!(
            written(
                Target::Search,
                &Method::POST,
                &StatusCode::OK,
                &headers,
                &body
            )
            .is_none()
        );
        assert!(
            written(
                Target::Claim,
                &Method::POST,
                &StatusCode::OK,
                &headers,
                &body
            )
            .is_none(),
            "a claim answer names claim_id"
        );
        assert!(
            written(
                Target::Policy,
                &Method::POST,
                &StatusCode::OK,
                &HeaderMap::new(),
                &body
            )
            .is_none()
        );
    }
}
