//! A policy service on port 0 in a temporary directory, verifying the tokens of its own
//! [`TestIssuer`], an HTTP client for it that sends a staff token, and a subscription that
//! collects the events it publishes.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_policy::{Application, PolicyConfig, SERVICE};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::events::Transport;
use dovetail_testkit::identity::TestIssuer;
use serde_json::{Value, json};

/// A running service.
pub(crate) struct Service {
    pub(crate) base: String,
    /// Sends a staff token with every request (a request's own `Authorization` wins).
    pub(crate) http: reqwest::Client,
    /// Sends no token.
    pub(crate) anonymous: reqwest::Client,
    /// Mints the tokens the service accepts.
    pub(crate) issuer: TestIssuer,
    pub(crate) shutdown: Shutdown,
    pub(crate) running: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(crate) events: Arc<Mutex<Vec<Envelope>>>,
    pub(crate) dir: PathBuf,
}

pub(crate) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-policy-it-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn config(dir: &std::path::Path, issuer: &TestIssuer) -> PolicyConfig {
    let mut config = PolicyConfig::default();
    config.identity.issuer = issuer.issuer().to_owned();
    config.identity.jwks_url = issuer.jwks_url().to_owned();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.sqlite_path = Some(dir.join("policy.db"));
    config.events.bus_path = dir.join("bus.db");
    config.relay.poll_interval_ms = 50;
    config
}

impl Service {
    pub(crate) async fn start() -> Self {
        Self::start_in(temp_dir()).await
    }

    pub(crate) async fn start_in(dir: PathBuf) -> Self {
        let issuer = TestIssuer::start().await;
        let config = config(&dir, &issuer);
        let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
        bus.create_topic("policy-events").await.unwrap();
        bus.subscribe(BusSubscription {
            name: "test.policies".into(),
            topic: "policy-events".into(),
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
            BusConsumer::new(bus.clone(), BusConsumerConfig::new("test.policies")).run(
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
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            http: client_with(&issuer.staff_token(SERVICE)),
            anonymous: reqwest::Client::new(),
            issuer,
            shutdown,
            running,
            events,
            dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token of a customer user bound to `customer_id`, for this service.
    pub(crate) fn customer(&self, customer_id: &str) -> String {
        self.issuer.customer_token(SERVICE, customer_id)
    }

    /// A token of staff user `subject`, for this service.
    pub(crate) fn staff(&self, subject: &str) -> String {
        self.issuer
            .sign(&self.issuer.claims(SERVICE, subject, &["staff"]))
    }

    /// Drafts a policy for `customer` and returns its JSON.
    pub(crate) async fn draft(&self, customer: &str) -> Value {
        let response = self
            .http
            .post(self.url("/policies"))
            .json(&terms(customer))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        response.json().await.unwrap()
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

    pub(crate) async fn stop(self) -> PathBuf {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
        self.dir
    }
}

pub(crate) fn terms(customer: &str) -> Value {
    json!({
        "customer_id": customer,
        "product_line": "home",
        "coverage_limit": "10000.00",
        "deductible": "250.00",
        "premium": "120.00",
        "effective_date": "2026-01-01",
        "expiry_date": "2099-12-31"
    })
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub(crate) fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

pub(crate) use dovetail_testkit::http::assert_problem;
