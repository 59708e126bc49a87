//! The kit's HTTP conventions on the policy service: the caller's deadline is honoured
//! (passed → 504 problem, generous → served) and every answer echoes its request id.

use crate::support::{Service, assert_problem};

#[tokio::test]
async fn a_passed_deadline_is_a_504_problem_and_a_generous_one_is_served() {
    let service = Service::start().await;
    let id = service.draft("cust-1").await["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = service.url(&format!("/policies/{id}"));

    let passed = service
        .http
        .get(&url)
        .header("dovetail-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    let body = assert_problem(passed, 504, "dovetail-deadline-ms").await;
    assert_eq!(
        body["type"],
        "https://dovetail.dev/problems/deadline-exceeded"
    );

    let bad = service
        .http
        .get(&url)
        .header("dovetail-deadline-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "whole number from 0 to 600000").await;

    let generous = service
        .http
        .get(&url)
        .header("dovetail-deadline-ms", "10000")
        .send()
        .await
        .unwrap();
    assert_eq!(generous.status(), 200);
    let read: serde_json::Value = generous.json().await.unwrap();
    assert_eq!(read["policy_id"], id.as_str());
    service.stop().await;
}

#[tokio::test]
async fn every_answer_echoes_the_request_id_given_or_made() {
    let service = Service::start().await;
    let given = service
        .http
        .get(service.url("/policies?customer_id=cust-1"))
        .header("x-request-id", "req-policy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 200);
    assert_eq!(given.headers()["x-request-id"], "req-policy-1");

    let made = service
        .http
        .get(service.url("/healthz"))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    // Problems too, the router's fallback and the identity layer's 401 included, with the
    // id in the body.
    let unknown = service
        .http
        .get(service.url("/no-such-route"))
        .header("x-request-id", "req-policy-2")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.headers()["x-request-id"], "req-policy-2");
    let body = assert_problem(unknown, 404, "no route").await;
    assert_eq!(body["request_id"], "req-policy-2");

    let anonymous = service
        .anonymous
        .get(service.url("/policies?customer_id=cust-1"))
        .header("x-request-id", "req-policy-3")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["x-request-id"], "req-policy-3");
    service.stop().await;
}
