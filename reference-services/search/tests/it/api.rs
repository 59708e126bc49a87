//! The search service as a whole on embedded backends (tantivy in a temporary directory,
//! the embedded bus): events published out of order and twice become the newest
//! documents, a redelivered event stops at the idempotent consumer and a reused event id
//! //! with another payload is dead-lettered, searches stay in the scope of the caller's
//! token, every bad parameter is a problem, and the OpenAPI document and operations
//! endpoints answer. Every request carries a bearer token of the test issuer; who may
//! call what is `identity.rs`.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use dovetail_contracts::claim::{ClaimApproved, ClaimFiled, ClaimReviewStarted, ClaimStatus};
use dovetail_contracts::policy::{PolicyCancelled, PolicyDrafted, PolicyIssued, PolicyStatus};
use dovetail_events::envelope::Envelope;
use dovetail_events::publish::Publisher;
use serde_json::Value;

use crate::support::{Service, claim_snapshot, policy_snapshot};

fn version_of(items: &[Value], id: &str) -> Option<u64> {
    items
        .iter()
        .find(|item| item["id"] == id)
        .and_then(|item| item["version"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_of_order_and_twice_end_as_the_newest_documents_with_their_lineage() {
    let service = Service::start().await;
    let policy = |version, status| policy_snapshot("pol-1", "cust-1", "home", version, status);
    let publish_policy = |version: u64, status| {
        let snapshot = policy(version, status);
        let service = &service;
        async move {
            let aggregate = ("policy", "pol-1");
            match status {
                PolicyStatus::Draft => {
                    service
                        .publish(
                            "policy-events",
                            "policy-service",
                            aggregate,
                            version,
                            &PolicyDrafted { policy: snapshot },
                        )
                        .await
                }
                PolicyStatus::Cancelled => {
                    service
                        .publish(
                            "policy-events",
                            "policy-service",
                            aggregate,
                            version,
                            &PolicyCancelled {
                                policy: snapshot,
                                reason: None,
                            },
                        )
                        .await
                }
                _ => {
                    service
                        .publish(
                            "policy-events",
                            "policy-service",
                            aggregate,
                            version,
                            &PolicyIssued { policy: snapshot },
                        )
                        .await
                }
            }
        }
    };
    // The cancellation first, then the older events, then the cancellation again.
    let cancelled = publish_policy(3, PolicyStatus::Cancelled).await;
    publish_policy(1, PolicyStatus::Draft).await;
    publish_policy(2, PolicyStatus::Active).await;
    service
        .bus
        .publisher("policy-events")
        .publish(&cancelled)
        .await
        .unwrap();

    let claim = |version, status| {
        claim_snapshot(
            "clm-1",
            "cust-1",
            "Water damage in the kitchen",
            version,
            status,
        )
    };
    let aggregate = ("claim", "clm-1");
    let approved = service
        .publish(
            "claim-events",
            "claim-service",
            aggregate,
            3,
            &ClaimApproved {
                claim: claim(3, ClaimStatus::Approved),
            },
        )
        .await;
    service
        .publish(
            "claim-events",
            "claim-service",
            aggregate,
            1,
            &ClaimFiled {
                claim: claim(1, ClaimStatus::Submitted),
            },
        )
        .await;
    service
        .publish(
            "claim-events",
            "claim-service",
            aggregate,
            2,
            &ClaimReviewStarted {
                claim: claim(2, ClaimStatus::UnderReview),
            },
        )
        .await;

    // Version 3 came first: wait for it, then for every event to be handled (the six
    // processed, the stale ones too; the cancellation's second publication, unless the
    // bus merged it with the first one still queued, answered as a duplicate), then
    // check nothing moved back.
    let items = service
        .until("/search?limit=10", |items| {
            version_of(items, "policy:pol-1") == Some(3)
                && version_of(items, "claim:clm-1") == Some(3)
        })
        .await;
    service.until_handled(6).await;
    let items_later = service.until("/search?limit=10", |_| true).await;
    assert_eq!(items, items_later, "a late event moved a document back");
    let policy = items
        .iter()
        .find(|item| item["id"] == "policy:pol-1")
        .unwrap();
    assert_eq!(policy["status"], "cancelled");
    assert_eq!(policy["coverage_limit"], "10000.00");
    assert_eq!(policy["effective_date"], "2026-01-01");
    assert_eq!(policy["lineage"]["event_id"], cancelled.id().to_string());
    assert_eq!(policy["lineage"]["source"], "policy-service");
    assert_eq!(policy["lineage"]["event_type"], "policy.cancelled");
    let claim = items
        .iter()
        .find(|item| item["id"] == "claim:clm-1")
        .unwrap();
    assert_eq!(claim["status"], "approved");
    assert_eq!(claim["amount"], "1234.56");
    assert_eq!(claim["lineage"]["event_id"], approved.id().to_string());

    // A cancelled policy is still found, as cancelled.
    let customer = service.customer("cust-1");
    let customer = [("authorization", customer.as_str())];
    let (_, _, body) = service
        .get("/search?q=home&status=cancelled", &customer)
        .await;
    assert_eq!(body["items"][0]["id"], "policy:pol-1");
    let (_, _, body) = service
        .get("/search?q=water%20kitchen&type=claim", &customer)
        .await;
    assert_eq!(body["items"][0]["id"], "claim:clm-1");
    let highlight = body["items"][0]["highlights"][0].as_str().unwrap();
    assert!(highlight.contains("<em>kitchen</em>"), "{highlight}");

    let (status, _, metrics) = service.get("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("search_events_total"), "{metrics}");
    assert!(metrics.contains("search_freshness_seconds"), "{metrics}");
    service.stop().await;
}

/// Waits until `done` holds of the idempotency layer's stats, for at most ten seconds.
async fn until_stats(
    service: &Service,
    what: &str,
    done: impl Fn(&dovetail_events::idempotency::IdempotencyStats) -> bool,
) {
    let started = Instant::now();
    while !done(service.idempotency.stats()) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} never happened: {:?}",
            service.idempotency.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_a_duplicate_and_a_reused_event_id_is_dead_lettered() {
    let service = Service::start().await;
    assert!(
        service.idempotency_path.exists(),
        "the idempotency records were not created at {}",
        service.idempotency_path.display()
    );
    let aggregate = ("claim", "clm-7");
    let filed = service
        .publish(
            "claim-events",
            "claim-service",
            aggregate,
            1,
            &ClaimFiled {
                claim: claim_snapshot(
                    "clm-7",
                    "cust-7",
                    "Broken window",
                    1,
                    ClaimStatus::Submitted,
                ),
            },
        )
        .await;
    let items = service
        .until("/search?type=claim&customer_id=cust-7", |items| {
            version_of(items, "claim:clm-7") == Some(1)
        })
        .await;
    until_stats(&service, "the first delivery", |stats| {
        stats.processed() == 1
    })
    .await;

    // The same event again, as a relay republishes it after a crash: answered as a
    // duplicate, the handler (and so the index) never sees it.
    service
        .bus
        .publisher("claim-events")
        .publish(&filed)
        .await
        .unwrap();
    until_stats(&service, "the duplicate", |stats| {
        stats.duplicates_from_cache() + stats.duplicates_from_store() == 1
    })
    .await;
    assert_eq!(service.idempotency.stats().processed(), 1);
    // The bus keeps one message per id while it is held: wait until the duplicate is
    // settled, or the next publish of that id would be dropped as a copy of it.
    let started = Instant::now();
    while service
        .bus
        .backlog("search-service-claim-events")
        .await
        .unwrap()
        .pending
        > 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the duplicate was never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same event id with another payload: rejected to the dead letters at once.
    let mut parts = filed.clone().into_parts();
    parts.payload = serde_json::to_value(ClaimFiled {
        claim: claim_snapshot(
            "clm-7",
            "cust-7",
            "Stolen bicycle",
            1,
            ClaimStatus::Submitted,
        ),
    })
    .unwrap();
    let forged = Envelope::from_parts(parts).unwrap();
    assert_eq!(forged.id(), filed.id());
    service
        .bus
        .publisher("claim-events")
        .publish(&forged)
        .await
        .unwrap();
    until_stats(&service, "the rejection", |stats| stats.mismatches() == 1).await;
    let started = Instant::now();
    let dead = loop {
        let dead = service
            .bus
            .dead_letters("search-service-claim-events")
            .await
            .unwrap();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, filed.id().to_string());
    assert_eq!(dead[0].receive_count, 1, "{dead:?}");
    assert!(dead[0].reason.contains("different payload"), "{dead:?}");
    assert_eq!(service.idempotency.stats().processed(), 1);

    // The index still holds the first event's document.
    let later = service
        .until("/search?type=claim&customer_id=cust-7", |_| true)
        .await;
    assert_eq!(later, items);
    assert_eq!(later[0]["description"], "Broken window");
    assert_eq!(later[0]["lineage"]["event_id"], filed.id().to_string());

    let (_, _, metrics) = service.get("/metrics", &[]).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("search_consumer_duplicates_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("search_consumer_key_reused_total"),
        "{metrics}"
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_sees_only_their_documents_and_pages_through_them() {
    let service = Service::start().await;
    for n in 0..7u64 {
        let customer = if n < 5 { "alice" } else { "bob" };
        let id = format!("pol-{n}");
        let snapshot = policy_snapshot(&id, customer, "home", 1, PolicyStatus::Active);
        service
            .publish(
                "policy-events",
                "policy-service",
                ("policy", &id),
                1,
                &PolicyIssued { policy: snapshot },
            )
            .await;
    }
    service
        .until("/search?limit=100", |items| items.len() == 7)
        .await;

    let alice = service.customer("alice");
    let alice = [("authorization", alice.as_str())];
    let mut uri = "/search?limit=2&sort=date".to_owned();
    let mut seen = Vec::new();
    loop {
        let (status, _, body) = service.get(&uri, &alice).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["customer_id"], "alice");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/search?limit=2&sort=date&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "policy:pol-0",
            "policy:pol-1",
            "policy:pol-2",
            "policy:pol-3",
            "policy:pol-4"
        ]
    );

    let (status, content_type, body) = service.get("/search?customer_id=bob", &alice).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(content_type, "application/problem+json");
    let (status, _, body) = service
        .get("/search?customer_id=bob", &service.as_staff())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    service.stop().await;
}

#[tokio::test]
async fn every_bad_parameter_or_token_is_a_problem_that_names_it() {
    let service = Service::start().await;
    let staff = service.as_staff();
    // (request, headers, status, the parameter named)
    type Case<'a> = (
        &'a str,
        &'a [(&'a str, &'a str)],
        StatusCode,
        Option<&'a str>,
    );
    let cases: &[Case<'_>] = &[
        ("/search", &[], StatusCode::UNAUTHORIZED, None),
        (
            "/search",
            &[("authorization", "Basic dXNlcjpwYXNz")],
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "/search",
            &[("authorization", "Bearer not.a.token")],
            StatusCode::UNAUTHORIZED,
            None,
        ),
        (
            "/search?type=invoice",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("type"),
        ),
        (
            "/search?type=claim&status=active",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "/search?status=lost",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "/search?date_from=2026-13-01",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_from"),
        ),
        (
            "/search?date_to=yesterday",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_to"),
        ),
        (
            "/search?date_from=2026-02-01&date_to=2026-01-01",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_to"),
        ),
        (
            "/search?sort=price",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("sort"),
        ),
        (
            "/search?limit=0",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "/search?limit=101",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "/search?limit=ten",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        (
            "/search?q=%20%21%21",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("q"),
        ),
        (
            "/search?customer_id=",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("customer_id"),
        ),
        (
            "/search?cursor=bm90LWpzb24",
            &staff,
            StatusCode::BAD_REQUEST,
            None,
        ),
        // A well-formed token the index did not give out.
        (
            "/search?cursor=eyJhZnRlciI6Im5vcGUifQ",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("cursor"),
        ),
        ("/search?colour=red", &staff, StatusCode::BAD_REQUEST, None),
        ("/nowhere", &staff, StatusCode::NOT_FOUND, None),
        // Years OpenSearch's yyyy-MM-dd cannot take: a sign, five digits, the year 0.
        (
            "/search?date_from=-0001-01-01",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_from"),
        ),
        (
            "/search?date_from=%2B2026-01-01",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_from"),
        ),
        (
            "/search?date_to=10000-01-01",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_to"),
        ),
        (
            "/search?date_from=0000-12-31",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("date_from"),
        ),
        (
            "/search?customer_id=%20%20",
            &staff,
            StatusCode::BAD_REQUEST,
            Some("customer_id"),
        ),
    ];
    for (uri, headers, status, field) in cases {
        let (got, content_type, body) = service.get(uri, headers).await;
        assert_eq!(got, *status, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty()),
            "{uri}: {body}"
        );
        if let Some(field) = field {
            assert_eq!(body["errors"][0]["field"], *field, "{uri}: {body}");
        }
    }
    let long = format!("/search?q={}", "a".repeat(201));
    assert_eq!(service.get(&long, &staff).await.0, StatusCode::BAD_REQUEST);
    // A customer id is counted in characters, as OpenAPI's maxLength counts: 128 `é`
    // (256 bytes) fit, 129 do not.
    let fits = format!("/search?customer_id={}", "%C3%A9".repeat(128));
    let (status, _, body) = service.get(&fits, &staff).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let too_long = format!("/search?customer_id={}", "%C3%A9".repeat(129));
    let (status, _, body) = service.get(&too_long, &staff).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "customer_id", "{body}");
    service.stop().await;
}

/// Publishes policy `id` of `customer`, version 1, active.
async fn issue(service: &Service, id: &str, customer: &str) {
    let snapshot = policy_snapshot(id, customer, "home", 1, PolicyStatus::Active);
    service
        .publish(
            "policy-events",
            "policy-service",
            ("policy", id),
            1,
            &PolicyIssued { policy: snapshot },
        )
        .await;
}

fn ids_of(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_only_continues_the_search_it_came_from() {
    let service = Service::start().await;
    for n in 0..5 {
        issue(&service, &format!("pol-{n}"), "alice").await;
    }
    issue(&service, "pol-bob", "bob").await;
    service
        .until("/search?limit=100", |items| items.len() == 6)
        .await;
    let alice = service.customer("alice");
    let alice = [("authorization", alice.as_str())];
    let bob = service.customer("bob");
    let bob = [("authorization", bob.as_str())];
    let staff = service.as_staff();
    let (status, _, first) = service.get("/search?sort=relevance&limit=2", &alice).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();

    // The same cursor under another order, other words, filters or scope: a 400 naming it.
    for (uri, headers) in [
        (
            format!("/search?sort=-date&limit=2&cursor={cursor}"),
            &alice,
        ),
        (format!("/search?sort=date&limit=2&cursor={cursor}"), &alice),
        (format!("/search?limit=2&cursor={cursor}"), &alice),
        (
            format!("/search?sort=relevance&q=home&limit=2&cursor={cursor}"),
            &alice,
        ),
        (
            format!("/search?sort=relevance&type=policy&limit=2&cursor={cursor}"),
            &alice,
        ),
        (
            format!("/search?sort=relevance&status=active&limit=2&cursor={cursor}"),
            &alice,
        ),
        (
            format!("/search?sort=relevance&date_from=2026-01-01&limit=2&cursor={cursor}"),
            &alice,
        ),
        (
            format!("/search?sort=relevance&customer_id=alice&limit=2&cursor={cursor}"),
            &alice,
        ),
        (
            format!("/search?sort=relevance&limit=2&cursor={cursor}"),
            &staff,
        ),
        (
            format!("/search?sort=relevance&limit=2&cursor={cursor}"),
            &bob,
        ),
    ] {
        let (status, content_type, body) = service.get(&uri, headers).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(content_type, "application/problem+json", "{uri}");
        assert_eq!(body["errors"][0]["field"], "cursor", "{uri}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("another search"),
            "{uri}: {body}"
        );
    }

    // Unchanged, it is the next page; `limit` may change from page to page.
    let mut seen = ids_of(&first);
    let mut uri = format!("/search?sort=relevance&limit=2&cursor={cursor}");
    loop {
        let (status, _, page) = service.get(&uri, &alice).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {page}");
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => uri = format!("/search?sort=relevance&limit=3&cursor={next}"),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "policy:pol-0",
            "policy:pol-1",
            "policy:pol-2",
            "policy:pol-3",
            "policy:pol-4"
        ]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_q_lists_a_padded_customer_id_filters_and_scoped_answers_are_private() {
    let service = Service::start().await;
    issue(&service, "pol-a", "alice").await;
    issue(&service, "pol-b", "bob").await;
    service
        .until("/search?limit=100", |items| items.len() == 2)
        .await;
    let staff = service.as_staff();
    let alice = service.customer("alice");
    let alice = [("authorization", alice.as_str())];

    // `q=` as an HTML form sends it: no text query, the same list as without `q`.
    let (status, _, listed) = service.get("/search", &staff).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    for uri in ["/search?q=", "/search?q=%20%20"] {
        let (status, _, body) = service.get(uri, &staff).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!(body, listed, "{uri}");
    }

    // `customer_id` is trimmed, also when a customer names themselves.
    let (status, _, body) = service.get("/search?customer_id=%20bob%20", &staff).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids_of(&body), ["policy:pol-b"]);
    let (status, _, body) = service.get("/search?customer_id=alice%20", &alice).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids_of(&body), ["policy:pol-a"]);

    // Answers that depend on the bearer token say so, and are not for shared caches:
    // results, problems and the admin routes alike.
    for (method, uri, headers, expected) in [
        (Method::GET, "/search", &staff[..], StatusCode::OK),
        (Method::GET, "/search", &alice[..], StatusCode::OK),
        (
            Method::GET,
            "/search?limit=0",
            &staff[..],
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/search", &[][..], StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            "/search?customer_id=bob",
            &alice[..],
            StatusCode::FORBIDDEN,
        ),
        (
            Method::POST,
            "/search",
            &staff[..],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/admin/rebuilds", &staff[..], StatusCode::OK),
        (
            Method::GET,
            "/admin/rebuilds",
            &alice[..],
            StatusCode::FORBIDDEN,
        ),
        (
            Method::GET,
            "/admin/rebuilds/nope",
            &staff[..],
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, headers, body) = service.send(method.clone(), uri, headers).await;
        assert_eq!(status, expected, "{method} {uri}: {body}");
        let vary: Vec<&str> = headers
            .get_all("vary")
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        let vary = vary.join(", ").to_ascii_lowercase();
        assert!(
            vary.contains("authorization") && !vary.contains("x-dovetail"),
            "{method} {uri}: Vary: {vary}"
        );
        let cache_control = headers
            .get("cache-control")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        assert!(
            cache_control.contains("private") && cache_control.contains("no-store"),
            "{method} {uri}: Cache-Control: {cache_control}"
        );
    }
    service.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_the_operations_endpoints_answer() {
    let service = Service::start().await;
    let (status, _, openapi) = service.get("/openapi.json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let mut documented: Vec<&str> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    assert_eq!(
        documented,
        [
            "/admin/rebuilds",
            "/admin/rebuilds/{id}",
            "/documents/{type}/{id}",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/readyz",
            "/search"
        ]
    );
    let parameters: Vec<&str> = openapi["paths"]["/search"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| parameter["name"].as_str().unwrap())
        .collect();
    for name in [
        "q",
        "type",
        "status",
        "customer_id",
        "date_from",
        "date_to",
        "sort",
        "limit",
        "cursor",
    ] {
        assert!(parameters.contains(&name), "{name} is not documented");
    }
    // Who the caller is comes from the bearer token only: no identity header is a
    // parameter anywhere; every operation but the open ones needs the token and
    // documents its 401 (with the challenge) and 403.
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    assert_eq!(openapi["security"][0]["bearerAuth"], serde_json::json!([]));
    let open = ["/openapi.json", "/healthz", "/readyz", "/metrics"];
    for (path, item) in openapi["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let named = format!("{method} {path}");
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap().to_ascii_lowercase();
                assert!(!name.starts_with("x-dovetail"), "{named}: {name}");
            }
            if open.contains(&path.as_str()) {
                assert_eq!(operation["security"], serde_json::json!([]), "{named}");
                continue;
            }
            assert!(operation.get("security").is_none(), "{named}");
            for status in ["401", "403"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{named} does not document {status}"
                );
            }
        }
    }
    assert!(
        openapi["components"]["responses"]["Unauthorized"]["headers"]["WWW-Authenticate"]
            .is_object()
    );
    assert_eq!(service.get("/healthz", &[]).await.0, StatusCode::OK);
    let (status, _, ready) = service.get("/readyz", &[]).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["index"], "ok");

    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_is_a_job_that_staff_start_and_follow() {
    let service = Service::start().await;
    let policy = policy_snapshot("pol-r", "alice", "home", 2, PolicyStatus::Active);
    service
        .publish(
            dovetail_contracts::policy::TOPIC,
            "policy-service",
            ("policy", "pol-r"),
            2,
            &PolicyIssued { policy },
        )
        .await;
    service
        .until("/search?type=policy", |items| items.len() == 1)
        .await;
    let staff = service.as_staff();
    let alice = service.customer("alice");

    // Only staff start, list or follow rebuilds.
    for (method, uri) in [
        (Method::POST, "/admin/rebuilds"),
        (Method::GET, "/admin/rebuilds"),
        (Method::GET, "/admin/rebuilds/some-id"),
    ] {
        let (status, _, body) = service
            .send(method.clone(), uri, &[("authorization", alice.as_str())])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("staff role"),
            "{method} {uri}: {body}"
        );
        let (status, _, body) = service.send(method.clone(), uri, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
    }
    let (status, _, body) = service
        .send(
            Method::POST,
            "/admin/rebuilds",
            &[staff[0], ("idempotency-key", "not a key")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        service.get("/admin/rebuilds", &staff).await.2["items"],
        serde_json::json!([])
    );

    // A start answers at once with the job and where to follow it.
    let key = [staff[0], ("idempotency-key", "rebuild-1")];
    let (status, headers, job) = service.send(Method::POST, "/admin/rebuilds", &key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let location = headers["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/admin/rebuilds/{id}"));
    assert!(
        ["running", "succeeded"].contains(&job["state"].as_str().unwrap()),
        "{job}"
    );
    assert!(job["started_at"].is_string(), "{job}");

    let started = Instant::now();
    let done = loop {
        let (status, _, job) = service.get(&location, &staff).await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            break job;
        }
        assert!(job["phase"].is_string(), "{job}");
        assert!(started.elapsed() < Duration::from_secs(10), "still {job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["report"]["from"], "gen-000001", "{done}");
    assert_eq!(done["report"]["to"], "gen-000002", "{done}");
    assert_eq!(done["report"]["rederived"], 1, "{done}");
    assert_eq!(done["documents_copied"], 1, "{done}");
    assert!(done["finished_at"].is_string(), "{done}");

    // The same key answers the same job instead of starting another.
    let (status, headers, again) = service.send(Method::POST, "/admin/rebuilds", &key).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert_eq!(headers["idempotent-replayed"], "true");
    let listed = service.get("/admin/rebuilds", &staff).await.2;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    // An unknown job is a problem saying where jobs are kept.
    let (status, content_type, body) = service.get("/admin/rebuilds/nope", &staff).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        body["detail"].as_str().unwrap().contains("instance"),
        "{body}"
    );

    // Searches went on across the switch, and a second rebuild starts from the new one.
    service
        .until("/search?type=policy", |items| items.len() == 1)
        .await;
    let (status, _, second) = service.send(Method::POST, "/admin/rebuilds", &staff).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_ne!(second["id"], id.as_str());
    service.stop().await;
}
