//! Filing and moving claims over HTTP: the rules, the lifecycle and its events,
//! idempotent filing, pagination and bad input.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{Service, assert_problem, claim_body};

#[tokio::test]
async fn a_claim_goes_from_filed_to_paid_and_each_change_publishes_its_event_in_order() {
    let service = Service::start().await;
    service.active_policy("pol-life").await;
    let filed = service
        .file("key-life", &claim_body("pol-life", "9750.00"))
        .await;
    assert_eq!(filed.status(), 201);
    assert_eq!(filed.headers()["etag"], "\"1\"");
    let filed: Value = filed.json().await.unwrap();
    assert_eq!(
        (filed["status"].as_str(), filed["customer_id"].as_str()),
        (Some("submitted"), Some("cust-1"))
    );
    let id = filed["claim_id"].as_str().unwrap().to_owned();

    for (step, version, status) in [
        ("review", 1, "under_review"),
        ("approve", 2, "approved"),
        ("pay", 3, "paid"),
    ] {
        let response = service
            .http
            .post(service.url(&format!("/claims/{id}/{step}")))
            .header("if-match", format!("\"{version}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{step}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status);
    }
    let events = service.claim_events(4).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(
        types,
        [
            "claim.filed",
            "claim.review_started",
            "claim.approved",
            "claim.paid"
        ]
    );
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence().get()).collect();
    assert_eq!(sequences, [1, 2, 3, 4]);
    service.stop().await;
}

#[tokio::test]
async fn claims_the_policy_does_not_cover_are_refused_with_the_reason() {
    let service = Service::start().await;
    let active = service.active_policy("pol-rules").await;

    let over = service
        .file("k1", &claim_body("pol-rules", "9750.01"))
        .await;
    let body = assert_problem(
        over,
        422,
        "at most 9750.00 (coverage limit 10000.00 less deductible 250.00)",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "amount");

    let mut early = claim_body("pol-rules", "10.00");
    early["incident_date"] = "2025-12-31".into();
    assert_problem(
        service.file("k2", &early).await,
        422,
        "covers incidents from 2026-01-01",
    )
    .await;

    let mut future = claim_body("pol-rules", "10.00");
    future["incident_date"] = "2999-01-01".into();
    assert_problem(service.file("k3", &future).await, 422, "in the future").await;

    let unknown = service
        .file("k4", &claim_body("pol-never-seen", "10.00"))
        .await;
    assert_eq!(unknown.headers()["retry-after"], "1");
    assert_problem(unknown, 409, "does not know policy \"pol-never-seen\" yet").await;

    service.cancel(&active).await;
    let cancelled = service.file("k5", &claim_body("pol-rules", "10.00")).await;
    let body = assert_problem(cancelled, 422, "policy pol-rules was cancelled").await;
    assert_eq!(
        body["type"],
        "https://dovetail.dev/problems/policy-does-not-cover"
    );

    let listed: Value = service
        .http
        .get(service.url("/claims?policy_id=pol-rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]), "no refused claim was stored");
    service.stop().await;
}

#[tokio::test]
async fn filing_needs_a_key_and_a_retry_with_it_files_once() {
    let service = Service::start().await;
    service.active_policy("pol-idem").await;
    let body = claim_body("pol-idem", "100.00");
    let without = service
        .http
        .post(service.url("/claims"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(without, 400, "needs an `Idempotency-Key` header").await;

    let first = service.file("retry-me", &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = service.file("retry-me", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["claim_id"], first["claim_id"]);

    let mut other = body.clone();
    other["amount"] = "200.00".into();
    assert_problem(
        service.file("retry-me", &other).await,
        422,
        "\"retry-me\" was already used",
    )
    .await;

    let listed: Value = service
        .http
        .get(service.url("/claims?policy_id=pol-idem"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    service.stop().await;
}

#[tokio::test]
async fn wrong_transitions_stale_versions_and_bad_bodies_say_what_to_do() {
    let service = Service::start().await;
    service.active_policy("pol-bad").await;
    let filed: Value = service
        .file("k", &claim_body("pol-bad", "10.00"))
        .await
        .json()
        .await
        .unwrap();
    let url = service.url(&format!("/claims/{}", filed["claim_id"].as_str().unwrap()));

    assert_problem(
        service
            .http
            .post(format!("{url}/pay"))
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap(),
        409,
        "paying only applies to approved claims",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/review"))
            .header("if-match", "\"3\"")
            .send()
            .await
            .unwrap(),
        412,
        "is at version \"1\"",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/review"))
            .send()
            .await
            .unwrap(),
        428,
        "If-Match",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/reject"))
            .header("if-match", "\"1\"")
            .json(&json!({ "reason": "" }))
            .send()
            .await
            .unwrap(),
        422,
        "say why",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/reject"))
            .header("if-match", "\"1\"")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        422,
        "missing field `reason`",
    )
    .await;
    let rejected = service
        .http
        .post(format!("{url}/reject"))
        .header("if-match", "\"1\"")
        .json(&json!({ "reason": "wear and tear is not covered" }))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status(), 200);

    let mut bad = claim_body("pol-bad", "ten");
    assert_problem(service.file("k2", &bad).await, 422, "`amount`").await;
    bad = claim_body("pol-bad", "10.00");
    bad["incident_date"] = "01/03/2026".into();
    assert_problem(service.file("k3", &bad).await, 422, "send YYYY-MM-DD").await;
    bad = claim_body("pol-bad", "10.00");
    bad["priority"] = "high".into();
    assert_problem(
        service.file("k4", &bad).await,
        422,
        "unknown field `priority`",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/claims/clm-none"))
            .send()
            .await
            .unwrap(),
        404,
        "no claim has the id",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/claims"))
            .send()
            .await
            .unwrap(),
        400,
        "policy_id=",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/claims?policy_id=a&customer_id=b"))
            .send()
            .await
            .unwrap(),
        400,
        "not both",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/replica/policies/pol-none"))
            .send()
            .await
            .unwrap(),
        404,
        "no copy",
    )
    .await;
    service.stop().await;
}

#[tokio::test]
async fn a_customers_claims_come_in_pages_and_the_openapi_document_covers_every_route() {
    let service = Service::start().await;
    service.active_policy("pol-pages").await;
    let mut filed = Vec::new();
    for n in 0..5 {
        let claim: Value = service
            .file(&format!("page-{n}"), &claim_body("pol-pages", "10.00"))
            .await
            .json()
            .await
            .unwrap();
        filed.push(claim["claim_id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut url = service.url("/claims?customer_id=cust-1&limit=2");
    loop {
        let page: Value = service
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["claim_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                url = service.url(&format!(
                    "/claims?customer_id=cust-1&limit=2&cursor={cursor}"
                ));
            }
            None => break,
        }
    }
    assert_eq!(seen, filed);

    let openapi: Value = service
        .http
        .get(service.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: BTreeSet<&str> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = [
        "/claims",
        "/claims/{claim_id}",
        "/claims/{claim_id}/review",
        "/claims/{claim_id}/approve",
        "/claims/{claim_id}/reject",
        "/claims/{claim_id}/pay",
        "/replica/policies/{policy_id}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]
    .into();
    assert_eq!(documented, served);
    let metrics = service
        .http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("claim_replica_events_total{outcome=\"applied\"}"),
        "{metrics}"
    );
    service.stop().await;
}
