//! The claim service on DynamoDB and SNS/SQS, end to end: policy events published to the
//! policy topic reach its replica through its SQS queue, a claim filed over HTTP against
//! the active policy publishes its event to the claim topic, and a claim against the
//! cancelled policy is refused with the reason.

use std::time::Duration;

use dovetail_claim::{Application, ClaimConfig};
use dovetail_contracts::policy::{
    PolicyCancelled, PolicyDrafted, PolicyIssued, PolicySnapshot, PolicyStatus,
};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_events::transport::{Subscription, TypeFilter};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::config::{EventsBackend, StorageBackend};
use dovetail_service_kit::events::{EventsPublisher, Transport};
use serde_json::Value;

use crate::support::{assert_problem, claim_body, policy};

/// Publishes `event` about `policy` at its version, as the policy service's relay would.
async fn publish<E: Event>(publisher: &EventsPublisher, policy: &PolicySnapshot, event: &E) {
    let envelope = Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", &policy.policy_id).unwrap(),
        Sequence::new(policy.version).unwrap(),
        event,
        EventMetadata::default(),
    )
    .unwrap();
    publisher.publish(&envelope).await.unwrap();
}

/// Waits until the replica at `base` holds `version` of policy `id`.
async fn replica_reaches(http: &reqwest::Client, base: &str, id: &str, version: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        let response = http
            .get(format!("{base}/replica/policies/{id}"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            last = response.json().await.unwrap();
            if last["policy"]["version"] == version {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replica never reached version {version} of {id}; last seen {last}");
}

/// Receives one message from `queue_url` (deleting it) within 30 seconds.
async fn receive_one(clients: &AwsClients, queue_url: &str) -> Envelope {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        let received = clients
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if let Some(message) = received.messages().first() {
            clients
                .sqs()
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            return serde_json::from_str(message.body().unwrap()).unwrap();
        }
    }
    panic!("no message arrived on {queue_url}");
}

#[tokio::test]
async fn policy_events_on_sns_feed_the_replica_and_a_filed_claim_reaches_the_claim_topic() {
    let clients = super::clients().await;
    let prefix = format!("{}-", dovetail_testkit::unique_name("claim-e2e"));
    let mut config = ClaimConfig::default();
    let issuer = dovetail_testkit::identity::TestIssuer::start().await;
    config.identity.issuer = issuer.issuer().to_owned();
    config.identity.jwks_url = issuer.jwks_url().to_owned();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.backend = StorageBackend::Dynamodb;
    config.storage.dynamodb_table = Some(format!("{prefix}claim"));
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = prefix.clone();
    config.relay.poll_interval_ms = 100;
    let transport = clients.transport(&prefix);
    let claims = transport
        .subscribe(
            &Subscription::new("claims")
                .to_topic(dovetail_contracts::claim::TOPIC, TypeFilter::All),
        )
        .await
        .unwrap();
    let claims = claims.sqs_consumers()[0].clone();

    let app = Application::build(config, &Transport::Aws(clients.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", app.local_addr());
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let http = crate::support::client_with(&issuer.staff_token(dovetail_claim::SERVICE));

    let policies = transport
        .publisher(dovetail_contracts::policy::TOPIC)
        .await
        .unwrap();
    let draft = policy("pol-e2e", PolicyStatus::Draft, 1);
    publish(
        &policies,
        &draft,
        &PolicyDrafted {
            policy: draft.clone(),
        },
    )
    .await;
    let active = policy("pol-e2e", PolicyStatus::Active, 2);
    publish(
        &policies,
        &active,
        &PolicyIssued {
            policy: active.clone(),
        },
    )
    .await;
    replica_reaches(&http, &base, "pol-e2e", 2).await;

    let filed = http
        .post(format!("{base}/claims"))
        .header("idempotency-key", "e2e-claim")
        .json(&claim_body("pol-e2e", "500.00"))
        .send()
        .await
        .unwrap();
    assert_eq!(filed.status(), 201, "{:?}", filed.text().await);
    let filed: Value = filed.json().await.unwrap();
    let event = receive_one(&clients, &claims.queue_url).await;
    assert_eq!(event.event_type().as_str(), "claim.filed");
    assert_eq!(
        Some(event.aggregate_id().as_str()),
        filed["claim_id"].as_str()
    );

    let mut cancelled = active.clone();
    cancelled.status = PolicyStatus::Cancelled;
    cancelled.version = 3;
    publish(
        &policies,
        &cancelled,
        &PolicyCancelled {
            policy: cancelled.clone(),
            reason: None,
        },
    )
    .await;
    replica_reaches(&http, &base, "pol-e2e", 3).await;
    let refused = http
        .post(format!("{base}/claims"))
        .header("idempotency-key", "e2e-claim-2")
        .json(&claim_body("pol-e2e", "10.00"))
        .send()
        .await
        .unwrap();
    assert_problem(refused, 422, "policy pol-e2e was cancelled").await;

    shutdown.cancel();
    running.await.unwrap().unwrap();
}
