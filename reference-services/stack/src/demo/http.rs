//! The requests the demo's steps share: an answer expected with its status, a refusal,
//! a write's consistency token, and the waits (each as a caller with a bearer token) for
//! the copies of a policy (through the gateway's page) and for the search index.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, Response, StatusCode};
use serde_json::Value;

/// The JSON body of `response`, the answer to `step`, which must have `status`.
///
/// # Errors
/// When the service did not answer, the answer is not JSON or has another status.
pub(crate) async fn expect(
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

/// The `dovetail-consistency` token of a write's answer; empty without one.
pub(super) fn consistency_token(response: Option<&Response>) -> String {
    response
        .and_then(|response| response.headers().get("dovetail-consistency"))
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Reads the gateway's page of `policy_id` with the consistency `token` of a write (as
/// the caller whose bearer token is `bearer`) until the claim service's copy is `ok` (the
/// gateway waits up to its page budget on each read; 30 s in all); how long that took
/// and the page.
///
/// # Errors
/// When the copy does not get there in time, or the gateway does not answer.
pub(super) async fn wait_for_copies(
    http: &Client,
    gateway: &str,
    bearer: &str,
    policy_id: &str,
    token: &str,
) -> anyhow::Result<(Duration, Value)> {
    let started = Instant::now();
    loop {
        let page = expect(
            http.get(format!("{gateway}/views/policies/{policy_id}"))
                .bearer_auth(bearer)
                .header("dovetail-consistency", token)
                .send()
                .await,
            StatusCode::OK,
            "reading the policy's page",
        )
        .await?;
        if page["copies"]["claim_service"]["status"] == "ok" {
            return Ok((started.elapsed(), page));
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the claim service's copy of {policy_id} did not reach the write within 30 s: \
                 {page}; is its consumer running?"
            );
        }
    }
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
