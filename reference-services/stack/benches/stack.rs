//! The stack's figures on embedded backends, in this process: start-to-ready, policy
//! issued to claim-service replica updated (p50/p99, target p99 ≤ 50 ms), and
//! create-policy requests per second with the outbox on, next to the same server's
//! `/healthz` rate (the HTTP ceiling) measured in the same run; and how long after the
//! create load the claim service's replica held every client's last policy (the events
//! left for the consumers), with the rate of policies created and replicated over the
//! load and its catch-up.
//!
//! Run with `cargo bench -p dovetail-stack --bench stack` (or `cargo xtask bench`).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dovetail_service_kit::Shutdown;
use dovetail_stack::StackConfig;
use serde_json::{Value, json};

const LATENCY_SAMPLES: usize = 300;
const ROUNDS: usize = 3;
const LOAD_SECONDS: u64 = 4;
const CLIENTS: usize = 16;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let mut ready = Vec::new();
    let mut lags = Vec::new();
    let mut creates = Vec::new();
    let mut ceilings = Vec::new();
    let mut catch_ups = Vec::new();
    let mut synced = Vec::new();
    for round in 0..ROUNDS {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-stack-bench-{}-{round}",
            std::process::id()
        ));
        let config = StackConfig::on_free_ports(dir.clone());
        let started = Instant::now();
        let stack = dovetail_stack::start(&config, Shutdown::new())
            .await
            .unwrap();
        let http = staff_client(&stack).await;
        let (policy, claim) = (
            format!("http://{}", stack.policy),
            format!("http://{}", stack.claim),
        );
        wait_ready(&http, &policy).await;
        wait_ready(&http, &claim).await;
        ready.push(started.elapsed());

        lags.extend(replica_lags(&http, &policy, &claim).await);
        let load = rate(&http, &policy, true).await;
        let caught_up = catch_up(&http, &claim, &load.last_created).await;
        creates.push(load.rate);
        synced.push(
            load.rate * LOAD_SECONDS as f64 / (LOAD_SECONDS as f64 + caught_up.as_secs_f64()),
        );
        catch_ups.push(caught_up);
        ceilings.push(rate(&http, &policy, false).await.rate);
        stack.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
    lags.sort();
    ready.sort();
    println!("stack benchmark ({ROUNDS} rounds, embedded backends, one process)");
    println!(
        "  start to ready: median {:.1} ms (rounds: {:?})",
        ms(ready[ready.len() / 2]),
        ready
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
    );
    println!(
        "  policy issued -> claim replica updated ({} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 <= 50 ms)",
        lags.len(),
        ms(lags[lags.len() / 2]),
        ms(lags[lags.len() * 99 / 100]),
        ms(lags[lags.len() - 1])
    );
    let ratios: Vec<f64> = creates.iter().zip(&ceilings).map(|(c, h)| c / h).collect();
    println!(
        "  create policy ({CLIENTS} clients, outbox on): median {:.0} req/s; GET /healthz on the same server: median {:.0} req/s; ratio median {:.2} (rounds {:?})",
        median(creates.clone()),
        median(ceilings.clone()),
        median(ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>()
    );
    catch_ups.sort();
    println!(
        "  after the create load, the claim replica caught up in: median {:.0} ms (rounds {:?}); created and replicated: median {:.0} policies/s",
        ms(catch_ups[catch_ups.len() / 2]),
        catch_ups
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>(),
        median(synced)
    );
}

/// Issues policies one at a time and measures, for each, the time from sending the issue
/// request to the claim service's replica applying it (its `replicated_at_ms`).
async fn replica_lags(http: &reqwest::Client, policy: &str, claim: &str) -> Vec<Duration> {
    let mut lags = Vec::with_capacity(LATENCY_SAMPLES);
    for n in 0..LATENCY_SAMPLES {
        let drafted: Value = http
            .post(format!("{policy}/policies"))
            .json(&terms(&format!("lag-{n}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = drafted["policy_id"].as_str().unwrap();
        let sent_ms = now_ms();
        let issued = http
            .post(format!("{policy}/policies/{id}/issue"))
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(issued.status(), 200);
        loop {
            if let Some(copy) = replica_copy(http, claim, id).await
                && copy["policy"]["version"] == 2
            {
                let applied = copy["replicated_at_ms"].as_u64().unwrap();
                lags.push(Duration::from_millis(applied.saturating_sub(sent_ms)));
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    lags
}

/// What a load of `LOAD_SECONDS` did: requests per second, and the id of the last policy
/// each client created (none when it read `/healthz`).
struct Load {
    rate: f64,
    last_created: Vec<String>,
}

/// Requests per second from `CLIENTS` concurrent clients for `LOAD_SECONDS`: creating
/// policies, or reading `/healthz`.
async fn rate(http: &reqwest::Client, policy: &str, create: bool) -> Load {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECONDS);
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, policy, done) = (http.clone(), policy.to_owned(), Arc::clone(&done));
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            let mut last_created = None;
            while Instant::now() < deadline {
                n += 1;
                let status = if create {
                    let response = http
                        .post(format!("{policy}/policies"))
                        .json(&terms(&format!("load-{client}-{n}")))
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    let created: Value = response.json().await.unwrap();
                    last_created = created["policy_id"].as_str().map(str::to_owned);
                    status
                } else {
                    http.get(format!("{policy}/healthz"))
                        .send()
                        .await
                        .unwrap()
                        .status()
                };
                assert!(status.is_success(), "{status}");
                done.fetch_add(1, Ordering::Relaxed);
            }
            last_created
        }));
    }
    let mut last_created = Vec::new();
    for client in clients {
        last_created.extend(client.await.unwrap());
    }
    Load {
        rate: done.load(Ordering::Relaxed) as f64 / LOAD_SECONDS as f64,
        last_created,
    }
}

/// The claim service's replica of policy `id`, if it has one yet.
async fn replica_copy(http: &reqwest::Client, claim: &str, id: &str) -> Option<Value> {
    let response = http
        .get(format!("{claim}/replica/policies/{id}"))
        .send()
        .await
        .unwrap();
    if response.status() == 200 {
        Some(response.json().await.unwrap())
    } else {
        None
    }
}

/// How long after a load the claim service's replica holds the last policy every client
/// created: the events the load left for the consumers to catch up on.
async fn catch_up(http: &reqwest::Client, claim: &str, last_created: &[String]) -> Duration {
    let started = Instant::now();
    for id in last_created {
        loop {
            if replica_copy(http, claim, id).await.is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the replica did not catch up in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    started.elapsed()
}

/// A client that sends the stack's staff user's bearer token (every API wants one).
async fn staff_client(stack: &dovetail_stack::RunningStack) -> reqwest::Client {
    let staff = stack.users.credentials().cloned().unwrap().staff;
    let session: Value = reqwest::Client::new()
        .post(format!("http://{}/sessions", stack.auth))
        .json(&json!({"email": staff.email, "password": staff.password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", session["access_token"].as_str().unwrap());
    headers.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    while !http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn terms(customer: &str) -> Value {
    json!({
        "customer_id": customer, "product_line": "home", "coverage_limit": "10000.00",
        "deductible": "250.00", "premium": "120.00", "effective_date": "2026-01-01",
        "expiry_date": "2099-12-31"
    })
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
