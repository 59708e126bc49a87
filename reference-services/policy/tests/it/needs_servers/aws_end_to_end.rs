//! The policy service on DynamoDB and SNS, end to end: a request over HTTP, its events on
//! SQS queues subscribed to the service's topic (one through the services' SQS consumer,
//! one filtered to a single event type); and the idempotent provisioning of those queues.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
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
    let http = reqwest::Client::new();
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

#[tokio::test]
async fn provisioning_a_consumer_twice_changes_nothing_and_a_new_filter_replaces_the_old() {
    let clients = super::clients().await;
    let name = dovetail_testkit::unique_name("provision");
    // The queue is `<prefix><consumer>-<topic>`: `<name>-queue-topic`.
    let transport = clients.transport(&format!("{name}-"));
    let topic = format!("{name}-topic");
    let spec = Subscription::new("queue").to_topic("topic", TypeFilter::types(["policy.issued"]));
    let first = transport.subscribe(&spec).await.unwrap();
    let second = transport.subscribe(&spec).await.unwrap();
    let (queue_url, dead_letter_url) = queue_urls(&first);
    assert_eq!(
        queue_urls(&second),
        (queue_url.clone(), dead_letter_url.clone())
    );
    let dead_letter_url = dead_letter_url.unwrap();
    assert!(
        dead_letter_url.ends_with(&format!("{name}-queue-topic-dlq")),
        "{dead_letter_url}"
    );

    let topic_arn = clients
        .sns()
        .create_topic()
        .name(&topic)
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_owned();
    let queue_arn = queue_attribute(&clients, &queue_url, QueueAttributeName::QueueArn).await;
    let dead_letter_arn =
        queue_attribute(&clients, &dead_letter_url, QueueAttributeName::QueueArn).await;
    let redrive: Value = serde_json::from_str(
        &queue_attribute(&clients, &queue_url, QueueAttributeName::RedrivePolicy).await,
    )
    .unwrap();
    assert_eq!(redrive["deadLetterTargetArn"], dead_letter_arn.as_str());
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    assert_eq!(
        queue_attribute(&clients, &queue_url, QueueAttributeName::VisibilityTimeout).await,
        "30"
    );
    let config = second.sqs_consumers()[0];
    assert_eq!(
        (
            config.visibility_timeout,
            config.heartbeat_every,
            config.wait_time
        ),
        (
            Duration::from_secs(30),
            Duration::from_secs(10),
            Duration::from_secs(2)
        )
    );
    let policy = queue_attribute(&clients, &queue_url, QueueAttributeName::Policy).await;
    assert!(
        policy.contains(&topic_arn),
        "the queue policy allows the topic: {policy}"
    );

    let subscriptions = subscriptions_of(&clients, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1, "one subscription after two runs");
    let attributes = subscription_attributes(&clients, &subscriptions[0]).await;
    assert_eq!(
        attributes.get("RawMessageDelivery").map(String::as_str),
        Some("true")
    );
    let filter: Value = serde_json::from_str(&attributes["FilterPolicy"]).unwrap();
    assert_eq!(filter, serde_json::json!({"type": ["policy.issued"]}));

    let wider = Subscription::new("queue").to_topic(
        "topic",
        TypeFilter::types(["policy.issued", "policy.cancelled"]),
    );
    transport.subscribe(&wider).await.unwrap();
    let subscriptions = subscriptions_of(&clients, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1);
    let attributes = subscription_attributes(&clients, &subscriptions[0]).await;
    let filter: Value = serde_json::from_str(&attributes["FilterPolicy"]).unwrap();
    assert_eq!(
        filter,
        serde_json::json!({"type": ["policy.cancelled", "policy.issued"]})
    );

    // No filter any more: the policy is removed (SNS takes `{}` for that).
    let everything = Subscription::new("queue").to_topic("topic", TypeFilter::All);
    transport.subscribe(&everything).await.unwrap();
    let subscriptions = subscriptions_of(&clients, &topic_arn, &queue_arn).await;
    assert_eq!(subscriptions.len(), 1);
    let attributes = subscription_attributes(&clients, &subscriptions[0]).await;
    let filter = attributes
        .get("FilterPolicy")
        .map(|text| text.trim())
        .unwrap_or_default();
    assert!(
        filter.is_empty() || filter == "{}",
        "no filter is left: {filter:?}"
    );
}

async fn queue_attribute(clients: &AwsClients, url: &str, name: QueueAttributeName) -> String {
    let read = clients
        .sqs()
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(name.clone())
        .send()
        .await
        .unwrap();
    read.attributes()
        .and_then(|attributes| attributes.get(&name))
        .cloned()
        .unwrap_or_else(|| panic!("{url} has no {name:?}"))
}

async fn subscriptions_of(clients: &AwsClients, topic_arn: &str, queue_arn: &str) -> Vec<String> {
    let listed = clients
        .sns()
        .list_subscriptions_by_topic()
        .topic_arn(topic_arn)
        .send()
        .await
        .unwrap();
    listed
        .subscriptions()
        .iter()
        .filter(|subscription| subscription.endpoint() == Some(queue_arn))
        .filter_map(|subscription| subscription.subscription_arn().map(str::to_owned))
        .collect()
}

async fn subscription_attributes(
    clients: &AwsClients,
    subscription_arn: &str,
) -> std::collections::HashMap<String, String> {
    clients
        .sns()
        .get_subscription_attributes()
        .subscription_arn(subscription_arn)
        .send()
        .await
        .unwrap()
        .attributes()
        .cloned()
        .unwrap_or_default()
}
