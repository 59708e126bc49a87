//! With the `metrics` feature: each call's latency and outcome, and the breaker's state,
//! labelled by downstream.

use std::time::Duration;

use dovetail_bff::{BreakerConfig, CallContext, Deadline, Downstream, DownstreamConfig};
use serde_json::Value;

use crate::support::{Mode, TestServer};

#[tokio::test]
async fn calls_are_measured_per_downstream() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    dovetail_bff::describe_metrics();

    let server = TestServer::start(Mode::Fail).await;
    let downstream = Downstream::new(DownstreamConfig {
        breaker: BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(60),
        },
        ..server.config("metered")
    })
    .unwrap();
    let cx = CallContext::new(Deadline::after(Duration::from_secs(2)));
    for _ in 0..3 {
        downstream.get_json::<Value>(&cx, "/p").await.unwrap_err();
    }
    let text = handle.render();
    let line = |prefix: &str| {
        text.lines()
            .find(|line| line.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_owned()
    };
    assert!(
        line(r#"dovetail_bff_calls_total{downstream="metered",outcome="unavailable"}"#)
            .ends_with(" 2")
    );
    assert!(
        line(r#"dovetail_bff_calls_total{downstream="metered",outcome="circuit_open"}"#)
            .ends_with(" 1")
    );
    assert!(line(r#"dovetail_bff_breaker_state{downstream="metered"}"#).ends_with(" 2"));
    line(r#"dovetail_bff_call_seconds_count{downstream="metered"}"#);
}
