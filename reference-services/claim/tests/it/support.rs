//! A claim service on port 0 in a temporary directory, verifying the tokens of its own
//! [`TestIssuer`], an HTTP client for it that sends a staff token, a publisher of policy
//! events onto its bus, and a collector of the claim events it publishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_claim::{Application, ClaimConfig, SERVICE};
use dovetail_contracts::policy::{
    PolicyCancelled, PolicyDrafted, PolicyIssued, PolicySnapshot, PolicyStatus,
};
use dovetail_events::bus::{
    BusConsumer, BusConsumerConfig, BusSubscription, EmbeddedBus, SubscriptionFilter,
};
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::events::Transport;
use dovetail_testkit::identity::TestIssuer;
use serde_json::Value;
use time::macros::date;

pub(crate) struct Service {
    pub(crate) base: String,
    /// Sends a staff token with every request (a request's own `Authorization` wins).
    pub(crate) http: reqwest::Client,
    /// Sends no token.
    pub(crate) anonymous: reqwest::Client,
    /// Mints the tokens the service accepts.
    pub(crate) issuer: TestIssuer,
    pub(crate) bus: EmbeddedBus,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub(crate) events: Arc<Mutex<Vec<Envelope>>>,
}

impl Service {
    pub(crate) async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-claim-it-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let issuer = TestIssuer::start().await;
        let mut config = ClaimConfig::default();
        config.identity.issuer = issuer.issuer().to_owned();
        config.identity.jwks_url = issuer.jwks_url().to_owned();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.storage.sqlite_path = Some(dir.join("claim.db"));
        config.events.bus_path = dir.join("bus.db");
        config.relay.poll_interval_ms = 50;
        let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
        bus.create_topic("claim-events").await.unwrap();
        bus.subscribe(BusSubscription {
            name: "test.claims".into(),
            topic: "claim-events".into(),
            filter: SubscriptionFilter::all(),
            max_receives: 5,
        })
        .await
        .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let shutdown = Shutdown::new();
        let (collected, stop) = (Arc::clone(&events), shutdown.clone());
        tokio::spawn(
            BusConsumer::new(bus.clone(), BusConsumerConfig::new("test.claims")).run(
                tower::service_fn(move |delivery: Delivery| {
                    let collected = Arc::clone(&collected);
                    async move {
                        let envelope: Envelope = serde_json::from_str(&delivery.body)
                            .map_err(|e| HandlerError::rejected(e.to_string()))?;
                        collected.lock().unwrap().push(envelope);
                        Ok::<(), HandlerError>(())
                    }
                }),
                async move { stop.cancelled().await },
            ),
        );
        let app = Application::build(config, &Transport::Embedded(bus.clone()))
            .await
            .unwrap();
        let base = format!("http://{}", app.local_addr());
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            base,
            http: client_with(&issuer.staff_token(SERVICE)),
            anonymous: reqwest::Client::new(),
            issuer,
            bus,
            shutdown,
            running,
            events,
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

    /// Publishes `event` about `policy` at its version, as the policy service's relay would.
    pub(crate) async fn publish<E: Event>(&self, policy: &PolicySnapshot, event: &E) -> Envelope {
        let envelope = Envelope::new(
            Source::parse("policy-service").unwrap(),
            AggregateRef::parse("policy", &policy.policy_id).unwrap(),
            Sequence::new(policy.version).unwrap(),
            event,
            EventMetadata::default(),
        )
        .unwrap();
        self.republish(&envelope).await;
        envelope
    }

    pub(crate) async fn republish(&self, envelope: &Envelope) {
        self.bus
            .publisher("policy-events")
            .publish(envelope)
            .await
            .unwrap();
    }

    /// Publishes a policy's draft and issue, and waits until the replica has it active.
    pub(crate) async fn active_policy(&self, id: &str) -> PolicySnapshot {
        let draft = policy(id, PolicyStatus::Draft, 1);
        self.publish(
            &draft,
            &PolicyDrafted {
                policy: draft.clone(),
            },
        )
        .await;
        let active = policy(id, PolicyStatus::Active, 2);
        self.publish(
            &active,
            &PolicyIssued {
                policy: active.clone(),
            },
        )
        .await;
        self.replica_version(id, 2).await;
        active
    }

    /// Cancels `active` and waits until the replica has it cancelled.
    pub(crate) async fn cancel(&self, active: &PolicySnapshot) {
        let mut cancelled = active.clone();
        cancelled.status = PolicyStatus::Cancelled;
        cancelled.version += 1;
        self.publish(
            &cancelled,
            &PolicyCancelled {
                policy: cancelled.clone(),
                reason: None,
            },
        )
        .await;
        self.replica_version(&active.policy_id, cancelled.version)
            .await;
    }

    /// Waits until the replica holds `version` of policy `id`, and returns its copy.
    /// Every copy read on the way carries its snapshot's version as its `ETag`.
    pub(crate) async fn replica_version(&self, id: &str, version: u64) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            let response = self
                .http
                .get(self.url(&format!("/replica/policies/{id}")))
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                let etag = response.headers().get("etag").cloned();
                last = response.json().await.unwrap();
                let held = last["policy"]["version"].as_u64().unwrap();
                assert_eq!(
                    etag.as_ref().and_then(|etag| etag.to_str().ok()),
                    Some(format!("\"{held}\"").as_str()),
                    "the ETag of policy {id}'s copy is not its version: {last}"
                );
                if last["policy"]["version"] == version {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the replica never reached version {version} of {id}; last seen {last}");
    }

    pub(crate) async fn file(&self, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/claims"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub(crate) async fn claim_events(&self, count: usize) -> Vec<Envelope> {
        for _ in 0..500 {
            let events = self.events.lock().unwrap().clone();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {count} claim events, got {}",
            self.events.lock().unwrap().len()
        );
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
    }
}

pub(crate) fn policy(id: &str, status: PolicyStatus, version: u64) -> PolicySnapshot {
    PolicySnapshot {
        policy_id: id.into(),
        customer_id: "cust-1".into(),
        product_line: "home".into(),
        coverage_limit: "10000.00".parse().unwrap(),
        deductible: "250.00".parse().unwrap(),
        premium: "120.00".parse().unwrap(),
        effective_date: date!(2026 - 01 - 01),
        expiry_date: date!(2099 - 12 - 31),
        status,
        version,
    }
}

pub(crate) fn claim_body(policy_id: &str, amount: &str) -> Value {
    serde_json::json!({
        "policy_id": policy_id,
        "incident_date": "2026-03-01",
        "amount": amount,
        "description": "burst pipe in the kitchen"
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
