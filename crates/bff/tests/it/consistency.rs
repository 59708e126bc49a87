//! Read-your-writes against a replica on loopback that catches up one version per call.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use dovetail_bff::{
    CallContext, Composer, ConsistencyKey, ConsistencyToken, Deadline, Downstream,
    DownstreamConfig, Need, SectionOutcome, await_version,
};
use serde_json::{Value, json};

async fn replica(step: u64) -> Downstream {
    let version = Arc::new(AtomicU64::new(1));
    let app = Router::new()
        .route(
            "/version",
            get(move |State(version): State<Arc<AtomicU64>>| async move {
                Json(json!({ "version": version.fetch_add(step, Ordering::SeqCst) }))
            }),
        )
        .route("/claims", get(|| async { Json(json!(["clm-1"])) }))
        .with_state(version);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Downstream::new(DownstreamConfig::new("claim", url)).unwrap()
}

async fn read(claim: &Downstream, token: &str, key: &ConsistencyKey) -> (SectionOutcome, Value) {
    let written = key.verify(token).unwrap();
    let cx = CallContext::new(Deadline::after(Duration::from_millis(400)));
    let mut page = Composer::new(cx.deadline());
    let claims = page.section_with("claims", Need::Optional, async {
        // Wait for the replica until 100 ms before the deadline, then read whatever it has.
        let until = Deadline::at(cx.deadline().instant() - Duration::from_millis(100));
        let seen = await_version(
            until,
            written.version,
            Duration::from_millis(10),
            || async {
                let answer: Value = claim.get_json(&cx, "/version").await?;
                Ok(answer["version"].as_u64().unwrap_or(0))
            },
        )
        .await;
        match seen {
            Ok(seen) => match claim.get_json::<Value>(&cx, "/claims").await {
                Ok(data) => seen.section(data),
                Err(error) => dovetail_bff::Section::failed(error.outcome(), error.to_string()),
            },
            Err(error) => dovetail_bff::Section::failed(error.outcome(), error.to_string()),
        }
    });
    let done = page.run().await.unwrap();
    let section = done.take(claims);
    (section.outcome(), serde_json::to_value(&section).unwrap())
}

#[tokio::test]
async fn a_read_with_a_token_waits_for_the_replica_or_answers_stale_with_what_it_saw() {
    let key = ConsistencyKey::new(&[9; 32]).unwrap();
    let token = key.sign(&ConsistencyToken {
        aggregate: "claim/clm-1".into(),
        version: 4,
    });

    let (outcome, json) = read(&replica(1).await, &token, &key).await;
    assert_eq!(outcome, SectionOutcome::Ok, "{json}");
    assert_eq!(json["data"], json!(["clm-1"]));

    // A replica that never catches up: stale, with the version it has, and the data.
    let (outcome, json) = read(&replica(0).await, &token, &key).await;
    assert_eq!(outcome, SectionOutcome::Stale { version: 1 }, "{json}");
    assert_eq!(json["status"], "stale");
    assert_eq!(json["version"], 1);
    assert_eq!(json["data"], json!(["clm-1"]));
}
