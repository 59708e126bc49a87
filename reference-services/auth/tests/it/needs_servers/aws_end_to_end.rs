//! The auth service on DynamoDB and SNS, end to end: `storage.backend = dynamodb` and the
//! AWS events transport from configuration, a registration, a log-in and a role change
//! over HTTP, and their events on an SQS queue subscribed to the service's topic.

use std::time::Duration;

use dovetail_auth::Application;
use dovetail_events::envelope::Envelope;
use dovetail_events::transport::{Subscription, TypeFilter};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::config::{EventsBackend, StorageBackend};
use dovetail_service_kit::events::Transport;
use serde_json::{Value, json};

use crate::support::{PASSWORD, claims_of};

/// Receives from `queue_url` until `count` messages arrived (deleting them), or 30 s.
async fn receive(clients: &AwsClients, queue_url: &str, count: usize) -> Vec<Envelope> {
    let mut envelopes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while envelopes.len() < count && tokio::time::Instant::now() < deadline {
        let received = clients
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for message in received.messages() {
            envelopes.push(serde_json::from_str::<Envelope>(message.body().unwrap()).unwrap());
            clients
                .sqs()
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    envelopes.sort_by_key(|envelope| {
        (
            envelope.aggregate_id().as_str().to_owned(),
            envelope.sequence().get(),
        )
    });
    envelopes
}

#[tokio::test]
async fn users_on_dynamodb_register_log_in_and_change_role_with_their_events_on_sqs() {
    let clients = super::clients().await;
    let prefix = format!("{}-", dovetail_testkit::unique_name("auth-e2e"));
    let dir = std::env::temp_dir().join(format!(
        "dovetail-auth-e2e-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = crate::support::config(&dir);
    config.storage.backend = StorageBackend::Dynamodb;
    config.storage.dynamodb_table = Some(format!("{prefix}auth"));
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = prefix.clone();

    let changes = clients
        .transport(&prefix)
        .subscribe(&Subscription::new("role-changes").to_topic(
            dovetail_contracts::user::TOPIC,
            TypeFilter::types(["user.role_changed"]),
        ))
        .await
        .unwrap();
    let [queue] = changes.sqs_consumers()[..] else {
        panic!("an AWS consumer source is one SQS queue");
    };
    let queue_url = queue.queue_url.clone();

    let app = Application::build(config, &Transport::Aws(clients.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let admin = app.admin();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = reqwest::Client::new();
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut request = http.post(format!("{base}{path}")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let log_in = |email: &'static str| {
        let post = &post;
        async move {
            let response = post(
                "/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
            let body: Value = response.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };

    let registered = post(
        "/users",
        None,
        json!({"email": "Ada@Example.com", "password": PASSWORD}),
    )
    .await
    .unwrap();
    assert_eq!(registered.status(), 202);
    admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let ada = log_in("ada@example.com").await;
    let ada_id = claims_of(&ada)["sub"].as_str().unwrap().to_owned();
    let staff = log_in("staff@example.com").await;
    let promoted = post(
        &format!("/users/{ada_id}/role"),
        Some(&staff),
        json!({"role": "staff"}),
    )
    .await
    .unwrap();
    assert_eq!(promoted.status(), 200, "{:?}", promoted.text().await);
    let ada = log_in("ada@example.com").await;
    assert_eq!(claims_of(&ada)["roles"], json!(["staff"]));
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    let events = receive(&clients, &queue_url, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type().as_str(), "user.role_changed");
    assert_eq!(events[0].aggregate_id().as_str(), ada_id);
    assert_eq!(events[0].sequence().get(), 2);
    assert_eq!(events[0].payload()["previous_role"], "customer");

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
