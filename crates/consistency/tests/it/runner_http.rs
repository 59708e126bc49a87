//! The staff endpoints: staff start and follow runs; customers and the unverified are
//! refused; bad ids and limits get a problem that says what to send.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dovetail_consistency::runner::http::router;
use dovetail_consistency::{MemoryRunStore, MemoryView, Pair, Runner, RunnerConfig};
use dovetail_http::identity::{Identity, Role};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

fn app(identity: Option<Identity>) -> (Router, Runner) {
    let owner = Arc::new(MemoryView::new());
    owner.put("policy-1", 1);
    let mut config = RunnerConfig::new("a");
    config.check.expected_lag = Duration::ZERO;
    let runner = Runner::builder(MemoryRunStore::new(), config)
        .pair(Pair::new(
            "policy-service",
            owner,
            "claim-service",
            MemoryView::new(),
        ))
        .build();
    let routes = router(runner.clone());
    let routes = match identity {
        // What the IdentityLayer does once it has verified a token.
        Some(identity) => routes.layer(axum::Extension(identity)),
        None => routes,
    };
    (routes, runner)
}

fn who(role: Role) -> Identity {
    let customer = (role == Role::Customer).then(|| "cust-1".to_owned());
    Identity::new(
        "user-1",
        [role],
        customer,
        "token-1",
        time::OffsetDateTime::now_utc() + time::Duration::minutes(5),
    )
}

async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, Option<String>, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn staff_start_a_run_and_follow_it_to_its_findings() {
    let (app, runner) = app(Some(who(Role::Staff)));
    let (status, location, body) = call(&app, "POST", "/admin/consistency/runs").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["trigger"]["by"], "user-1");
    let location = location.unwrap();
    assert_eq!(
        location,
        format!("/admin/consistency/runs/{}", body["id"].as_str().unwrap())
    );

    // The queued run is taken by the runner holding the lease (here: a run now).
    let stop = async { tokio::time::sleep(Duration::from_millis(500)).await };
    runner.run_until_stopped(stop).await;
    let (status, _, run) = call(&app, "GET", &location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["pairs"][0]["counts"]["missing_in_replica"], 1);
    assert_eq!(run["pairs"][0]["differences"][0]["key"], "policy-1");

    let (status, _, list) = call(&app, "GET", "/admin/consistency/runs?limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == run["id"])
    );
}

#[tokio::test]
async fn customers_and_callers_without_a_verified_identity_are_refused() {
    let (customer, _) = app(Some(who(Role::Customer)));
    for (method, uri) in [
        ("POST", "/admin/consistency/runs"),
        ("GET", "/admin/consistency/runs"),
    ] {
        let (status, _, body) = call(&customer, method, uri).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert!(body["detail"].as_str().unwrap().contains("staff"), "{body}");
    }
    let (nobody, runner) = app(None);
    let (status, _, _) = call(&nobody, "POST", "/admin/consistency/runs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        runner.latest(10).await.unwrap().is_empty(),
        "nothing was queued"
    );
}

#[tokio::test]
async fn bad_ids_unknown_runs_and_bad_limits_say_what_to_send() {
    let (app, _) = app(Some(who(Role::Staff)));
    let (status, _, body) = call(&app, "GET", "/admin/consistency/runs/not-a-run").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("not a run id"),
        "{body}"
    );
    let unknown = dovetail_consistency::RunId::generate();
    let (status, _, body) = call(&app, "GET", &format!("/admin/consistency/runs/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("lists the latest"),
        "{body}"
    );
    for query in ["limit=0", "limit=101", "limit=ten", "page=2"] {
        let (status, _, body) =
            call(&app, "GET", &format!("/admin/consistency/runs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("limit"),
            "{query}: {body}"
        );
    }
}
