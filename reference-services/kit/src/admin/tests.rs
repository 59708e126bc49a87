//! The `/admin` routes through their router: staff act, a customer is refused 403 and a
//! caller without a token 401, each as problem+json; unpark and redrive change the real
//! SQLite outbox and embedded bus.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_events::transport::{EventSource, Subscription, Transport, TypeFilter};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_outbox::{ExpectedVersion, OutboxStore};
use dovetail_testkit::identity::TestIssuer;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::Admin;
use crate::config::IdentityConfig;

const AUDIENCE: &str = "claim-service";
const QUEUE: &str = "claim-service-policy-events";

#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyIssued {
    policy_id: String,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

struct Fixture {
    issuer: TestIssuer,
    router: axum::Router,
    database: std::path::PathBuf,
    store: SqliteOutboxStore,
    bus: EmbeddedBus,
    source: EventSource,
}

impl Fixture {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("dovetail-admin-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let database = dir.join("service.db");
        let store = SqliteOutboxStore::open(&database, "relay").unwrap();
        let bus = EmbeddedBus::open(dir.join("bus.db")).unwrap();
        let source = Transport::embedded(bus.clone())
            .subscribe(
                &Subscription::new("claim-service").to_topic("policy-events", TypeFilter::All),
            )
            .await
            .unwrap();
        let issuer = TestIssuer::start().await;
        let identity = IdentityConfig {
            issuer: issuer.issuer().to_owned(),
            jwks_url: issuer.jwks_url().to_owned(),
            ..IdentityConfig::default()
        };
        let layer =
            dovetail_http::identity::IdentityLayer::new(identity.verifier(AUDIENCE).unwrap());
        let router = Admin::default()
            .outbox(store.clone().into())
            .consumer(source.clone())
            .router(layer);
        Self {
            issuer,
            router,
            database,
            store,
            bus,
            source,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, String, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    fn staff(&self) -> String {
        self.issuer.staff_token(AUDIENCE)
    }

    /// Commits `count` events to the outbox and parks them, as a relay does after
    /// `max_attempts` failed publishes.
    fn park(&self, count: u32) {
        let mut connection = rusqlite::Connection::open(&self.database).unwrap();
        let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("claim-service").unwrap()));
        let mut unit = outbox.begin(&mut connection).unwrap();
        for index in 0..count {
            unit.append(
                AggregateRef::parse("policy", &format!("p-{index}")).unwrap(),
                ExpectedVersion::New,
                &PolicyIssued {
                    policy_id: format!("p-{index}"),
                },
                EventMetadata::default(),
            )
            .unwrap();
        }
        unit.commit().unwrap();
        connection
            .execute(
                "UPDATE dovetail_outbox SET parked = 1, last_error = 'topic not found'",
                [],
            )
            .unwrap();
    }

    /// Publishes two events and lets a rejecting consumer dead-letter them.
    async fn dead_letter_two(&self) {
        let envelopes: Vec<Envelope> = (1..=2)
            .map(|index| {
                Envelope::new(
                    Source::parse("policy-service").unwrap(),
                    AggregateRef::parse("policy", &format!("p-{index}")).unwrap(),
                    Sequence::FIRST,
                    &PolicyIssued {
                        policy_id: format!("p-{index}"),
                    },
                    EventMetadata::default(),
                )
                .unwrap()
            })
            .collect();
        for result in self
            .bus
            .publisher("policy-events")
            .publish_batch(&envelopes)
            .await
        {
            result.unwrap();
        }
        let rejecting = tower::service_fn(|_: Delivery| async {
            Err::<(), _>(HandlerError::rejected("unknown product"))
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(self.source.clone().run(rejecting, async move {
            let _ = stopped.await;
        }));
        let started = Instant::now();
        while self.bus.backlog(QUEUE).await.unwrap().dead_letters < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "dead-lettered within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        running.await.unwrap().unwrap();
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn staff_unpark_every_parked_outbox_record() {
    let fixture = Fixture::new().await;
    fixture.park(3);
    assert_eq!(fixture.store.backlog().await.unwrap().parked, 3);

    let (status, _, body) = fixture
        .call("POST", "/admin/outbox/unpark", Some(&fixture.staff()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unparked"], 3);
    assert_eq!(fixture.store.backlog().await.unwrap().parked, 0);
    assert_eq!(
        fixture.store.fetch_ready(10).await.unwrap().len(),
        3,
        "ready to publish again"
    );

    let (_, _, again) = fixture
        .call("POST", "/admin/outbox/unpark", Some(&fixture.staff()))
        .await;
    assert_eq!(again["unparked"], 0);
}

#[tokio::test]
async fn staff_list_and_redrive_dead_letters() {
    let fixture = Fixture::new().await;
    fixture.dead_letter_two().await;

    let (status, _, listed) = fixture
        .call("GET", "/admin/dead-letters", Some(&fixture.staff()))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, serde_json::json!([{ "queue": QUEUE, "depth": 2 }]));

    let path = format!("/admin/dead-letters/{QUEUE}/redrive");
    let (status, _, body) = fixture.call("POST", &path, Some(&fixture.staff())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!({ "queue": QUEUE, "redriven": 2 }));
    let backlog = fixture.bus.backlog(QUEUE).await.unwrap();
    assert_eq!((backlog.dead_letters, backlog.pending), (0, 2));
}

#[tokio::test]
async fn an_unknown_queue_is_a_404_naming_the_known_ones() {
    let fixture = Fixture::new().await;
    let (status, content_type, body) = fixture
        .call(
            "POST",
            "/admin/dead-letters/nope/redrive",
            Some(&fixture.staff()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains(QUEUE), "{body}");
}

#[tokio::test]
async fn customers_get_403_and_callers_without_a_token_401() {
    let fixture = Fixture::new().await;
    fixture.park(1);
    let customer = fixture.issuer.customer_token(AUDIENCE, "c-1");
    let redrive = format!("/admin/dead-letters/{QUEUE}/redrive");
    for (method, path) in [
        ("POST", "/admin/outbox/unpark"),
        ("GET", "/admin/dead-letters"),
        ("POST", redrive.as_str()),
    ] {
        let (status, content_type, body) = fixture.call(method, path, Some(&customer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(content_type, "application/problem+json");
        assert!(body["detail"].as_str().unwrap().contains("staff"), "{body}");

        let (status, content_type, _) = fixture.call(method, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(content_type, "application/problem+json");
    }
    assert_eq!(
        fixture.store.backlog().await.unwrap().parked,
        1,
        "nothing was unparked"
    );
}

#[tokio::test]
async fn a_service_without_an_outbox_answers_404() {
    let issuer = TestIssuer::start().await;
    let identity = IdentityConfig {
        issuer: issuer.issuer().to_owned(),
        jwks_url: issuer.jwks_url().to_owned(),
        ..IdentityConfig::default()
    };
    let layer = dovetail_http::identity::IdentityLayer::new(identity.verifier(AUDIENCE).unwrap());
    let response = Admin::default()
        .router(layer)
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/admin/outbox/unpark")
                .header(
                    header::AUTHORIZATION,
                    format!("Bearer {}", issuer.staff_token(AUDIENCE)),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
