//! Every bad input gets problem+json with a message that says what to fix, and changes
//! nothing.

use serde_json::json;

use crate::support::{Service, assert_problem, terms};

#[tokio::test]
async fn bad_bodies_are_refused_with_the_field_and_the_fix() {
    let service = Service::start().await;
    let post = |body: String| {
        service
            .http
            .post(service.url("/policies"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_problem(
        post("{\"customer_id\": ".into()).await.unwrap(),
        400,
        "not well-formed JSON",
    )
    .await;
    assert_problem(post(String::new()).await.unwrap(), 400, "the body is empty").await;

    let mut unknown = terms("c");
    unknown["colour"] = "red".into();
    assert_problem(
        post(unknown.to_string()).await.unwrap(),
        422,
        "unknown field `colour`",
    )
    .await;

    let mut wrong_type = terms("c");
    wrong_type["coverage_limit"] = json!(10000.5);
    let body = assert_problem(
        post(wrong_type.to_string()).await.unwrap(),
        422,
        "`coverage_limit`",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("as a string"),
        "{body}"
    );

    let mut bad_money = terms("c");
    bad_money["premium"] = "12.345".into();
    assert_problem(
        post(bad_money.to_string()).await.unwrap(),
        422,
        "more than two decimals",
    )
    .await;

    let mut negative = terms("c");
    negative["deductible"] = "-5".into();
    assert_problem(post(negative.to_string()).await.unwrap(), 422, "negative").await;

    let mut bad_date = terms("c");
    bad_date["effective_date"] = "2026-02-30".into();
    assert_problem(
        post(bad_date.to_string()).await.unwrap(),
        422,
        "send YYYY-MM-DD",
    )
    .await;

    let mut reversed = terms("c");
    reversed["expiry_date"] = "2025-01-01".into();
    let body = assert_problem(
        post(reversed.to_string()).await.unwrap(),
        422,
        "must be after the effective date",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "expiry_date");

    let mut missing = terms("c");
    missing.as_object_mut().unwrap().remove("premium");
    assert_problem(
        post(missing.to_string()).await.unwrap(),
        422,
        "missing field `premium`",
    )
    .await;

    let text = service
        .http
        .post(service.url("/policies"))
        .body(terms("c").to_string())
        .send()
        .await
        .unwrap();
    assert_problem(text, 415, "Content-Type: application/json").await;

    let listed: serde_json::Value = service
        .http
        .get(service.url("/policies?customer_id=c"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"],
        json!([]),
        "no bad request left a policy behind"
    );
    service.stop().await;
}

#[tokio::test]
async fn unknown_ids_stale_versions_and_wrong_transitions_say_what_to_do() {
    let service = Service::start().await;
    let id = service.draft("cust-bad").await["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = service.url(&format!("/policies/{id}"));

    assert_problem(
        service
            .http
            .get(service.url("/policies/pol-nope"))
            .send()
            .await
            .unwrap(),
        404,
        "no policy has the id",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/issue"))
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
            .post(format!("{url}/issue"))
            .header("if-match", "1")
            .send()
            .await
            .unwrap(),
        400,
        "with the quotes",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/issue"))
            .header("if-match", "\"7\"")
            .send()
            .await
            .unwrap(),
        412,
        "is at version \"1\"",
    )
    .await;
    let issue = service
        .http
        .post(format!("{url}/issue"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(issue.status(), 200);
    assert_problem(
        service
            .http
            .post(format!("{url}/issue"))
            .header("if-match", "\"2\"")
            .send()
            .await
            .unwrap(),
        409,
        "issuing only applies to draft policies",
    )
    .await;
    assert_problem(
        service
            .http
            .patch(&url)
            .header("if-match", "\"2\"")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        422,
        "names no field to change",
    )
    .await;
    assert_problem(
        service
            .http
            .post(format!("{url}/cancel"))
            .header("if-match", "\"2\"")
            .header("content-type", "application/json")
            .body("{\"why\":1}")
            .send()
            .await
            .unwrap(),
        422,
        "unknown field `why`",
    )
    .await;
    let read: serde_json::Value = service
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (read["status"].as_str(), read["version"].as_u64()),
        (Some("active"), Some(2))
    );
    service.stop().await;
}

#[tokio::test]
async fn bad_queries_routes_and_methods_get_problems_too() {
    let service = Service::start().await;
    assert_problem(
        service
            .http
            .get(service.url("/policies"))
            .send()
            .await
            .unwrap(),
        400,
        "customer_id=",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/policies?customer_id=c&limit=0"))
            .send()
            .await
            .unwrap(),
        400,
        "1 to 100",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/policies?customer_id=c&limit=ten"))
            .send()
            .await
            .unwrap(),
        400,
        "limit",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/policies?customer_id=c&cursor=zzz"))
            .send()
            .await
            .unwrap(),
        400,
        "next_cursor",
    )
    .await;
    assert_problem(
        service
            .http
            .get(service.url("/nowhere"))
            .send()
            .await
            .unwrap(),
        404,
        "/openapi.json",
    )
    .await;
    assert_problem(
        service
            .http
            .delete(service.url("/policies"))
            .send()
            .await
            .unwrap(),
        405,
        "does not take DELETE",
    )
    .await;
    assert_problem(
        service
            .http
            .post(service.url("/policies"))
            .header("idempotency-key", "")
            .json(&terms("c"))
            .send()
            .await
            .unwrap(),
        400,
        "Idempotency-Key",
    )
    .await;
    service.stop().await;
}
