//! [`DeadlineLayer`] and [`RequestIdLayer`] in front of a small router on loopback: work
//! past the deadline stops and is answered 504, a bad deadline is a 400, a request without
//! one is served as before; the request id is echoed, made when missing or unfit, and in
//! the problems. (That every log line carries it is a unit test of the layer: tracing
//! caches per call site whether a line is wanted, which tests that set their own
//! subscriber on one thread while others serve requests cannot rely on.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use dovetail_http::Problem;
use dovetail_http::deadline::{DEADLINE_HEADER, Deadline, DeadlineLayer};
use dovetail_http::request_id::{REQUEST_ID_HEADER, RequestId, RequestIdLayer};
use serde_json::Value;

#[derive(Default)]
struct Observed {
    calls: AtomicUsize,
    started: AtomicBool,
    finished: AtomicBool,
}

/// `/slow` sleeps `SLOW` and then marks that it finished; `/deadline` says what deadline
/// it was given; `/fail` answers a problem.
const SLOW: Duration = Duration::from_millis(600);

async fn slow(State(observed): State<Arc<Observed>>) -> &'static str {
    observed.calls.fetch_add(1, Ordering::SeqCst);
    observed.started.store(true, Ordering::SeqCst);
    tracing::info!("slow work begins");
    tokio::time::sleep(SLOW).await;
    observed.finished.store(true, Ordering::SeqCst);
    "done"
}

async fn report(State(observed): State<Arc<Observed>>, deadline: Option<Deadline>) -> String {
    observed.calls.fetch_add(1, Ordering::SeqCst);
    deadline.map_or_else(
        || "none".to_owned(),
        |deadline| deadline.remaining().as_millis().to_string(),
    )
}

async fn fail(id: RequestId) -> Problem {
    tracing::info!(seen = %id, "about to fail");
    Problem::not_found("nothing here")
}

async fn start() -> (String, Arc<Observed>) {
    start_with(DeadlineLayer::new()).await
}

async fn start_with(layer: DeadlineLayer) -> (String, Arc<Observed>) {
    let observed = Arc::new(Observed::default());
    let app = Router::new()
        .route("/slow", get(slow))
        .route("/deadline", get(report))
        .route("/fail", get(fail))
        .with_state(Arc::clone(&observed))
        .layer(layer)
        .layer(RequestIdLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, observed)
}

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn work_past_the_deadline_stops_and_the_answer_is_a_504_within_the_deadline() {
    let (base, observed) = start().await;
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("{base}/slow"))
        .header(DEADLINE_HEADER, "150")
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    let body = problem(response, 504).await;
    assert_eq!(
        body["type"],
        "https://dovetail.dev/problems/deadline-exceeded"
    );
    assert!(
        body["detail"].as_str().unwrap().contains(DEADLINE_HEADER),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(150 + 250),
        "answered after {took:?}"
    );
    assert!(observed.started.load(Ordering::SeqCst), "the handler ran");
    // Long after the handler's sleep would have ended, it never finished: its future was
    // dropped at the deadline.
    tokio::time::sleep(SLOW + Duration::from_millis(300)).await;
    assert!(
        !observed.finished.load(Ordering::SeqCst),
        "the work went on past the deadline"
    );
}

#[tokio::test]
async fn a_deadline_already_passed_is_a_504_without_calling_the_handler() {
    let (base, observed) = start().await;
    let response = reqwest::Client::new()
        .get(format!("{base}/deadline"))
        .header(DEADLINE_HEADER, "0")
        .send()
        .await
        .unwrap();
    problem(response, 504).await;
    assert_eq!(observed.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_bad_deadline_is_a_400_that_says_what_to_send_and_the_handler_is_not_called() {
    let (base, observed) = start().await;
    for bad in ["soon", "-1", "1.5", "600001"] {
        let response = reqwest::Client::new()
            .get(format!("{base}/deadline"))
            .header(DEADLINE_HEADER, bad)
            .send()
            .await
            .unwrap();
        let body = problem(response, 400).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("whole number from 0 to 600000"),
            "{bad}: {detail}"
        );
    }
    assert_eq!(observed.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn without_the_header_a_request_is_served_as_before_and_with_one_the_handler_sees_it() {
    let (base, observed) = start().await;
    let client = reqwest::Client::new();
    let plain = client.get(format!("{base}/slow")).send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(plain.text().await.unwrap(), "done");
    assert!(observed.finished.load(Ordering::SeqCst));

    let none = client.get(format!("{base}/deadline")).send().await.unwrap();
    assert_eq!(none.text().await.unwrap(), "none");
    let given = client
        .get(format!("{base}/deadline"))
        .header(DEADLINE_HEADER, "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(given.status(), 200);
    let remaining: u64 = given.text().await.unwrap().parse().unwrap();
    assert!(remaining <= 5000 && remaining > 4000, "{remaining}");
}

#[tokio::test]
async fn a_request_id_is_echoed_or_made_and_problems_carry_it() {
    let (base, _) = start().await;
    let client = reqwest::Client::new();
    let given = client
        .get(format!("{base}/deadline"))
        .header(REQUEST_ID_HEADER, "req-given-1")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()[REQUEST_ID_HEADER], "req-given-1");

    for unfit in [None, Some("has spaces"), Some(&*"x".repeat(129))] {
        let mut request = client.get(format!("{base}/deadline"));
        if let Some(unfit) = unfit {
            request = request.header(REQUEST_ID_HEADER, unfit);
        }
        let made = request.send().await.unwrap();
        let id = made.headers()[REQUEST_ID_HEADER].to_str().unwrap();
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(uuid.get_version_num(), 7, "{unfit:?} → {id}");
    }

    let failed = client
        .get(format!("{base}/fail"))
        .header(REQUEST_ID_HEADER, "req-failed-2")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.headers()[REQUEST_ID_HEADER], "req-failed-2");
    let body = problem(failed, 404).await;
    assert_eq!(body["request_id"], "req-failed-2");

    // The layers' own problems too: the 504 and the 400.
    for (deadline, status) in [("0", 504), ("soon", 400)] {
        let answer = client
            .get(format!("{base}/deadline"))
            .header(REQUEST_ID_HEADER, "req-own-3")
            .header(DEADLINE_HEADER, deadline)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.headers()[REQUEST_ID_HEADER], "req-own-3");
        assert_eq!(problem(answer, status).await["request_id"], "req-own-3");
    }
}

#[tokio::test]
async fn a_service_wide_limit_bounds_requests_without_a_deadline_and_caps_longer_ones() {
    let (base, observed) = start_with(DeadlineLayer::with_max(Duration::from_millis(100))).await;
    let client = reqwest::Client::new();
    for deadline in [None, Some("5000")] {
        let started = Instant::now();
        let mut request = client.get(format!("{base}/slow"));
        if let Some(deadline) = deadline {
            request = request.header(DEADLINE_HEADER, deadline);
        }
        problem(request.send().await.unwrap(), 504).await;
        assert!(
            started.elapsed() < Duration::from_millis(100 + 250),
            "{deadline:?}: {:?}",
            started.elapsed()
        );
    }
    let seen: u64 = client
        .get(format!("{base}/deadline"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        seen <= 100,
        "the handler sees the limit as its deadline: {seen}"
    );
    let earlier: u64 = client
        .get(format!("{base}/deadline"))
        .header(DEADLINE_HEADER, "40")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        earlier <= 40,
        "the caller's earlier deadline wins: {earlier}"
    );
    assert!(!observed.finished.load(Ordering::SeqCst));
}
