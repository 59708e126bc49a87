//! The policy service on DynamoDB and SNS, end to end: a request over HTTP, its events on
//! SQS queues subscribed to the service's topic (one through the services' SQS consumer,
//! one filtered to a single event type). The provisioning of those queues is tested in
//! dovetail-events (`transport_provisioning`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovetail_events::consumer::{Delivery, HandlerError};
use dovetail_events::envelope::Envelope;
use dovetail_events::transport::{EventSource, Subscription, TypeFilter};
use dovetail_policy::{Application, PolicyConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::config::{EventsBackend, StorageBackend};
use dovetail_service_kit::events::Transport;
use serde_json::Value;

use crate::support::terms;

/// The queue URL and DLQ URL of an SQS source.
fn queue_urls(source: &EventSource) -> (String, Option<String>) {
    let [config] = source.sqs_consumers()[..] else {
        panic!("an AWS consumer source is one SQS queue");
    };
    (
        config.queue_url.clone(),
        config.dead_letter_queue_url.clone(),
    )
}

/// Receives from `queue_url` until `count` messages arrived (deleting them), then waits
/// `settle` more for any that should not be there.
async fn receive(
    clients: &AwsClients,
    queue_url: &str,
    count: usize,
    settle: Duration,
) -> Vec<Envelope> {
    let mut envelopes = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut settle_until = None;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline || settle_until.is_some_and(|until| now >= until) {
            break;
        }
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
            let body = message.body().unwrap();
            envelopes.push(
                serde_json::from_str::<Envelope>(body).unwrap_or_else(|error| {
                    panic!("raw delivery carries the envelope as the body: {error}: {body}")
                }),
            );
            clients
                .sqs()
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if envelopes.len() >= count && settle_until.is_none() {
            settle_until = Some(tokio::time::Instant::now() + settle);
        }
    }
    assert!(
        envelopes.len() >= count,
        "expected {count} messages on {queue_url}, got {envelopes:?}"
    );
    envelopes
}

fn types(envelopes: &[Envelope]) -> Vec<(u64, String)> {
    let mut types: Vec<_> = envelopes
        .iter()
        .map(|envelope| {
            (
                envelope.sequence().get(),
                envelope.event_type().as_str().to_owned(),
            )
        })
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn a_policy_issued_over_http_reaches_the_queues_subscribed_to_its_topic() {
    let clients = super::clients().await;
    let prefix = format!("{}-", dovetail_testkit::unique_name("e2e"));
    let mut config = PolicyConfig::default();
    let issuer = dovetail_testkit::identity::TestIssuer::start().await;
    config.identity.issuer = issuer.issuer().to_owned();
    config.identity.jwks_url = issuer.jwks_url().to_owned();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.backend = StorageBackend::Dynamodb;
    config.storage.dynamodb_table = Some(format!("{prefix}policy"));
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = prefix.clone();
    config.relay.poll_interval_ms = 100;

    // Two consumers: everything through the services' SQS consumer, and only issued
    // policies read straight from their queue.
    let transport = clients.transport(&prefix);
    let everything = transport
        .subscribe(
            &Subscription::new("all").to_topic(dovetail_contracts::policy::TOPIC, TypeFilter::All),
        )
        .await
        .unwrap();
    let issued_only = transport
        .subscribe(&Subscription::new("issued").to_topic(
            dovetail_contracts::policy::TOPIC,
            TypeFilter::types(["policy.issued"]),
        ))
        .await
        .unwrap();
    let (issued_url, _) = queue_urls(&issued_only);
    let delivered = Arc::new(Mutex::new(Vec::<Envelope>::new()));
    let shutdown = Shutdown::new();
    let consumer = {
        let delivered = Arc::clone(&delivered);
        let stop = shutdown.clone();
        tokio::spawn(everything.run(
            tower::service_fn(move |delivery: Delivery| {
                let delivered = Arc::clone(&delivered);
                async move {
                    let envelope: Envelope = serde_json::from_str(&delivery.body)
                        .map_err(|error| HandlerError::rejected(error.to_string()))?;
                    delivered.lock().unwrap().push(envelope);
                    Ok::<(), HandlerError>(())
                }
            }),
            async move { stop.cancelled().await },
        ))
    };

    let app = Application::build(config, &Transport::Aws(clients.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = crate::support::client_with(&issuer.staff_token(dovetail_policy::SERVICE));
    let created = http
        .post(format!("{base}/policies"))
        .header("idempotency-key", "e2e-1")
        .json(&terms("cust-e2e"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["policy_id"].as_str().unwrap().to_owned();
    let issued = http
        .post(format!("{base}/policies/{id}/issue"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200, "{:?}", issued.text().await);
    let listed: Value = http
        .get(format!("{base}/policies?customer_id=cust-e2e"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["status"], "active", "{listed}");
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    let filtered = receive(&clients, &issued_url, 1, Duration::from_secs(2)).await;
    assert_eq!(types(&filtered), [(2, "policy.issued".to_owned())]);
    assert_eq!(filtered[0].aggregate_id().as_str(), id);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let everything = delivered.lock().unwrap().clone();
    assert_eq!(
        types(&everything),
        [
            (1, "policy.drafted".to_owned()),
            (2, "policy.issued".to_owned())
        ],
        "{everything:?}"
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    consumer.await.unwrap().unwrap();
}
