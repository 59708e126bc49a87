//! A small gateway served on loopback: the `CallContext` extractor, the composer and the
//! request-id layer together, called over HTTP as a client would.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use dovetail_bff::{
    CallContext, Composer, Downstream, RequestIdLayer, RouteBudget, Section, SectionOutcome,
};
use dovetail_http::Problem;
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{Mode, TestServer};

#[derive(Clone)]
struct Gateway {
    policy: Downstream,
    search: Downstream,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Dashboard {
    policies: Section<Value>,
    activity: Section<Value>,
}

async fn dashboard(
    State(gateway): State<Gateway>,
    cx: CallContext,
) -> Result<Json<Dashboard>, Problem> {
    let mut page = Composer::new(cx.deadline());
    let policies = page.required("policies", gateway.policy.get_json(&cx, "/policies"));
    let activity = page.section("activity", gateway.search.get_json(&cx, "/search"));
    let done = page.run().await?;
    Ok(Json(Dashboard {
        policies: done.take(policies),
        activity: done.take(activity),
    }))
}

async fn serve(policy: &TestServer, search: &TestServer) -> String {
    let gateway = Gateway {
        policy: policy.downstream("policy"),
        search: search.downstream("search"),
    };
    let app = Router::new()
        .route("/dashboard", get(dashboard))
        .with_state(gateway)
        .layer(Extension(RouteBudget(Duration::from_millis(300))))
        .layer(RequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_composed_page_answers_on_time_and_carries_the_request_id_through() {
    let policy = TestServer::start(Mode::Ok).await;
    let search = TestServer::start(Mode::Hang).await;
    let url = serve(&policy, &search).await;
    let client = reqwest::Client::new();

    let started = Instant::now();
    let response = client
        .get(format!("{url}/dashboard"))
        .header("x-request-id", "req-7")
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(300 + 200), "{elapsed:?}");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-7");
    let page: Dashboard = response.json().await.unwrap();
    assert_eq!(page.policies.outcome(), SectionOutcome::Ok);
    assert_eq!(page.activity.outcome(), SectionOutcome::Timeout);
    assert_eq!(policy.last_headers()["x-request-id"], "req-7");
    assert_eq!(search.last_headers()["x-request-id"], "req-7");

    // The caller's shorter deadline wins over the route's budget.
    let started = Instant::now();
    let response = client
        .get(format!("{url}/dashboard"))
        .header("dovetail-deadline-ms", "100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(100 + 200));
    let sent: u64 = policy.last_headers()["dovetail-deadline-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent <= 100, "{sent}");
}

#[tokio::test]
async fn a_failed_required_section_is_a_problem_with_a_request_id() {
    let policy = TestServer::start(Mode::Fail).await;
    let search = TestServer::start(Mode::Ok).await;
    let url = serve(&policy, &search).await;
    let client = reqwest::Client::new();

    let response = client.get(format!("{url}/dashboard")).send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(id.len(), 36, "a new request id: {id}");
    assert_eq!(policy.last_headers()["x-request-id"], id.as_str());
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 503);

    let response = client
        .get(format!("{url}/dashboard"))
        .header("dovetail-deadline-ms", "soon")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        400,
        "a bad deadline header is the caller's problem"
    );
}
