//! The gateway's figures on the embedded stack, in this process, in interleaved rounds:
//!
//! - the composed dashboard (policies, claims and search in parallel) against the same
//!   three calls made one after another by a client straight to the services: p50 and
//!   p99 of each, and the composed p99 against the slowest single downstream's p99
//!   (target ≤ 1.2×);
//! - what the gateway adds to a proxied call: `GET /policies/{id}` through it against
//!   the same call straight to the policy service (target ≤ 1 ms at p50).
//!
//! Run with `cargo bench -p dovetail-stack --bench gateway`.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::cast_precision_loss)]

use std::time::{Duration, Instant};

use dovetail_service_kit::Shutdown;
use dovetail_stack::StackConfig;
use serde_json::{Value, json};

const ROUNDS: usize = 7;
const SAMPLES: usize = 200;
const POLICIES: usize = 3;
const CLAIMS_PER_POLICY: usize = 2;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

struct Round {
    composed: Vec<Duration>,
    sequential: Vec<Duration>,
    singles: [Vec<Duration>; 3],
    proxied: Vec<Duration>,
    direct: Vec<Duration>,
}

async fn run() {
    let dir = std::env::temp_dir().join(format!("dovetail-gateway-bench-{}", std::process::id()));
    let config = StackConfig {
        relay_poll_interval_ms: 100,
        ..StackConfig::on_free_ports(dir.clone())
    };
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let gateway = format!("http://{}", stack.gateway);
    let services = [
        format!("http://{}", stack.policy),
        format!("http://{}", stack.claim),
        format!("http://{}", stack.search),
    ];
    let credentials = stack.users.credentials().cloned().unwrap();
    let staff = log_in(
        &http,
        &gateway,
        &credentials.staff.email,
        &credentials.staff.password,
    )
    .await;
    let (customer, customer_id) = new_customer(&http, &gateway).await;
    let policy_id = seed(&http, &gateway, &staff, &customer, &customer_id).await;

    let paths = [
        format!("/policies?customer_id={customer_id}&limit=100"),
        format!("/claims?customer_id={customer_id}&limit=100"),
        format!("/search?customer_id={customer_id}&sort=-date&limit=10"),
    ];
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        let mut round = Round {
            composed: Vec::new(),
            sequential: Vec::new(),
            singles: [Vec::new(), Vec::new(), Vec::new()],
            proxied: Vec::new(),
            direct: Vec::new(),
        };
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let page = ok(&http, &format!("{gateway}/views/dashboard"), &customer).await;
            round.composed.push(started.elapsed());
            assert_eq!(page["activity"]["status"], "ok", "{page}");

            let started = Instant::now();
            for (at, (service, path)) in services.iter().zip(&paths).enumerate() {
                let one = Instant::now();
                ok(&http, &format!("{service}{path}"), &customer).await;
                round.singles[at].push(one.elapsed());
            }
            round.sequential.push(started.elapsed());

            let started = Instant::now();
            ok(&http, &format!("{gateway}/policies/{policy_id}"), &customer).await;
            round.proxied.push(started.elapsed());
            let started = Instant::now();
            ok(
                &http,
                &format!("{}/policies/{policy_id}", services[0]),
                &customer,
            )
            .await;
            round.direct.push(started.elapsed());
        }
        rounds.push(round);
    }
    stack.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
    report(rounds);
}

fn report(mut rounds: Vec<Round>) {
    let mut ratios = Vec::new();
    let mut overheads = Vec::new();
    let mut lines = Vec::new();
    for round in &mut rounds {
        let slowest = round
            .singles
            .iter_mut()
            .map(|single| percentile(single, 99))
            .fold(0.0, f64::max);
        let composed_p99 = percentile(&mut round.composed, 99);
        ratios.push(composed_p99 / slowest);
        overheads.push(percentile(&mut round.proxied, 50) - percentile(&mut round.direct, 50));
        lines.push((
            percentile(&mut round.composed, 50),
            composed_p99,
            percentile(&mut round.sequential, 50),
            percentile(&mut round.sequential, 99),
            slowest,
        ));
    }
    let column =
        |pick: fn(&(f64, f64, f64, f64, f64)) -> f64| median(lines.iter().map(pick).collect());
    println!(
        "gateway benchmark ({ROUNDS} interleaved rounds of {SAMPLES}, embedded stack, one process; \
         medians of the rounds)"
    );
    println!(
        "  dashboard composed (3 calls in parallel): p50 {:.2} ms, p99 {:.2} ms",
        column(|l| l.0),
        column(|l| l.1)
    );
    println!(
        "  the same 3 calls one after another:      p50 {:.2} ms, p99 {:.2} ms",
        column(|l| l.2),
        column(|l| l.3)
    );
    println!(
        "  slowest single downstream p99 {:.2} ms; composed p99 / slowest p99: median {:.2} \
         (target <= 1.2; rounds {:?})",
        column(|l| l.4),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    println!(
        "  proxied GET /policies/{{id}} minus direct, at p50: median {:.3} ms (target <= 1 ms; \
         rounds {:?})",
        median(overheads.clone()),
        overheads
            .iter()
            .map(|o| format!("{o:.3}"))
            .collect::<Vec<_>>()
    );
}

async fn ok(http: &reqwest::Client, url: &str, bearer: &str) -> Value {
    let response = http.get(url).bearer_auth(bearer).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

async fn log_in(http: &reqwest::Client, gateway: &str, email: &str, password: &str) -> String {
    let session: Value = http
        .post(format!("{gateway}/auth/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    session["access_token"].as_str().unwrap().to_owned()
}

async fn new_customer(http: &reqwest::Client, gateway: &str) -> (String, String) {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = uuid::Uuid::new_v4().to_string();
    http.post(format!("{gateway}/auth/users"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let token = log_in(http, gateway, &email, &password).await;
    let me = ok(http, &format!("{gateway}/auth/users/me"), &token).await;
    (token, me["customer_id"].as_str().unwrap().to_owned())
}

/// The customer's policies, issued, each with claims, all indexed; one policy's id.
async fn seed(
    http: &reqwest::Client,
    gateway: &str,
    staff: &str,
    customer: &str,
    customer_id: &str,
) -> String {
    let mut first = None;
    let mut last_token = String::new();
    for _ in 0..POLICIES {
        let drafted: Value = http
            .post(format!("{gateway}/policies"))
            .bearer_auth(customer)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({
                "customer_id": customer_id, "product_line": "home",
                "coverage_limit": "10000.00", "deductible": "250.00", "premium": "480.00",
                "effective_date": "2020-01-01", "expiry_date": "2099-01-01",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = drafted["policy_id"].as_str().unwrap().to_owned();
        let issued = http
            .post(format!("{gateway}/policies/{id}/issue"))
            .bearer_auth(staff)
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap();
        let token = issued.headers()["dovetail-consistency"]
            .to_str()
            .unwrap()
            .to_owned();
        // Read-your-writes: the page waits until the claim service has the policy.
        let page: Value = http
            .get(format!("{gateway}/views/policies/{id}"))
            .bearer_auth(customer)
            .header("dovetail-consistency", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["copies"]["claim_service"]["status"], "ok", "{page}");
        for n in 0..CLAIMS_PER_POLICY {
            let filed = http
                .post(format!("{gateway}/claims"))
                .bearer_auth(customer)
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&json!({"policy_id": id, "incident_date": "2025-06-01",
                              "amount": format!("{}.00", 100 + n), "description": "hail"}))
                .send()
                .await
                .unwrap();
            assert!(filed.status().is_success(), "{}", filed.status());
            last_token = filed.headers()["dovetail-consistency"]
                .to_str()
                .unwrap()
                .to_owned();
        }
        first.get_or_insert(id);
    }
    // The last claim indexed, the dashboard's activity is complete.
    let dashboard: Value = http
        .get(format!("{gateway}/views/dashboard"))
        .bearer_auth(customer)
        .header("dovetail-consistency", last_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dashboard["activity"]["status"], "ok", "{dashboard}");
    first.unwrap()
}

/// The `p`th percentile of `samples`, in milliseconds.
fn percentile(samples: &mut [Duration], p: usize) -> f64 {
    samples.sort();
    let at = (samples.len() * p / 100).min(samples.len() - 1);
    samples[at].as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
