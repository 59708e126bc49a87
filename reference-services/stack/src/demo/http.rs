//! The requests the demo's steps share: an answer expected with its status, a refusal,
//! and the waits (each as a caller with a bearer token) for the claim service's replica and the search service's index.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// The JSON body of `response`, the answer to `step`, which must have `status`.
///
/// # Errors
/// When the service did not answer, the answer is not JSON or has another status.
pub(super) async fn expect(
    response: reqwest::Result<Response>,
    status: StatusCode,
    step: &str,
) -> anyhow::Result<Value> {
    let response = response.with_context(|| format!("{step}: the service did not answer"))?;
    let actual = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{step}: the answer is not JSON"))?;
    if actual != status {
        bail!("{step}: expected {status}, got {actual}: {body}");
    }
    Ok(body)
}

/// The refusal `response` holds, as `status title: detail`.
///
/// # Errors
/// When the answer is not JSON, or a success.
pub(super) async fn refusal(response: Response) -> anyhow::Result<String> {
    let status = response.status();
    let body: Value = response.json().await?;
    if status.is_success() {
        bail!("expected a refusal, got {status}: {body}");
    }
    Ok(format!(
        "{} {}: {}",
        status.as_u16(),
        text(&body, "title"),
        text(&body, "detail")
    ))
}

/// Polls the claim service's replica (as the caller whose bearer token is `token`) until
/// it holds `version` of `policy_id`, for at most 30 s; how long that took.
///
/// # Errors
/// When the replica does not get there in time, or the service does not answer.
pub(super) async fn wait_for_replica(
    http: &Client,
    claim_url: &str,
    token: &str,
    policy_id: &str,
    version: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let response = http
            .get(format!("{claim_url}/replica/policies/{policy_id}"))
            .bearer_auth(token)
            .send()
            .await?;
        if response.status() == StatusCode::OK {
            let copy: Value = response.json().await?;
            if copy["policy"]["version"].as_u64() >= Some(version) {
                return Ok(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bail!(
        "the claim service's replica did not reach version {version} of {policy_id} within 30 s; is its consumer running?"
    )
}

/// Searches `uri` as the caller whose bearer token is `token` until `done` holds of the hits (the index is refreshed
/// about once a second on OpenSearch), for at most 30 s; the hits.
///
/// # Errors
/// When the hits do not get there in time, or the service does not answer.
pub(super) async fn wait_for_search(
    http: &Client,
    uri: &str,
    token: &str,
    done: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let started = Instant::now();
    loop {
        let page = expect(
            http.get(uri).bearer_auth(token).send().await,
            StatusCode::OK,
            "searching",
        )
        .await?;
        let hits = page["items"].as_array().cloned().unwrap_or_default();
        if done(&hits) {
            return Ok(hits);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the search service did not show the walk-through within 30 s at {uri}: {page}; is its consumer running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The string `field` of `body`; empty when it is missing or not a string.
pub(super) fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}
