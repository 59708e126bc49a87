//! The demo: a newcomer's walk through the system over HTTP — issue a policy, watch the
//! claim service's replica catch up, file a claim, approve and pay it, and see the rules
//! refuse what they should — printing each step.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// What the demo saw, for tests and for the summary.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// The policy it issued.
    pub policy_id: String,
    /// The claim it paid.
    pub claim_id: String,
    /// How long the claim service's replica took to show the issued policy.
    pub replica_lag: Duration,
    /// The refusal of a claim above what the policy pays.
    pub over_limit_refusal: String,
    /// The refusal of a claim on the cancelled policy.
    pub cancelled_refusal: String,
    /// The transcript.
    pub transcript: String,
}

/// Walks through the system at `policy_url` and `claim_url`, writing each step to the
/// report's transcript and to `out`.
///
/// # Errors
/// When a service does not answer as the walk expects; the message says which step.
pub async fn run(
    policy_url: &str,
    claim_url: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<DemoReport> {
    let http = Client::new();
    let mut report = DemoReport::default();
    let mut say = |text: String, report: &mut DemoReport| {
        let _ = writeln!(out, "{text}");
        let _ = writeln!(report.transcript, "{text}");
    };
    let customer = format!(
        "cust-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let today = time::OffsetDateTime::now_utc().date();
    let incident = today.previous_day().unwrap_or(today);
    say(
        format!("Dovetail demo: policy service at {policy_url}, claim service at {claim_url}\n"),
        &mut report,
    );

    say(
        format!("1. Draft a home policy for {customer}: cover 10000.00, deductible 250.00"),
        &mut report,
    );
    let drafted = expect(
        http.post(format!("{policy_url}/policies"))
            .json(&json!({
                "customer_id": customer,
                "product_line": "home",
                "coverage_limit": "10000.00",
                "deductible": "250.00",
                "premium": "480.00",
                "effective_date": incident.replace_year(incident.year() - 1).unwrap_or(incident).to_string(),
                "expiry_date": today.replace_year(today.year() + 1).unwrap_or(today).to_string(),
            }))
            .send()
            .await,
        StatusCode::CREATED,
        "drafting the policy",
    )
    .await?;
    report.policy_id = text(&drafted, "policy_id");
    let policy_id = report.policy_id.clone();
    say(
        format!(
            "   POST /policies -> 201 {policy_id} ({}, version {})",
            text(&drafted, "status"),
            drafted["version"]
        ),
        &mut report,
    );

    say("2. Issue it".to_owned(), &mut report);
    let issued = expect(
        http.post(format!("{policy_url}/policies/{policy_id}/issue"))
            .header("if-match", "\"1\"")
            .send()
            .await,
        StatusCode::OK,
        "issuing the policy",
    )
    .await?;
    let issued_at = Instant::now();
    say(
        format!(
            "   POST /policies/{policy_id}/issue (If-Match \"1\") -> 200 {} (version {})",
            text(&issued, "status"),
            issued["version"]
        ),
        &mut report,
    );

    say(
        "3. The claim service keeps its own copy of policies, fed by policy events".to_owned(),
        &mut report,
    );
    report.replica_lag = wait_for_replica(&http, claim_url, &policy_id, 2)
        .await?
        .max(Duration::ZERO);
    let _ = issued_at;
    say(
        format!(
            "   GET {claim_url}/replica/policies/{policy_id} -> version 2 (active) after {} ms",
            report.replica_lag.as_millis()
        ),
        &mut report,
    );

    say(
        "4. File a claim of 1200.00 with an Idempotency-Key, twice (a client retry)".to_owned(),
        &mut report,
    );
    let key = uuid::Uuid::new_v4().to_string();
    let claim_body = json!({
        "policy_id": policy_id,
        "incident_date": incident.to_string(),
        "amount": "1200.00",
        "description": "water damage from a burst pipe"
    });
    let filed = expect(
        http.post(format!("{claim_url}/claims"))
            .header("idempotency-key", &key)
            .json(&claim_body)
            .send()
            .await,
        StatusCode::CREATED,
        "filing the claim",
    )
    .await?;
    report.claim_id = text(&filed, "claim_id");
    let retried = http
        .post(format!("{claim_url}/claims"))
        .header("idempotency-key", &key)
        .json(&claim_body)
        .send()
        .await?;
    let replayed = retried.headers().get("idempotent-replayed").is_some();
    let retried: Value = retried.json().await?;
    if retried["claim_id"] != filed["claim_id"] {
        bail!("the retried filing created a second claim: {retried}");
    }
    say(
        format!(
            "   POST /claims -> 201 {} ({}); the retry -> the same claim (Idempotent-Replayed: {replayed})",
            report.claim_id,
            text(&filed, "status")
        ),
        &mut report,
    );

    say(
        "5. A claim above what the policy pays is refused".to_owned(),
        &mut report,
    );
    let mut over = claim_body.clone();
    over["amount"] = "9800.00".into();
    report.over_limit_refusal = refusal(
        http.post(format!("{claim_url}/claims"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&over)
            .send()
            .await?,
    )
    .await?;
    say(
        format!("   POST /claims (9800.00) -> {}", report.over_limit_refusal),
        &mut report,
    );

    say(
        "6. Review, approve and pay the claim".to_owned(),
        &mut report,
    );
    let claim_id = report.claim_id.clone();
    for (step, version) in [("review", 1), ("approve", 2), ("pay", 3)] {
        let moved = expect(
            http.post(format!("{claim_url}/claims/{claim_id}/{step}"))
                .header("if-match", format!("\"{version}\""))
                .send()
                .await,
            StatusCode::OK,
            step,
        )
        .await?;
        say(
            format!(
                "   POST /claims/{claim_id}/{step} -> {}",
                text(&moved, "status")
            ),
            &mut report,
        );
    }

    say(
        "7. Cancel the policy; a new claim on it is refused once the replica has the cancellation"
            .to_owned(),
        &mut report,
    );
    expect(
        http.post(format!("{policy_url}/policies/{policy_id}/cancel"))
            .header("if-match", "\"2\"")
            .json(&json!({ "reason": "demo" }))
            .send()
            .await,
        StatusCode::OK,
        "cancelling the policy",
    )
    .await?;
    wait_for_replica(&http, claim_url, &policy_id, 3).await?;
    let mut small = claim_body;
    small["amount"] = "50.00".into();
    report.cancelled_refusal = refusal(
        http.post(format!("{claim_url}/claims"))
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&small)
            .send()
            .await?,
    )
    .await?;
    say(
        format!("   POST /claims -> {}", report.cancelled_refusal),
        &mut report,
    );

    say("\nEvery change above committed with its event through each service's outbox; see /metrics on either service.".to_owned(), &mut report);
    Ok(report)
}

async fn expect(
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

async fn refusal(response: Response) -> anyhow::Result<String> {
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

/// Polls the claim service's replica until it holds `version` of `policy_id`.
async fn wait_for_replica(
    http: &Client,
    claim_url: &str,
    policy_id: &str,
    version: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let response = http
            .get(format!("{claim_url}/replica/policies/{policy_id}"))
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

fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}
