//! `GET /documents/{type}/{id}`, the version the index holds of one aggregate: it follows
//! the events (stale ones change nothing), it is scoped like `/search` (another
//! customer's document is answered exactly like a missing one), and a bad type or a
//! missing document is a problem saying what to do. Each check is a function over a
//! [`Service`], run here on tantivy and in `needs_servers` on OpenSearch.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use dovetail_contracts::claim::{ClaimFiled, ClaimStatus};
use dovetail_contracts::policy::{PolicyIssued, PolicyStatus, PolicyUpdated};
use serde_json::{Value, json};

use crate::support::{Service, claim_snapshot, policy_snapshot};

/// Publishes `policy.issued` (sequence 1) or `policy.updated` (any other) of policy `id`
/// of `customer` at `version`.
async fn publish_policy(service: &Service, id: &str, customer: &str, version: u64) {
    let policy = policy_snapshot(id, customer, "home", version, PolicyStatus::Active);
    let aggregate = ("policy", id);
    let topic = dovetail_contracts::policy::TOPIC;
    if version == 1 {
        let event = PolicyIssued { policy };
        service
            .publish(topic, "policy-service", aggregate, version, &event)
            .await;
    } else {
        let event = PolicyUpdated { policy };
        service
            .publish(topic, "policy-service", aggregate, version, &event)
            .await;
    }
}

/// `GET uri` as `authorization`: status, `ETag` (empty when absent) and body.
async fn version_of(
    service: &Service,
    uri: &str,
    authorization: &str,
) -> (StatusCode, String, Value) {
    let (status, headers, body) = service
        .send(Method::GET, uri, &[("authorization", authorization)])
        .await;
    let etag = headers
        .get("etag")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, etag, body)
}

/// Polls `uri` as staff until it answers 200 with `version`, for at most ten seconds,
/// as a gateway waiting to read its own write would.
async fn until_version(service: &Service, uri: &str, version: u64) -> Value {
    let started = Instant::now();
    loop {
        let (status, etag, body) = version_of(service, uri, service.tokens.staff()).await;
        if status == StatusCode::OK && body["version"] == json!(version) {
            assert_eq!(etag, format!("\"{version}\""), "{uri}: {body}");
            return body;
        }
        assert!(
            status == StatusCode::OK || status == StatusCode::NOT_FOUND,
            "{uri}: {status} {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{uri} never answered version {version}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The version is the sequence of the last event applied: 1, then 3; a late event at 2
/// changes nothing; the body names the aggregate (not the document id) and its type, and
/// the `ETag` is the version quoted. A claim answers under its own type only.
pub(crate) async fn the_version_follows_the_events(service: &Service) {
    let uri = "/documents/policy/pol-v";
    let (status, _, body) = version_of(service, uri, service.tokens.staff()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "before any event: {body}");

    publish_policy(service, "pol-v", "cust-v", 1).await;
    let body = until_version(service, uri, 1).await;
    assert_eq!(body, json!({"id": "pol-v", "type": "policy", "version": 1}));

    publish_policy(service, "pol-v", "cust-v", 3).await;
    let body = until_version(service, uri, 3).await;
    assert_eq!(body, json!({"id": "pol-v", "type": "policy", "version": 3}));

    // A late event of a lower sequence is stale: once it is handled, still 3.
    publish_policy(service, "pol-v", "cust-v", 2).await;
    service.until_handled(3).await;
    let (status, etag, body) = version_of(service, uri, service.tokens.staff()).await;
    assert_eq!((status, etag.as_str()), (StatusCode::OK, "\"3\""), "{body}");
    assert_eq!(body["version"], 3, "{body}");

    // A claim of the same id is another document; the policy is not a claim.
    let claim = claim_snapshot(
        "pol-v",
        "cust-v",
        "Hail on the roof",
        2,
        ClaimStatus::Submitted,
    );
    service
        .publish(
            dovetail_contracts::claim::TOPIC,
            "claim-service",
            ("claim", "pol-v"),
            2,
            &ClaimFiled { claim },
        )
        .await;
    let body = until_version(service, "/documents/claim/pol-v", 2).await;
    assert_eq!(body, json!({"id": "pol-v", "type": "claim", "version": 2}));
    let (_, _, body) = version_of(service, uri, service.tokens.staff()).await;
    assert_eq!(
        body["version"], 3,
        "the policy moved with the claim: {body}"
    );
}

/// A customer reads the version of their own document only: another customer's is a
/// 404 whose body is that of a document that does not exist, apart from the id; staff
/// read both; a token with neither role gets the 403 of `/search`; every answer is
/// private to the token.
pub(crate) async fn a_customer_reads_only_their_own_versions(service: &Service) {
    publish_policy(service, "pol-a", "cust-a", 1).await;
    publish_policy(service, "pol-b", "cust-b", 2).await;
    until_version(service, "/documents/policy/pol-a", 1).await;
    until_version(service, "/documents/policy/pol-b", 2).await;

    let a = service.customer("cust-a");
    let b = service.customer("cust-b");
    let (status, etag, body) = version_of(service, "/documents/policy/pol-a", &a).await;
    assert_eq!((status, etag.as_str()), (StatusCode::OK, "\"1\""), "{body}");
    assert_eq!(body["id"], "pol-a");

    // B asking for A's document, and B asking for one nobody has: the same answer.
    let (status, etag, foreign) = version_of(service, "/documents/policy/pol-a", &b).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{foreign}");
    assert_eq!(etag, "", "a 404 carries no version");
    let (status, _, missing) = version_of(service, "/documents/policy/pol-z", &b).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let foreign_text = foreign.to_string().replace("pol-a", "<id>");
    let missing_text = missing.to_string().replace("pol-z", "<id>");
    assert_eq!(
        foreign_text, missing_text,
        "another's document is told apart"
    );
    assert!(!foreign_text.contains("cust-a"), "{foreign_text}");
    // And the other way round.
    let (status, _, _) = version_of(service, "/documents/policy/pol-b", &a).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = version_of(service, "/documents/policy/pol-b", &b).await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::OK, json!(2))
    );

    // Identity headers widen nothing.
    let (status, _, body) = service
        .send(
            Method::GET,
            "/documents/policy/pol-a",
            &[
                ("authorization", &b),
                ("x-dovetail-scope", "staff"),
                ("x-dovetail-customer", "cust-a"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Staff read both.
    for (uri, version) in [
        ("/documents/policy/pol-a", 1),
        ("/documents/policy/pol-b", 2),
    ] {
        let (status, _, body) = version_of(service, uri, service.tokens.staff()).await;
        assert_eq!(
            (status, body["version"].clone()),
            (StatusCode::OK, json!(version))
        );
    }

    // Neither role: the 403 of /search, whether or not the document exists.
    let issuer = service.tokens.issuer();
    let mut no_role = issuer.claims(dovetail_search::SERVICE, "user-no-role", &[]);
    no_role["customer_id"] = json!("cust-a");
    let no_role = crate::support::bearer(&issuer.sign(&no_role));
    let (_, _, search_forbidden) = service
        .send(Method::GET, "/search", &[("authorization", &no_role)])
        .await;
    for uri in [
        "/documents/policy/pol-a",
        "/documents/policy/pol-z",
        "/documents/thing/pol-a",
    ] {
        let (status, headers, body) = service
            .send(Method::GET, uri, &[("authorization", &no_role)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}: {body}");
        assert_eq!(body, search_forbidden, "{uri}");
        assert!(headers.get("etag").is_none(), "{uri}");
    }
    // No token: 401, before anything is looked up.
    let (status, _, _) = service
        .send(Method::GET, "/documents/policy/pol-a", &[])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Private to the token, like /search.
    let (_, headers, _) = service
        .send(
            Method::GET,
            "/documents/policy/pol-a",
            &[("authorization", &a)],
        )
        .await;
    let vary = headers.get("vary").unwrap().to_str().unwrap();
    assert!(
        vary.to_ascii_lowercase().contains("authorization"),
        "{vary}"
    );
    let cache_control = headers.get("cache-control").unwrap().to_str().unwrap();
    assert_eq!(cache_control, "private, no-store");
}

/// A document the index does not hold is a 404 problem saying no event of it has been
/// indexed yet; an unknown type is a 400 naming `type` with the message of the types
/// there are, for staff and customers alike, and nothing is looked up under it.
pub(crate) async fn a_missing_document_or_an_unknown_type_is_a_problem(service: &Service) {
    publish_policy(service, "pol-m", "cust-m", 1).await;
    until_version(service, "/documents/policy/pol-m", 1).await;
    let customer = service.customer("cust-m");
    for authorization in [service.tokens.staff(), customer.as_str()] {
        for uri in [
            "/documents/policy/pol-none",
            // The policy under the other type, and ids close to it.
            "/documents/claim/pol-m",
            "/documents/policy/POL-M",
            "/documents/policy/pol-m%20",
            "/documents/policy/policy:pol-m",
        ] {
            let (status, headers, body) = service
                .send(Method::GET, uri, &[("authorization", authorization)])
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
            assert_eq!(
                headers.get("content-type").unwrap(),
                "application/problem+json",
                "{uri}"
            );
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.contains("no event of it has been indexed yet"),
                "{uri}: {detail}"
            );
        }
        for (uri, given) in [
            ("/documents/policies/pol-m", "policies"),
            ("/documents/Policy/pol-m", "Policy"),
            ("/documents/search/pol-m", "search"),
            ("/documents/%20/pol-m", " "),
        ] {
            let (status, _, body) = service
                .send(Method::GET, uri, &[("authorization", authorization)])
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            let message = dovetail_search::document::DocumentType::parse(given).unwrap_err();
            assert!(
                body["detail"].as_str().unwrap().contains(&message),
                "{uri}: {body}"
            );
            assert_eq!(body["errors"][0]["field"], "type", "{uri}: {body}");
            assert_eq!(body["errors"][0]["message"], message, "{uri}: {body}");
        }
    }
    // The route has no other shape.
    for uri in [
        "/documents/policy",
        "/documents",
        "/documents/policy/pol-m/extra",
    ] {
        let (status, _, body) = version_of(service, uri, service.tokens.staff()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    let (status, _, body) = service
        .send(
            Method::POST,
            "/documents/policy/pol-m",
            &[("authorization", service.tokens.staff())],
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_follows_the_events_on_tantivy() {
    let service = Service::start().await;
    the_version_follows_the_events(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reads_only_their_own_versions_on_tantivy() {
    let service = Service::start().await;
    a_customer_reads_only_their_own_versions(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_document_or_an_unknown_type_is_a_problem_on_tantivy() {
    let service = Service::start().await;
    a_missing_document_or_an_unknown_type_is_a_problem(&service).await;
    service.stop().await;
}
