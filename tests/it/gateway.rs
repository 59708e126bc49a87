//! The gateway in front of the real services, over loopback HTTP: a downstream that
//! hangs, fails or is slow is made real with a fault proxy between a gateway and the
//! service; read-your-writes goes policy → claim replica → search; no identity gets past
//! the gateway that its issuer did not sign.

use std::time::Duration;

use dovetail_gateway::config::{CallTuning, ConsistencyConfig, ServiceUrls};
use dovetail_gateway::{Application, GatewayConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::config::IdentityConfig;
use dovetail_stack::users::Credentials;
use dovetail_stack::{RunningStack, StackConfig};
use dovetail_testkit::fault_proxy::FaultProxy;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

/// A stack on free ports in a fresh directory, with its staff user and a customer of
/// their own, logged in through the stack's gateway.
struct System {
    stack: RunningStack,
    dir: std::path::PathBuf,
    http: Client,
    staff: String,
    customer: String,
    customer_id: String,
}

impl System {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-gateway-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let config = StackConfig {
            relay_poll_interval_ms: 100,
            ..StackConfig::on_free_ports(dir.clone())
        };
        let stack = dovetail_stack::start(&config, Shutdown::new())
            .await
            .unwrap();
        let credentials: Credentials = stack.users.credentials().cloned().unwrap();
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let gateway = format!("http://{}", stack.gateway);
        let staff = log_in(
            &http,
            &gateway,
            &credentials.staff.email,
            &credentials.staff.password,
        )
        .await;
        let (email, password) = (
            format!("gw-{}@example.com", uuid::Uuid::new_v4().simple()),
            uuid::Uuid::new_v4().to_string(),
        );
        let registered = http
            .post(format!("{gateway}/auth/users"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), StatusCode::ACCEPTED);
        let customer = log_in(&http, &gateway, &email, &password).await;
        let me: Value = http
            .get(format!("{gateway}/auth/users/me"))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            customer_id: me["customer_id"].as_str().unwrap().to_owned(),
            stack,
            dir,
            http,
            staff,
            customer,
        }
    }

    fn gateway(&self) -> String {
        format!("http://{}", self.stack.gateway)
    }

    /// Another gateway over the same services, with `tuning`, and `route` (`policy`,
    /// `claim` or `search`) sent through `proxy`.
    async fn gateway_through(
        &self,
        route: &str,
        proxy: &FaultProxy,
        tuning: CallTuning,
    ) -> Gateway {
        let url = |addr: std::net::SocketAddr| format!("http://{addr}");
        let mut services = ServiceUrls {
            auth: url(self.stack.auth),
            policy: url(self.stack.policy),
            claim: url(self.stack.claim),
            search: url(self.stack.search),
        };
        let through = url(proxy.addr());
        match route {
            "policy" => services.policy = through,
            "claim" => services.claim = through,
            "search" => services.search = through,
            other => panic!("no route {other}"),
        }
        let app = Application::build(GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            services,
            identity: IdentityConfig {
                jwks_url: format!("http://{}/.well-known/jwks.json", self.stack.auth),
                ..IdentityConfig::default()
            },
            calls: tuning,
            consistency: ConsistencyConfig {
                secret_file: self.dir.join("gateway-consistency.key"),
            },
        })
        .await
        .unwrap();
        let url = format!("http://{}", app.local_addr());
        let stop = Shutdown::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Gateway { url, stop, task }
    }

    /// A policy of the customer, drafted and issued through the gateway; its id and the
    /// issue's consistency token.
    async fn issued_policy(&self) -> (String, String) {
        let gateway = self.gateway();
        let drafted: Value = self
            .http
            .post(format!("{gateway}/policies"))
            .bearer_auth(&self.customer)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({
                "customer_id": self.customer_id, "product_line": "home",
                "coverage_limit": "10000.00", "deductible": "250.00", "premium": "480.00",
                "effective_date": "2020-01-01", "expiry_date": "2099-01-01",
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let policy_id = drafted["policy_id"].as_str().unwrap().to_owned();
        let issued = self
            .http
            .post(format!("{gateway}/policies/{policy_id}/issue"))
            .bearer_auth(&self.staff)
            .header("if-match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(issued.status(), StatusCode::OK);
        let token = issued.headers()["dovetail-consistency"]
            .to_str()
            .unwrap()
            .to_owned();
        (policy_id, token)
    }

    async fn stop(self) {
        self.stack.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Gateway {
    url: String,
    stop: Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// A GET of `path` exactly as written, over a plain TCP connection; the answer's text.
async fn raw_get(gateway: std::net::SocketAddr, path: &str, bearer: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {gateway}\r\nauthorization: Bearer {bearer}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

async fn log_in(http: &Client, gateway: &str, email: &str, password: &str) -> String {
    let session: Value = http
        .post(format!("{gateway}/auth/sessions"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    session["access_token"].as_str().unwrap().to_owned()
}

/// Short deadlines and no retries unless a test asks for them.
fn tuning() -> CallTuning {
    CallTuning {
        page_budget_ms: 600,
        max_retries: 0,
        breaker_failures: 1000,
        ..CallTuning::default()
    }
}

async fn get(http: &Client, url: &str, bearer: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let response = http.get(url).bearer_auth(bearer).send().await.unwrap();
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_answers_by_its_deadline_when_a_downstream_hangs() {
    let system = System::start().await;
    let proxy = FaultProxy::start(system.stack.search).await;
    proxy.hang();
    let gateway = system.gateway_through("search", &proxy, tuning()).await;

    let url = format!("{}/views/dashboard", gateway.url);
    let (status, page, took) = get(&system.http, &url, &system.customer).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(took < Duration::from_millis(600 + 400), "{took:?}");
    assert_eq!(page["policies"]["status"], "ok", "{page}");
    assert_eq!(page["activity"]["status"], "timeout", "{page}");

    // The caller's own shorter deadline wins, and a hanging required section is a 504.
    let proxy_for_policies = FaultProxy::start(system.stack.policy).await;
    proxy_for_policies.hang();
    let blocked = system
        .gateway_through("policy", &proxy_for_policies, tuning())
        .await;
    let started = Instant::now();
    let response = system
        .http
        .get(format!("{}/views/dashboard", blocked.url))
        .bearer_auth(&system.customer)
        .header("dovetail-deadline-ms", "200")
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(200 + 400));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("x-request-id"));
    blocked.stop().await;
    gateway.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_after_failures_and_closes_after_recovery() {
    let system = System::start().await;
    let proxy = FaultProxy::start(system.stack.search).await;
    let gateway = system
        .gateway_through(
            "search",
            &proxy,
            CallTuning {
                breaker_failures: 3,
                breaker_open_ms: 400,
                ..tuning()
            },
        )
        .await;
    let url = format!("{}/views/dashboard", gateway.url);
    let activity = || async {
        let (status, page, _) = get(&system.http, &url, &system.customer).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        page["activity"]["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(activity().await, "ok");
    proxy.refuse();
    for _ in 0..3 {
        assert_eq!(activity().await, "unavailable");
    }
    let tried = proxy.connections();
    assert_eq!(activity().await, "circuit_open");
    assert_eq!(activity().await, "circuit_open");
    assert_eq!(proxy.connections(), tried, "an open breaker calls nobody");

    proxy.pass();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(activity().await, "ok", "the probe succeeds and closes it");
    assert_eq!(activity().await, "ok");
    gateway.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_is_not_idempotent_is_never_sent_twice() {
    let system = System::start().await;
    let (policy_id, _) = system.issued_policy().await;
    let proxy = FaultProxy::start(system.stack.policy).await;
    proxy.delay(Duration::from_millis(500));
    let gateway = system
        .gateway_through(
            "policy",
            &proxy,
            CallTuning {
                attempt_timeout_ms: 150,
                max_retries: 2,
                ..tuning()
            },
        )
        .await;

    // A cancel (POST, no Idempotency-Key) whose attempt times out: one attempt, a 504.
    let response = system
        .http
        .post(format!("{}/policies/{policy_id}/cancel", gateway.url))
        .bearer_auth(&system.staff)
        .header("if-match", "\"2\"")
        .json(&json!({"reason": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(proxy.connections(), 1, "sent once");

    // A GET that times out is retried (each attempt on a new connection).
    let response = system
        .http
        .get(format!("{}/policies/{policy_id}", gateway.url))
        .bearer_auth(&system.staff)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        proxy.connections() > 2,
        "{} connections",
        proxy.connections()
    );
    gateway.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_the_extra_calls() {
    let system = System::start().await;
    let proxy = FaultProxy::start(system.stack.search).await;
    proxy.refuse();
    let gateway = system
        .gateway_through(
            "search",
            &proxy,
            CallTuning {
                max_retries: 2,
                retry_budget_percent: 20,
                ..tuning()
            },
        )
        .await;
    const CALLS: u64 = 60;
    let url = format!("{}/views/dashboard", gateway.url);
    for _ in 0..CALLS {
        let (status, page, _) = get(&system.http, &url, &system.customer).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(page["activity"]["status"], "unavailable");
    }
    // Without a budget, two retries each would make 3 x 60 = 180 attempts. The budget
    // allows 20% of the calls plus one a second over its ten-second window.
    let attempts = proxy.connections();
    let allowed = CALLS + CALLS / 5 + 10;
    assert!(
        attempts > CALLS && attempts <= allowed,
        "{attempts} attempts for {CALLS} calls; at most {allowed}"
    );
    gateway.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_gives_read_your_writes_across_the_replica_and_the_index() {
    let system = System::start().await;
    let gateway = system.gateway();
    let (policy_id, token) = system.issued_policy().await;

    // With the token, the page waits for both copies: no other wait in between.
    let response = system
        .http
        .get(format!("{gateway}/views/policies/{policy_id}"))
        .bearer_auth(&system.customer)
        .header("dovetail-consistency", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["policy"]["data"]["version"], 2, "{page}");
    for copy in ["claim_service", "search"] {
        assert_eq!(page["copies"][copy]["status"], "ok", "{copy}: {page}");
        assert_eq!(page["copies"][copy]["data"]["version"], 2, "{copy}: {page}");
    }

    // A claim filed through the gateway: the dashboard read with its token lists it.
    let filed = system
        .http
        .post(format!("{gateway}/claims"))
        .bearer_auth(&system.customer)
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(
            &json!({"policy_id": policy_id, "incident_date": "2025-06-01",
                      "amount": "100.00", "description": "a broken window"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(filed.status(), StatusCode::CREATED);
    let claim_token = filed.headers()["dovetail-consistency"]
        .to_str()
        .unwrap()
        .to_owned();
    let claim: Value = filed.json().await.unwrap();
    let response = system
        .http
        .get(format!("{gateway}/views/dashboard"))
        .bearer_auth(&system.customer)
        .header("dovetail-consistency", &claim_token)
        .send()
        .await
        .unwrap();
    let dashboard: Value = response.json().await.unwrap();
    assert_eq!(dashboard["activity"]["status"], "ok", "{dashboard}");
    let claim_document = format!("claim:{}", claim["claim_id"].as_str().unwrap());
    assert!(
        dashboard["activity"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|hit| hit["id"] == claim_document.as_str()),
        "{dashboard}"
    );
    let policies = dashboard["policies"]["data"].as_array().unwrap();
    assert_eq!(
        policies[0]["claims"]["data"][0]["claim_id"],
        claim["claim_id"]
    );

    // A version no copy will reach within the deadline: `stale`, with what they hold.
    let key = dovetail_gateway::secret::load_or_create(&system.dir.join("gateway-consistency.key"))
        .unwrap();
    let ahead = key.sign(&dovetail_bff::ConsistencyToken {
        aggregate: format!("policy/{policy_id}"),
        version: 99,
    });
    let started = Instant::now();
    let page: Value = system
        .http
        .get(format!("{gateway}/views/policies/{policy_id}"))
        .bearer_auth(&system.customer)
        .header("dovetail-consistency", &ahead)
        .header("dovetail-deadline-ms", "500")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500 + 300));
    for copy in ["claim_service", "search"] {
        assert_eq!(page["copies"][copy]["status"], "stale", "{page}");
        assert_eq!(page["copies"][copy]["version"], 2, "{page}");
    }

    // A token changed by the client is refused, not waited on.
    let (payload, signature) = token.split_once('.').unwrap();
    let forged = format!("{payload}x.{signature}");
    let response = system
        .http
        .get(format!("{gateway}/views/policies/{policy_id}"))
        .bearer_auth(&system.customer)
        .header("dovetail-consistency", forged)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_gets_past_the_gateway_unless_the_auth_service_signed_it() {
    let system = System::start().await;
    let gateway = system.gateway();
    let (policy_id, _) = system.issued_policy().await;
    // A key of our own, with the auth service's issuer and every audience.
    let forger = dovetail_testkit::identity::TestIssuer::start().await;
    let mut claims = forger.claims("gateway-service", "u-forged", &["staff"]);
    claims["iss"] = json!(IdentityConfig::default().issuer);
    claims["aud"] = json!([
        "gateway-service",
        "policy-service",
        "claim-service",
        "search-service"
    ]);
    let forged = forger.sign(&claims);
    for path in [
        "/views/dashboard?customer_id=cust-demo".to_owned(),
        "/views/review-queue".to_owned(),
        format!("/views/policies/{policy_id}"),
        format!("/policies/{policy_id}"),
        "/claims?customer_id=cust-demo".to_owned(),
        "/search".to_owned(),
    ] {
        let (status, body, _) = get(&system.http, &format!("{gateway}{path}"), &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        let anonymous = system
            .http
            .get(format!("{gateway}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            anonymous.headers().contains_key("www-authenticate"),
            "{path}"
        );
    }
    // Headers that claim an identity are not passed on: the policy service still sees
    // the customer's own token only.
    let response = system
        .http
        .get(format!("{gateway}/policies?customer_id=cust-demo"))
        .bearer_auth(&system.customer)
        .header("x-dovetail-user", "staff")
        .header("x-dovetail-roles", "staff")
        .header("x-forwarded-for", "10.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The pages check roles from the verified token.
    let (status, _, _) = get(
        &system.http,
        &format!("{gateway}/views/review-queue"),
        &system.customer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(
        &system.http,
        &format!("{gateway}/views/dashboard?customer_id=cust-demo"),
        &system.customer,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body, _) = get(
        &system.http,
        &format!("{gateway}/views/dashboard"),
        &system.staff,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, queue, _) = get(
        &system.http,
        &format!("{gateway}/views/review-queue"),
        &system.staff,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    system.stop().await;
}

#[tokio::test]
async fn the_gateway_serves_one_openapi_document_for_every_route_and_its_metrics() {
    let system = System::start().await;
    let gateway = system.gateway();
    let document: Value = system
        .http
        .get(format!("{gateway}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Every documented GET without path parameters answers something other than the
    // gateway's "no such route".
    for (path, item) in document["paths"].as_object().unwrap() {
        if path.contains('{') || item.get("get").is_none() {
            continue;
        }
        let response = system
            .http
            .get(format!("{gateway}{path}"))
            .bearer_auth(&system.staff)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status != StatusCode::NOT_FOUND
                || !body["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("no route for"),
            "{path}: {status} {body}"
        );
    }
    // A path that would climb out of a passed-on prefix is refused at the door (sent
    // raw: an HTTP client library resolves the dots before sending, as the gateway's own
    // client would before calling the service).
    for path in [
        "/claims/%2e%2e/replica/policies/pol-x",
        "/claims/../replica/policies/pol-x",
    ] {
        let answer = raw_get(system.stack.gateway, path, &system.staff).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    // A body past the gateway's limit is refused at the door, with what to do.
    let response = system
        .http
        .post(format!("{gateway}/claims"))
        .bearer_auth(&system.customer)
        .header("content-type", "application/json")
        .body(vec![b' '; dovetail_gateway::proxy::MAX_BODY_BYTES + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("at most"),
        "{problem}"
    );
    // The review queue called search and policy: the gateway's /metrics has them, per
    // downstream.
    let metrics = system
        .http
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "dovetail_bff_calls_total{downstream=\"search\",outcome=\"ok\"}",
        "dovetail_bff_call_seconds_count{downstream=\"search\"}",
        "dovetail_bff_breaker_state{downstream=\"search\"}",
    ] {
        assert!(metrics.contains(series), "{series} is not in /metrics");
    }
    system.stop().await;
}
