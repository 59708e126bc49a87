//! Pages composed from real downstreams: a hanging one times out its section only; a
//! required one that fails fails the page.

use std::time::Duration;

use axum::http::StatusCode;
use dovetail_bff::{CallContext, Composer, Deadline, SectionOutcome};
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{Mode, TestServer};

const SLACK: Duration = Duration::from_millis(200);

#[tokio::test]
async fn a_hanging_downstream_times_out_its_section_and_the_page_answers_on_time() {
    let policy = TestServer::start(Mode::Ok).await;
    let search = TestServer::start(Mode::Hang).await;
    let (policy, search) = (policy.downstream("policy"), search.downstream("search"));
    let budget = Duration::from_millis(300);
    let started = Instant::now();
    let context = CallContext::new(Deadline::after(budget));

    let mut page = Composer::new(context.deadline());
    let policies = page.required("policies", policy.get_json::<Value>(&context, "/policies"));
    let activity = page.section("activity", search.get_json::<Value>(&context, "/search"));
    let done = page.run().await.expect("the required section answered");

    let elapsed = started.elapsed();
    assert!(elapsed >= budget && elapsed < budget + SLACK, "{elapsed:?}");
    let policies = done.take(policies);
    assert_eq!(policies.outcome(), SectionOutcome::Ok);
    assert_eq!(policies.data().unwrap()["path"], "/policies");
    let activity = done.take(activity);
    assert_eq!(activity.outcome(), SectionOutcome::Timeout);
    let json = serde_json::to_value(&activity).unwrap();
    assert_eq!(json["status"], "timeout");
    assert!(json.get("data").is_none());
}

#[tokio::test]
async fn a_required_section_that_fails_fails_the_page() {
    let ok = TestServer::start(Mode::Ok).await.downstream("ok");
    for (mode, status) in [
        (Mode::Fail, StatusCode::SERVICE_UNAVAILABLE),
        (Mode::Hang, StatusCode::GATEWAY_TIMEOUT),
    ] {
        let failing = TestServer::start(mode).await.downstream("policy");
        let context = CallContext::new(Deadline::after(Duration::from_millis(200)));
        let mut page = Composer::new(context.deadline());
        let _extra = page.section("extra", ok.get_json::<Value>(&context, "/extra"));
        let _policies = page.required("policies", failing.get_json::<Value>(&context, "/p"));
        let problem = page.run().await.expect_err("the required section failed");
        assert_eq!(problem.status(), status);
        assert!(
            problem.detail_text().unwrap().contains("policies"),
            "{problem:?}"
        );
    }
}

#[tokio::test]
async fn failed_optional_sections_say_why_and_the_page_answers() {
    let refusing = TestServer::start(Mode::Forbidden).await.downstream("claim");
    let failing = TestServer::start(Mode::Fail).await.downstream("search");
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable =
        dovetail_bff::Downstream::new(dovetail_bff::DownstreamConfig::new("policy", closed))
            .unwrap();
    let context = CallContext::new(Deadline::after(Duration::from_secs(2)));
    let mut page = Composer::new(context.deadline());
    let claims = page.section("claims", refusing.get_json::<Value>(&context, "/claims"));
    let activity = page.section("activity", failing.get_json::<Value>(&context, "/a"));
    let policies = page.section("policies", unreachable.get_json::<Value>(&context, "/p"));
    let done = page.run().await.unwrap();
    assert_eq!(done.take(claims).outcome(), SectionOutcome::Forbidden);
    let activity = done.take(activity);
    assert_eq!(activity.outcome(), SectionOutcome::Unavailable);
    assert!(activity.detail().unwrap().contains("503"), "{activity:?}");
    assert_eq!(done.take(policies).outcome(), SectionOutcome::Unavailable);
}
