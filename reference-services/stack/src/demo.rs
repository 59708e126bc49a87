//! The demo: a newcomer's walk through the system over HTTP — issue a policy, watch the
//! claim service's replica catch up, file a claim, approve and pay it, see the rules
//! refuse what they should, and find it all in the search service, within the customer's
//! scope — printing each step.

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
    /// What the customer found searching for the claim's words: `id status` of each hit.
    pub customer_search: Vec<String>,
    /// How many hits another customer got for the same words (none: the scope).
    pub other_customer_hits: usize,
    /// The transcript.
    pub transcript: String,
}

/// Where the services the demo walks through answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The policy service's base URL, such as `http://127.0.0.1:8081`.
    pub policy: String,
    /// The claim service's.
    pub claim: String,
    /// The search service's.
    pub search: String,
}

impl Services {
    /// The stack's fixed ports on this machine.
    pub fn local() -> Self {
        Self::at(
            &format!("127.0.0.1:{}", crate::POLICY_PORT),
            &format!("127.0.0.1:{}", crate::CLAIM_PORT),
            &format!("127.0.0.1:{}", crate::SEARCH_PORT),
        )
    }

    /// Those of a stack started in this process.
    pub fn of(stack: &crate::RunningStack) -> Self {
        Self::at(
            &stack.policy.to_string(),
            &stack.claim.to_string(),
            &stack.search.to_string(),
        )
    }

    fn at(policy: &str, claim: &str, search: &str) -> Self {
        Self {
            policy: format!("http://{policy}"),
            claim: format!("http://{claim}"),
            search: format!("http://{search}"),
        }
    }
}

/// Walks through the system at `services`, writing each step to the report's transcript
/// and to `out`.
///
/// # Errors
/// When a service does not answer as the walk expects; the message says which step.
pub async fn run(services: &Services, out: &mut dyn std::io::Write) -> anyhow::Result<DemoReport> {
    let (policy_url, claim_url, search_url) = (
        services.policy.as_str(),
        services.claim.as_str(),
        services.search.as_str(),
    );
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
        format!(
            "Dovetail demo: policy service at {policy_url}, claim service at {claim_url}, \
             search service at {search_url}\n"
        ),
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

    say(
        format!(
            "8. Search as {customer} for \"burst pipe\": the search service built its index from \
             the events alone"
        ),
        &mut report,
    );
    let words = "burst%20pipe";
    let found = wait_for_search(
        &http,
        &format!("{search_url}/search?q={words}"),
        &customer,
        |hits| {
            hits.iter()
                .any(|hit| hit["id"] == format!("claim:{claim_id}") && hit["status"] == "paid")
        },
    )
    .await?;
    for hit in &found {
        let line = format!("{} {}", text(hit, "id"), text(hit, "status"));
        say(
            format!(
                "   GET /search?q=burst pipe (X-Dovetail-Customer: {customer}) -> {line}: {}",
                hit["highlights"][0].as_str().unwrap_or_default()
            ),
            &mut report,
        );
        report.customer_search.push(line);
    }
    let policies = wait_for_search(
        &http,
        &format!("{search_url}/search?type=policy&status=cancelled"),
        &customer,
        |hits| {
            hits.iter()
                .any(|hit| hit["id"] == format!("policy:{policy_id}"))
        },
    )
    .await?;
    say(
        format!(
            "   GET /search?type=policy&status=cancelled -> {}",
            policies
                .iter()
                .map(|hit| text(hit, "id"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &mut report,
    );
    let stranger = expect(
        http.get(format!("{search_url}/search?q={words}"))
            .header("x-dovetail-customer", "cust-someone-else")
            .send()
            .await,
        StatusCode::OK,
        "searching as another customer",
    )
    .await?;
    report.other_customer_hits = stranger["items"].as_array().map_or(0, Vec::len);
    say(
        format!(
            "   the same search as another customer -> {} hits (the scope is inside the index query)",
            report.other_customer_hits
        ),
        &mut report,
    );

    say("\nEvery change above committed with its event through each service's outbox; see /metrics on any service.".to_owned(), &mut report);
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

/// Searches `uri` as `customer` until `done` holds of the hits (the index is refreshed
/// about once a second on OpenSearch), for at most 30 s; the hits.
async fn wait_for_search(
    http: &Client,
    uri: &str,
    customer: &str,
    done: impl Fn(&[Value]) -> bool,
) -> anyhow::Result<Vec<Value>> {
    let started = Instant::now();
    loop {
        let page = expect(
            http.get(uri)
                .header("x-dovetail-customer", customer)
                .send()
                .await,
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

fn text(body: &Value, field: &str) -> String {
    body[field].as_str().unwrap_or_default().to_owned()
}
