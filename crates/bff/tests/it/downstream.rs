//! A downstream's stack against real servers: the breaker, retries of idempotent calls
//! only, the retry budget, and the headers that arrive.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, Method};
use dovetail_bff::{
    BreakerConfig, BreakerState, Call, CallContext, CallError, Deadline, Downstream,
    DownstreamConfig, RetryConfig, SectionOutcome,
};
use dovetail_http::deadline::DEADLINE_HEADER;
use serde_json::Value;

use crate::support::{Mode, TestServer};

fn context(budget: Duration) -> CallContext {
    CallContext::new(Deadline::after(budget))
}

#[tokio::test]
async fn the_breaker_opens_after_failures_and_closes_after_recovery() {
    let server = TestServer::start(Mode::Fail).await;
    let downstream = Downstream::new(DownstreamConfig {
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_millis(300),
        },
        ..server.config("policy")
    })
    .unwrap();
    let cx = context(Duration::from_secs(5));
    for _ in 0..3 {
        let error = downstream.get_json::<Value>(&cx, "/p").await.unwrap_err();
        assert_eq!(error.outcome(), SectionOutcome::Unavailable);
    }
    assert_eq!(downstream.breaker_state(), BreakerState::Open);
    for _ in 0..5 {
        let error = downstream.get_json::<Value>(&cx, "/p").await.unwrap_err();
        assert!(matches!(error, CallError::CircuitOpen), "{error:?}");
        assert_eq!(error.outcome(), SectionOutcome::CircuitOpen);
    }
    assert_eq!(server.calls(), 3, "an open breaker makes no calls");

    server.set_mode(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    downstream
        .get_json::<Value>(&cx, "/p")
        .await
        .expect("the probe succeeds");
    assert_eq!(downstream.breaker_state(), BreakerState::Closed);
    downstream.get_json::<Value>(&cx, "/p").await.unwrap();
    assert_eq!(server.calls(), 5);
}

fn retrying(server: &TestServer, retry: RetryConfig) -> Downstream {
    Downstream::new(DownstreamConfig {
        retry,
        ..server.config("policy")
    })
    .unwrap()
}

#[tokio::test]
async fn a_post_without_idempotency_key_is_never_repeated_while_a_get_is_retried() {
    let server = TestServer::start(Mode::Fail).await;
    let downstream = retrying(
        &server,
        RetryConfig {
            max_retries: 2,
            base_backoff: Duration::from_millis(5),
            min_retries_per_sec: 100,
            ..RetryConfig::default()
        },
    );
    let cx = context(Duration::from_secs(5));
    let post = Call::post_json("/claims", &serde_json::json!({"amount": 10})).unwrap();
    assert!(!post.is_idempotent());
    downstream.send(&cx, post.clone()).await.unwrap_err();
    assert_eq!(server.calls(), 1, "a POST without a key is sent once");

    downstream
        .get_json::<Value>(&cx, "/claims")
        .await
        .unwrap_err();
    assert_eq!(server.calls(), 1 + 3, "a GET is retried twice");

    let keyed = post.idempotency_key(HeaderValue::from_static("k-1"));
    downstream.send(&cx, keyed).await.unwrap_err();
    assert_eq!(server.calls(), 4 + 3, "a POST with a key is retried");
    assert_eq!(server.last_headers()["idempotency-key"], "k-1");

    let put = Call::new(Method::PUT, "/claims/c-1", None);
    downstream.send(&cx, put).await.unwrap_err();
    assert_eq!(server.calls(), 7 + 1, "a PUT without a key is sent once");
}

#[tokio::test]
async fn the_retry_budget_caps_extra_calls_under_a_failing_server() {
    let server = TestServer::start(Mode::Fail).await;
    let downstream = retrying(
        &server,
        RetryConfig {
            max_retries: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            budget_ratio: 0.2,
            min_retries_per_sec: 1,
        },
    );
    let requests = 100;
    for _ in 0..requests {
        let cx = context(Duration::from_secs(5));
        downstream.get_json::<Value>(&cx, "/p").await.unwrap_err();
    }
    let calls = server.calls();
    // Without a budget: 400 calls. With it: 20% of the calls made, plus the reserve of
    // one retry a second over the budget's ten-second window.
    assert!(calls > requests, "some retries were made: {calls}");
    assert!(
        calls <= requests + requests / 5 + 10,
        "{calls} calls for {requests} requests"
    );
}

#[tokio::test]
async fn backoff_never_sleeps_past_the_deadline() {
    let server = TestServer::start(Mode::Fail).await;
    let downstream = retrying(
        &server,
        RetryConfig {
            max_retries: 5,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(2),
            min_retries_per_sec: 100,
            ..RetryConfig::default()
        },
    );
    let started = tokio::time::Instant::now();
    let error = downstream
        .get_json::<Value>(&context(Duration::from_millis(100)), "/p")
        .await
        .unwrap_err();
    // Either no retry (the drawn backoff outlasts the deadline) or the deadline stops it.
    assert!(
        matches!(error, CallError::Failed { .. } | CallError::Timeout),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(300));
}

fn deadline_ms(headers: &HeaderMap) -> u64 {
    headers[DEADLINE_HEADER].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_deadline_header_arrives_with_at_most_the_time_that_remains() {
    let server = TestServer::start(Mode::Ok).await;
    let downstream = server.downstream("policy");
    let cx = context(Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    downstream.get_json::<Value>(&cx, "/p").await.unwrap();
    let sent = deadline_ms(&server.last_headers());
    assert!(sent > 0 && sent <= 400, "{sent}");

    let capped = Downstream::new(DownstreamConfig {
        call_timeout: Duration::from_millis(150),
        ..server.config("policy")
    })
    .unwrap();
    capped
        .get_json::<Value>(&context(Duration::from_secs(5)), "/p")
        .await
        .unwrap();
    let sent = deadline_ms(&server.last_headers());
    assert!(sent <= 150, "the call timeout caps the header: {sent}");
}

#[tokio::test]
async fn authorization_traceparent_and_request_id_arrive_downstream() {
    let server = TestServer::start(Mode::Ok).await;
    let downstream = server.downstream("policy");
    let mut incoming = HeaderMap::new();
    incoming.insert("authorization", HeaderValue::from_static("Bearer token-1"));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    incoming.insert("traceparent", HeaderValue::from_static(traceparent));
    incoming.insert("x-request-id", HeaderValue::from_static("req-42"));
    incoming.insert("cookie", HeaderValue::from_static("session=secret"));
    let cx = CallContext::from_headers(&incoming, Duration::from_secs(1)).unwrap();
    assert_eq!(cx.request_id(), "req-42");
    downstream.get_json::<Value>(&cx, "/p").await.unwrap();

    let seen = server.last_headers();
    assert_eq!(seen["authorization"], "Bearer token-1");
    assert_eq!(seen["traceparent"], traceparent);
    assert_eq!(seen["x-request-id"], "req-42");
    assert!(
        seen.get("cookie").is_none(),
        "only what is meant to travel travels"
    );
    assert!(deadline_ms(&seen) <= 1000);

    // A request that starts here gets a request id of its own.
    downstream
        .get_json::<Value>(&context(Duration::from_secs(1)), "/p")
        .await
        .unwrap();
    assert_eq!(server.last_headers()["x-request-id"].len(), 36);
}

#[test]
fn a_downstream_is_shared_across_tasks() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<Downstream>();
    assert!(Downstream::new(DownstreamConfig::new("policy", "not a url")).is_err());
}

#[tokio::test]
async fn the_concurrency_limit_holds_calls_beyond_it_and_a_passed_deadline_calls_nobody() {
    let server = TestServer::start(Mode::Hang).await;
    let downstream = Downstream::new(DownstreamConfig {
        concurrency: 2,
        ..server.config("policy")
    })
    .unwrap();
    let cx = context(Duration::from_millis(200));
    let (a, b, c) = tokio::join!(
        downstream.get_json::<Value>(&cx, "/a"),
        downstream.get_json::<Value>(&cx, "/b"),
        downstream.get_json::<Value>(&cx, "/c"),
    );
    for result in [a, b, c] {
        assert!(matches!(result, Err(CallError::Timeout)), "{result:?}");
    }
    assert_eq!(
        server.calls(),
        2,
        "the third call waited for a permit until the deadline"
    );

    let passed = context(Duration::ZERO);
    let error = downstream
        .get_json::<Value>(&passed, "/d")
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Timeout));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.calls(), 2, "a passed deadline is not sent");
}

#[tokio::test]
async fn a_hanging_attempt_times_out_at_the_call_timeout_and_a_get_tries_again() {
    let server = TestServer::start(Mode::Hang).await;
    let downstream = Downstream::new(DownstreamConfig {
        call_timeout: Duration::from_millis(50),
        retry: RetryConfig {
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            min_retries_per_sec: 100,
            ..RetryConfig::default()
        },
        ..server.config("policy")
    })
    .unwrap();
    let started = tokio::time::Instant::now();
    let error = downstream
        .get_json::<Value>(&context(Duration::from_secs(2)), "/p")
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Timeout), "{error:?}");
    assert_eq!(server.calls(), 3, "three attempts of 50 ms each");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(deadline_ms(&server.last_headers()) <= 50);
}

#[tokio::test]
async fn a_slow_read_is_hedged_and_the_fast_answer_wins_while_writes_never_are() {
    let server = TestServer::start(Mode::SlowOdd).await;
    let hedged = Downstream::new(DownstreamConfig {
        hedge_after: Some(Duration::from_millis(50)),
        retry: RetryConfig {
            max_retries: 0,
            min_retries_per_sec: 100,
            ..RetryConfig::default()
        },
        ..server.config("search")
    })
    .unwrap();
    let cx = context(Duration::from_secs(5));

    // Call 0 is slow; the hedge (call 1) answers at once and wins.
    let started = tokio::time::Instant::now();
    let answer: Value = hedged.get_json(&cx, "/search").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer["call"], 1, "the hedge's answer");
    assert_eq!(server.calls(), 2);

    // Call 2 is slow: a keyed POST waits for it, never sending a second.
    let post = Call::post_json("/claims", &serde_json::json!({"amount": 10}))
        .unwrap()
        .idempotency_key(HeaderValue::from_static("k-9"));
    let started = tokio::time::Instant::now();
    hedged.send(&cx, post).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(server.calls(), 3, "a write is not hedged");

    // Without budget left, a slow read is not hedged either.
    let unbudgeted = Downstream::new(DownstreamConfig {
        hedge_after: Some(Duration::from_millis(50)),
        retry: RetryConfig {
            max_retries: 0,
            budget_ratio: 0.0,
            min_retries_per_sec: 0,
            ..RetryConfig::default()
        },
        ..server.config("search")
    })
    .unwrap();
    server.reset_calls();
    let answer: Value = unbudgeted.get_json(&cx, "/search").await.unwrap();
    assert_eq!(answer["call"], 0, "the first attempt's own answer");
    assert_eq!(server.calls(), 1, "no budget, no hedge");
}

#[tokio::test]
async fn forward_passes_a_failure_on_as_it_came_and_the_breaker_counts_it() {
    let server = TestServer::start(Mode::Fail).await;
    let downstream = Downstream::new(DownstreamConfig {
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(30),
        },
        ..server.config("policy")
    })
    .unwrap();
    let cx = context(Duration::from_secs(5));
    let answer = downstream
        .forward(&cx, Call::get("/policies"))
        .await
        .unwrap();
    assert_eq!(answer.status, 503, "the downstream's own answer");
    let error = downstream
        .send(&cx, Call::get("/policies"))
        .await
        .unwrap_err();
    assert!(matches!(error, CallError::Failed { .. }), "{error:?}");
    assert_eq!(downstream.breaker_state(), BreakerState::Open);
    let refused = downstream.forward(&cx, Call::get("/policies")).await;
    assert!(
        matches!(refused, Err(CallError::CircuitOpen)),
        "{refused:?}"
    );
}
