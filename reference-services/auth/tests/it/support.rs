//! An auth service on port 0 in a temporary directory, an HTTP client for it, a
//! subscription that collects the events it publishes, and a verifier that fetches its
//! JWKS over HTTP as another service would.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_auth::{Admin, Application, AuthConfig};
use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_http::identity::{JwksConfig, JwksSource, JwtVerifier, VerifierConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::events::Transport;
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://auth.dovetail.internal";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A running service.
pub(crate) struct Service {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) admin: Admin,
    pub(crate) dir: PathBuf,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    events: Arc<Mutex<Vec<Envelope>>>,
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-auth-it-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn config(dir: &std::path::Path) -> AuthConfig {
    let mut config = AuthConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.sqlite_path = Some(dir.join("auth.db"));
    config.keys_dir = dir.join("keys");
    config.events.bus_path = dir.join("bus.db");
    config.sessions.path = dir.join("sessions.db");
    config.relay.poll_interval_ms = 50;
    config.tokens.signing_key_publish_ahead_seconds = 1;
    // Cheap hashes keep the suite fast; the defaults are pinned by a unit test.
    config.password_hashing.memory_kib = 1024;
    config.password_hashing.iterations = 1;
    config
}

impl Service {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A service with the test configuration as `adjust` changes it.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut AuthConfig)) -> Self {
        let dir = temp_dir();
        let mut config = config(&dir);
        adjust(&mut config);
        let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
        bus.create_topic("user-events").await.unwrap();
        bus.subscribe(BusSubscription {
            name: "test.users".into(),
            topic: "user-events".into(),
            filter: SubscriptionFilter::all(),
            max_receives: 5,
        })
        .await
        .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let shutdown = Shutdown::new();
        let collected = Arc::clone(&events);
        let consumer_stop = shutdown.clone();
        tokio::spawn(
            BusConsumer::new(bus.clone(), BusConsumerConfig::new("test.users")).run(
                tower::service_fn(move |delivery: Delivery| {
                    let collected = Arc::clone(&collected);
                    async move {
                        let envelope: Envelope = serde_json::from_str(&delivery.body)
                            .map_err(|e| HandlerError::rejected(e.to_string()))?;
                        collected.lock().unwrap().push(envelope);
                        Ok::<(), HandlerError>(())
                    }
                }),
                async move { consumer_stop.cancelled().await },
            ),
        );
        let app = Application::build(config, &Transport::Embedded(bus))
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr());
        let admin = app.admin();
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            admin,
            dir,
            shutdown,
            running,
            events,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers a customer user and checks the uniform 202.
    pub(crate) async fn register(&self, email: &str, customer: &str) {
        // Bound to a chosen customer: the operator's path (open registration picks a new
        // customer; `api.rs` tests that).
        let registration = self
            .admin
            .register_customer(email, PASSWORD, customer)
            .await
            .unwrap();
        assert_eq!(registration, dovetail_auth::store::Registration::Created);
    }

    /// Logs in; the answer's JSON.
    pub(crate) async fn log_in(&self, email: &str, password: &str) -> reqwest::Response {
        self.post("/sessions", &json!({"email": email, "password": password}))
            .await
    }

    /// Logs in and returns the access token.
    pub(crate) async fn token(&self, email: &str, password: &str) -> String {
        let response = self.log_in(email, password).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A verifier for `audience` that fetches the JWKS from the service over HTTP.
    pub(crate) fn verifier(&self, audience: &str) -> JwtVerifier {
        let keys = JwksSource::from_url(self.url("/.well-known/jwks.json"), JwksConfig::default())
            .unwrap();
        JwtVerifier::new(VerifierConfig::new(ISSUER, audience), keys)
    }

    /// Waits until `count` events were collected, and returns them.
    pub(crate) async fn events(&self, count: usize) -> Vec<Envelope> {
        for _ in 0..500 {
            let events = self.events.lock().unwrap().clone();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} events, got {:?}",
            self.events.lock().unwrap().len()
        );
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
    }
}

/// The claims of a compact JWS, unverified (for checks on what the token carries).
pub(crate) fn claims_of(token: &str) -> Value {
    part(token, 1)
}

/// The header of a compact JWS.
pub(crate) fn header_of(token: &str) -> Value {
    part(token, 0)
}

fn part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

pub(crate) use dovetail_testkit::http::assert_problem;
