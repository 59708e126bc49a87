//! Builders of snapshots, documents and events for the tests; [`Tokens`], a test issuer
//! of the bearer tokens the API verifies; and [`Service`], the whole service on the
//! embedded bus over an index of the test's choice, configured with that issuer.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use dovetail_contracts::claim::{ClaimSnapshot, ClaimStatus};
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_http::identity::JwtVerifier;
use dovetail_search::config::IndexConfig;
use dovetail_search::document::{Lineage, SearchDocument};
use dovetail_search::{Application, SERVICE, SearchConfig, SearchIdempotency};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::config::IdentityConfig;
use dovetail_service_kit::events::Transport;
use dovetail_testkit::identity::TestIssuer;
use http_body_util::BodyExt;
use serde_json::Value;
use time::Date;
use time::macros::date;
use tower::ServiceExt;

/// A fresh directory under the system's temporary one.
pub(crate) fn temp_dir(prefix: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(dovetail_testkit::unique_name(prefix))
}

/// The lineage of the event of `version`.
pub(crate) fn lineage(source: &str, event_type: &str, version: u64) -> Lineage {
    Lineage {
        source: source.to_owned(),
        event_id: format!("evt-{event_type}-{version}"),
        event_type: event_type.to_owned(),
        sequence: version,
        occurred_at: "2026-01-01T00:00:00Z".to_owned(),
    }
}

/// Policy `id` of `customer` at `version`.
pub(crate) fn policy_snapshot(
    id: &str,
    customer: &str,
    product_line: &str,
    version: u64,
    status: PolicyStatus,
) -> PolicySnapshot {
    PolicySnapshot {
        policy_id: id.to_owned(),
        customer_id: customer.to_owned(),
        product_line: product_line.to_owned(),
        coverage_limit: "10000.00".parse().unwrap(),
        deductible: "250.00".parse().unwrap(),
        premium: format!("{}.50", 100 + version).parse().unwrap(),
        effective_date: date!(2026 - 01 - 01),
        expiry_date: date!(2026 - 12 - 31),
        status,
        version,
    }
}

/// The document of policy `id` at `version`.
pub(crate) fn policy(
    id: &str,
    customer: &str,
    version: u64,
    status: PolicyStatus,
) -> SearchDocument {
    SearchDocument::from_policy(
        &policy_snapshot(id, customer, "home", version, status),
        lineage("policy-service", "policy.updated", version),
    )
}

/// The document of policy `id` effective on `effective`.
pub(crate) fn policy_on(id: &str, customer: &str, effective: Date) -> SearchDocument {
    let mut snapshot = policy_snapshot(id, customer, "motor", 1, PolicyStatus::Active);
    snapshot.effective_date = effective;
    SearchDocument::from_policy(&snapshot, lineage("policy-service", "policy.issued", 1))
}

/// Claim `id` of `customer` at `version`.
pub(crate) fn claim_snapshot(
    id: &str,
    customer: &str,
    description: &str,
    version: u64,
    status: ClaimStatus,
) -> ClaimSnapshot {
    ClaimSnapshot {
        claim_id: id.to_owned(),
        policy_id: format!("pol-of-{id}"),
        customer_id: customer.to_owned(),
        incident_date: date!(2026 - 03 - 14),
        amount: "1234.56".parse().unwrap(),
        description: description.to_owned(),
        status,
        rejection_reason: None,
        version,
    }
}

/// The document of claim `id` at `version`.
pub(crate) fn claim(
    id: &str,
    customer: &str,
    description: &str,
    version: u64,
    status: ClaimStatus,
) -> SearchDocument {
    SearchDocument::from_claim(
        &claim_snapshot(id, customer, description, version, status),
        lineage("claim-service", "claim.filed", version),
    )
}

/// The document the event `policy.updated` of policy `id` at `version` leaves, holding
/// that event as its source.
pub(crate) fn policy_from_event(id: &str, customer: &str, version: u64) -> SearchDocument {
    use dovetail_contracts::policy::PolicyUpdated;
    use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};

    let policy = policy_snapshot(id, customer, "home", version, PolicyStatus::Active);
    let envelope = Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", id).unwrap(),
        Sequence::new(version).unwrap(),
        &PolicyUpdated { policy },
        EventMetadata::default(),
    )
    .unwrap();
    SearchDocument::from_envelope(&envelope).unwrap()
}

/// The version `index` holds under `id`, if any.
pub(crate) async fn held_version<I: dovetail_search::index::SearchIndex>(
    index: &I,
    id: &str,
) -> Option<u64> {
    index.get(id).await.unwrap().map(|held| held.version())
}

/// A [`TestIssuer`] whose JWKS the service under test is configured with, and the
/// `Authorization` values of the callers the tests use.
pub(crate) struct Tokens {
    issuer: TestIssuer,
    staff: String,
}

impl Tokens {
    /// A fresh issuer, its JWKS served on loopback while this lives.
    pub(crate) async fn start() -> Self {
        let issuer = TestIssuer::start().await;
        let staff = bearer(&issuer.staff_token(SERVICE));
        Self { issuer, staff }
    }

    /// The service's `identity` section naming this issuer.
    pub(crate) fn identity_config(&self) -> IdentityConfig {
        IdentityConfig {
            issuer: self.issuer.issuer().to_owned(),
            jwks_url: self.issuer.jwks_url().to_owned(),
            ..IdentityConfig::default()
        }
    }

    /// The verifier the service builds from [`identity_config`](Self::identity_config).
    pub(crate) fn verifier(&self) -> JwtVerifier {
        self.identity_config().verifier(SERVICE).unwrap()
    }

    /// The issuer, to mint tokens of other shapes.
    pub(crate) fn issuer(&self) -> &TestIssuer {
        &self.issuer
    }

    /// `Bearer <token>` of a staff user, for this service.
    pub(crate) fn staff(&self) -> &str {
        &self.staff
    }

    /// `Bearer <token>` of a user of customer `id`, for this service.
    pub(crate) fn customer(&self, id: &str) -> String {
        bearer(&self.issuer.customer_token(SERVICE, id))
    }
}

/// The `Authorization` value of `token`.
pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The search service on the embedded bus, over a tantivy index in a temporary directory
/// or the index a test names, its API verifying the tokens of [`Service::tokens`].
pub(crate) struct Service {
    pub(crate) router: Router,
    pub(crate) bus: EmbeddedBus,
    pub(crate) idempotency: SearchIdempotency,
    pub(crate) idempotency_path: std::path::PathBuf,
    pub(crate) tokens: Tokens,
    shutdown: Shutdown,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    /// The service over tantivy in a temporary directory.
    pub(crate) async fn start() -> Self {
        Self::start_on(None).await
    }

    /// The service over `index`, or tantivy in a temporary directory.
    pub(crate) async fn start_on(index: Option<IndexConfig>) -> Self {
        let dir = temp_dir("search-api");
        std::fs::create_dir_all(&dir).unwrap();
        let tokens = Tokens::start().await;
        let mut config = SearchConfig::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.index = index.unwrap_or_default();
        config.index.tantivy_path = dir.join("search");
        config.events.bus_path = dir.join("bus.db");
        config.identity = tokens.identity_config();
        let bus = EmbeddedBus::open(&config.events.bus_path).unwrap();
        let idempotency_path = config.idempotency_path();
        let app = Application::build(config, &Transport::Embedded(bus.clone()))
            .await
            .unwrap();
        let router = app.router();
        let idempotency = app.idempotency().clone();
        let shutdown = Shutdown::new();
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            router,
            bus,
            idempotency,
            idempotency_path,
            tokens,
            shutdown,
            running,
        }
    }

    /// `[("authorization", <staff token>)]`.
    pub(crate) fn as_staff(&self) -> [(&'static str, &str); 1] {
        [("authorization", self.tokens.staff())]
    }

    /// `Bearer <token>` of a user of customer `id`.
    pub(crate) fn customer(&self, id: &str) -> String {
        self.tokens.customer(id)
    }

    pub(crate) async fn publish<E: Event>(
        &self,
        topic: &str,
        source: &str,
        aggregate: (&str, &str),
        version: u64,
        event: &E,
    ) -> Envelope {
        let envelope = Envelope::new(
            Source::parse(source).unwrap(),
            AggregateRef::parse(aggregate.0, aggregate.1).unwrap(),
            Sequence::new(version).unwrap(),
            event,
            EventMetadata::default(),
        )
        .unwrap();
        self.bus.publisher(topic).publish(&envelope).await.unwrap();
        envelope
    }

    /// `GET uri` with `headers`: the status, the content type and the body (JSON, or the
    /// text as a JSON string).
    pub(crate) async fn get(
        &self,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, Value) {
        let (status, headers, body) = self.send(Method::GET, uri, headers).await;
        let content_type = headers
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, body)
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, headers, body)
    }

    /// Searches as staff until `done` holds of the items, for at most ten seconds.
    pub(crate) async fn until(&self, uri: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let (status, _, body) = self.get(uri, &self.as_staff()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let items = body["items"].as_array().unwrap().clone();
            if done(&items) {
                return items;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never came: {items:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the consumer processed `events` distinct events and nothing is left
    /// on its subscriptions (duplicates acknowledged too), for at most ten seconds.
    pub(crate) async fn until_handled(&self, events: u64) {
        use dovetail_search::config::{CLAIM_EVENTS_SUBSCRIPTION, POLICY_EVENTS_SUBSCRIPTION};

        let started = Instant::now();
        loop {
            let stats = self.idempotency.stats();
            let mut pending = 0;
            for subscription in [POLICY_EVENTS_SUBSCRIPTION, CLAIM_EVENTS_SUBSCRIPTION] {
                pending += self.bus.backlog(subscription).await.unwrap().pending;
            }
            assert!(
                stats.processed() <= events,
                "more events processed than published: {stats:?}"
            );
            if stats.processed() == events && pending == 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not every event was handled: {pending} pending, {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.running.await.unwrap().unwrap();
    }
}
