//! The stack is SIGKILLed again and again while policies are issued and claims filed:
//! after a last restart every acknowledged write is there, every issued policy reaches the
//! claim service's replica, and the replica never holds a version the policy service
//! does not (no event of a write that did not commit was published); the search service's
//! index ends with every policy and claim at its owner's version, never above it.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dovetail_service_kit::Shutdown;
use dovetail_stack::StackConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const ROUNDS: usize = 8;

/// Where the stack's services answer.
#[derive(Debug, Clone)]
struct Urls {
    policy: String,
    claim: String,
    search: String,
    auth: String,
}

/// What the clients were told succeeded.
#[derive(Debug, Default)]
struct Acknowledged {
    /// Policies whose issue was answered 200.
    issued: Vec<String>,
    /// Claims whose filing was answered 201, with their policy.
    claims: Vec<(String, String)>,
}

#[test]
#[ignore = "the child process of the kill test, started by it; not a test on its own"]
fn stack_child_process() {
    // Die with the test that started this process, whatever way it ends.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).unwrap();
    let dir = std::env::var("DOVETAIL_KILL_DIR").expect("started by the kill test");
    let port = |name: &str| std::env::var(name).unwrap().parse::<u16>().unwrap();
    let config = StackConfig {
        data_dir: dir.into(),
        policy_port: port("DOVETAIL_KILL_POLICY_PORT"),
        claim_port: port("DOVETAIL_KILL_CLAIM_PORT"),
        search_port: port("DOVETAIL_KILL_SEARCH_PORT"),
        auth_port: port("DOVETAIL_KILL_AUTH_PORT"),
        gateway_port: port("DOVETAIL_KILL_GATEWAY_PORT"),
        relay_poll_interval_ms: 100,
        ..StackConfig::default()
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let shutdown = Shutdown::new();
        dovetail_service_kit::shutdown_on_signal(shutdown.clone());
        dovetail_stack::start(&config, shutdown)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_killed_mid_flow_loses_nothing_it_acknowledged() {
    let dir = std::env::temp_dir().join(format!("dovetail-kill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let urls = Urls {
        policy: format!("http://127.0.0.1:{}", ports[0]),
        claim: format!("http://127.0.0.1:{}", ports[1]),
        search: format!("http://127.0.0.1:{}", ports[2]),
        auth: format!("http://127.0.0.1:{}", ports[3]),
    };
    // Staff, logged in after the first start; the token outlives the kills (the keys are
    // kept in the data directory).
    let mut http = reqwest::Client::new();
    let mut acknowledged = Acknowledged::default();

    for round in 0..ROUNDS {
        let mut child = spawn_stack(&dir, ports);
        wait_healthy(&http, &urls).await;
        if round == 0 {
            let credentials = dovetail_stack::users::Credentials::read(
                &dovetail_stack::users::Credentials::path_in(&dir),
            )
            .unwrap();
            http = crate::stack::staff_client(&urls.auth, &credentials).await;
        }
        let deadline = Instant::now() + Duration::from_millis(150 + random_below(450));
        let mut n = 0;
        while Instant::now() < deadline {
            n += 1;
            if !work_once(&http, &urls, &format!("r{round}-{n}"), &mut acknowledged).await {
                break;
            }
        }
        child.signal(Signal::SIGKILL);
    }
    assert!(
        acknowledged.issued.len() >= ROUNDS,
        "the workload made progress: {acknowledged:?}"
    );

    let mut child = spawn_stack(&dir, ports);
    wait_healthy(&http, &urls).await;
    let versions = verify(&http, &urls, &acknowledged).await;
    let indexed = verify_search(&http, &urls, &versions).await;
    let status = child.signal(Signal::SIGTERM);
    assert!(
        status.success(),
        "a SIGTERM drains and exits cleanly: {status}"
    );
    println!(
        "{ROUNDS} kills: {} issued policies and {} claims acknowledged, all present; {} policies replicated; {indexed} documents indexed at their owners' versions",
        acknowledged.issued.len(),
        acknowledged.claims.len(),
        versions.policies.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// One step of the workload: draft and issue a policy, and file a claim on an earlier
/// one. Returns false once the stack stopped answering.
async fn work_once(
    http: &reqwest::Client,
    urls: &Urls,
    name: &str,
    acknowledged: &mut Acknowledged,
) -> bool {
    let drafted = http
        .post(format!("{}/policies", urls.policy))
        .header("idempotency-key", name)
        .json(&json!({
            "customer_id": "cust-kill", "product_line": "home", "coverage_limit": "5000.00",
            "deductible": "100.00", "premium": "50.00", "effective_date": "2026-01-01",
            "expiry_date": "2099-12-31"
        }))
        .send()
        .await;
    let Ok(drafted) = drafted else { return false };
    let Ok(drafted) = drafted.json::<Value>().await else {
        return false;
    };
    let id = drafted["policy_id"].as_str().unwrap().to_owned();
    let issued = http
        .post(format!("{}/policies/{id}/issue", urls.policy))
        .header("if-match", "\"1\"")
        .send()
        .await;
    match issued {
        Ok(response) if response.status() == 200 => acknowledged.issued.push(id),
        Ok(response) => panic!("issuing {id}: {}", response.status()),
        Err(_) => return false,
    }
    let Some(earlier) = acknowledged.issued.iter().rev().nth(3).cloned() else {
        return true;
    };
    for _ in 0..50 {
        let filed = http
            .post(format!("{}/claims", urls.claim))
            .header("idempotency-key", format!("claim-{name}"))
            .json(&json!({
                "policy_id": earlier, "incident_date": "2026-02-01", "amount": "100.00",
                "description": "kill test"
            }))
            .send()
            .await;
        match filed {
            Ok(response) if response.status() == 201 => {
                let claim: Value = response.json().await.unwrap();
                acknowledged
                    .claims
                    .push((claim["claim_id"].as_str().unwrap().to_owned(), earlier));
                return true;
            }
            // The replica has not seen the policy (or its issue) yet: the documented retry.
            Ok(response) if response.status() == 409 || response.status() == 422 => {
                let problem: Value = response.json().await.unwrap();
                let detail = problem["detail"].as_str().unwrap_or_default();
                assert!(
                    detail.contains("yet") || detail.contains("moments ago"),
                    "filing on {earlier} refused for another reason than replica lag: {problem}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(response) => panic!(
                "filing on {earlier}: {} {:?}",
                response.status(),
                response.text().await
            ),
            Err(_) => return false,
        }
    }
    true
}

/// The versions the owners hold of the acknowledged policies and claims.
#[derive(Debug, Default)]
struct Versions {
    policies: BTreeMap<String, u64>,
    claims: BTreeMap<String, u64>,
}

/// Every acknowledged write is there and every issued policy reached the replica at the
/// policy service's version, never above it. Returns the owners' versions.
async fn verify(http: &reqwest::Client, urls: &Urls, acknowledged: &Acknowledged) -> Versions {
    let mut versions = BTreeMap::new();
    let mut claim_versions = BTreeMap::new();
    for id in &acknowledged.issued {
        let policy: Value = http
            .get(format!("{}/policies/{id}", urls.policy))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            policy["status"], "active",
            "acknowledged issue of {id} was lost: {policy}"
        );
        versions.insert(id.clone(), policy["version"].as_u64().unwrap());
    }
    for (claim, policy) in &acknowledged.claims {
        let response = http
            .get(format!("{}/claims/{claim}", urls.claim))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "acknowledged claim {claim} was lost"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["policy_id"].as_str(), Some(policy.as_str()));
        claim_versions.insert(claim.clone(), body["version"].as_u64().unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, version) in &versions {
        loop {
            let response = http
                .get(format!("{}/replica/policies/{id}", urls.claim))
                .send()
                .await
                .unwrap();
            let replicated = if response.status() == 200 {
                response.json::<Value>().await.unwrap()["policy"]["version"].as_u64()
            } else {
                None
            };
            if let Some(replicated) = replicated {
                assert!(
                    replicated <= *version,
                    "the replica has version {replicated} of {id}, the policy service {version}"
                );
                if replicated == *version {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "policy {id} never reached the replica at version {version}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Versions {
        policies: versions,
        claims: claim_versions,
    }
}

/// The search index ends with every acknowledged policy and claim at its owner's version,
/// and never holds a version above it. Returns how many documents it checked.
async fn verify_search(http: &reqwest::Client, urls: &Urls, versions: &Versions) -> usize {
    let expected: BTreeMap<String, u64> = versions
        .policies
        .iter()
        .map(|(id, version)| (format!("policy:{id}"), *version))
        .chain(
            versions
                .claims
                .iter()
                .map(|(id, version)| (format!("claim:{id}"), *version)),
        )
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let indexed = indexed_versions(http, &urls.search).await;
        let mut missing = Vec::new();
        for (id, version) in &expected {
            match indexed.get(id) {
                Some(held) => {
                    assert!(
                        held <= version,
                        "the index has version {held} of {id}, its owner {version}"
                    );
                    if held < version {
                        missing.push(format!("{id} at {held} of {version}"));
                    }
                }
                None => missing.push(format!("{id} absent")),
            }
        }
        if missing.is_empty() {
            return expected.len();
        }
        assert!(
            Instant::now() < deadline,
            "the search index never caught up: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every document of the index (`http` is staff's client), by id: its version.
async fn indexed_versions(http: &reqwest::Client, search: &str) -> BTreeMap<String, u64> {
    let mut indexed = BTreeMap::new();
    let mut uri = format!("{search}/search?limit=100&sort=date");
    loop {
        let page: Value = http.get(&uri).send().await.unwrap().json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            indexed.insert(
                item["id"].as_str().unwrap().to_owned(),
                item["version"].as_u64().unwrap(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => uri = format!("{search}/search?limit=100&sort=date&cursor={cursor}"),
            None => return indexed,
        }
    }
}

/// The stack's process; killed when dropped (a failed assertion must not leave it running).
struct StackProcess(Child);

impl StackProcess {
    fn signal(&mut self, signal: Signal) -> std::process::ExitStatus {
        kill(Pid::from_raw(i32::try_from(self.0.id()).unwrap()), signal).unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for StackProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_stack(dir: &Path, ports: [u16; 5]) -> StackProcess {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stack_kill::stack_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("DOVETAIL_KILL_DIR", dir)
        .env("DOVETAIL_KILL_POLICY_PORT", ports[0].to_string())
        .env("DOVETAIL_KILL_CLAIM_PORT", ports[1].to_string())
        .env("DOVETAIL_KILL_SEARCH_PORT", ports[2].to_string())
        .env("DOVETAIL_KILL_AUTH_PORT", ports[3].to_string())
        .env("DOVETAIL_KILL_GATEWAY_PORT", ports[4].to_string())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    StackProcess(child)
}

async fn wait_healthy(http: &reqwest::Client, urls: &Urls) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut ready = true;
        for url in [&urls.policy, &urls.claim, &urls.search, &urls.auth] {
            let answer = http.get(format!("{url}/readyz")).send().await;
            ready &= matches!(answer, Ok(answer) if answer.status() == 200);
        }
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "the stack did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn random_below(bound: u64) -> u64 {
    u64::try_from(uuid::Uuid::new_v4().as_u128() % u128::from(bound)).unwrap()
}
