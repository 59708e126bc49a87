//! The SNS publisher against the real emulator: bodies and attributes, filter policies,
//! FIFO order and deduplication, size refusal, and a missing topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use dovetail_events::envelope::{Envelope, MessageAttributes};
use dovetail_events::publish::{PublishError, Publisher, SnsPublisher, SnsPublisherConfig};
use dovetail_testkit::aws::{
    Queue, QueueSpec, SubscriptionSpec, TopicSpec, fresh_queue, fresh_topic, subscribe_queue,
};

use crate::support::{claim_event, policy_event};

struct Wiring {
    publisher: SnsPublisher,
    sqs: aws_sdk_sqs::Client,
    queue: Queue,
}

async fn wire(fifo: bool, filter_policy: Option<serde_json::Value>) -> Wiring {
    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let topic = fresh_topic(&sns, "publisher", &TopicSpec { fifo }).await;
    let queue = fresh_queue(
        &sqs,
        "publisher",
        &QueueSpec {
            fifo,
            ..QueueSpec::default()
        },
    )
    .await;
    let subscription = SubscriptionSpec {
        filter_policy,
        raw_message_delivery: true,
    };
    subscribe_queue(&sns, &sqs, &topic, &queue, &subscription).await;
    let publisher = SnsPublisher::new(
        sns,
        SnsPublisherConfig {
            topic_arn: topic.arn,
        },
    );
    Wiring {
        publisher,
        sqs,
        queue,
    }
}

/// Receives until `expected` messages arrived or `quiet` passed without any new one.
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &Queue, expected: usize) -> Vec<Message> {
    let mut received = Vec::new();
    let mut last_arrival = Instant::now();
    while last_arrival.elapsed() < Duration::from_secs(3) {
        let output = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = output.messages.unwrap_or_default();
        if !messages.is_empty() {
            last_arrival = Instant::now();
        }
        for message in messages {
            sqs.delete_message()
                .queue_url(&queue.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            received.push(message);
        }
        if received.len() > expected {
            break;
        }
    }
    received
}

fn envelope_of(message: &Message) -> Envelope {
    serde_json::from_str(message.body().unwrap()).unwrap()
}

#[tokio::test]
async fn a_batch_of_25_arrives_as_envelopes_with_their_attributes() {
    let wiring = wire(false, None).await;
    let batch: Vec<Envelope> = (0..25_u64)
        .map(|i| policy_event(&format!("pol-{}", i % 5), i / 5 + 1, 10))
        .collect();

    let results = wiring.publisher.publish_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let received = drain(&wiring.sqs, &wiring.queue, batch.len()).await;
    assert_eq!(received.len(), batch.len());
    let by_id: HashMap<_, _> = batch.iter().map(|e| (e.id(), e)).collect();
    for message in &received {
        let envelope = envelope_of(message);
        assert_eq!(
            Some(&&envelope),
            by_id.get(&envelope.id()),
            "the body is the envelope"
        );
        let attributes = message.message_attributes().unwrap();
        let value = |name: &str| {
            attributes
                .get(name)
                .and_then(|value| value.string_value())
                .map(str::to_owned)
        };
        assert_eq!(
            value(MessageAttributes::EVENT_TYPE).as_deref(),
            Some("policy.issued")
        );
        assert_eq!(
            value(MessageAttributes::SOURCE).as_deref(),
            Some("policy-service")
        );
        assert_eq!(
            value(MessageAttributes::SCHEMA_VERSION).as_deref(),
            Some("1")
        );
    }
}

#[tokio::test]
async fn subscriptions_filter_on_the_event_type_attribute() {
    let filter = serde_json::json!({ MessageAttributes::EVENT_TYPE: ["claim.filed"] });
    let wiring = wire(false, Some(filter)).await;
    let batch = vec![
        policy_event("pol-1", 1, 0),
        claim_event("clm-1"),
        policy_event("pol-2", 1, 0),
    ];

    let results = wiring.publisher.publish_batch(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");

    let received = drain(&wiring.sqs, &wiring.queue, 1).await;
    let ids: Vec<_> = received.iter().map(|m| envelope_of(m).id()).collect();
    assert_eq!(
        ids,
        [batch[1].id()],
        "only the claim event passes the filter"
    );
}

#[tokio::test]
async fn fifo_keeps_each_aggregate_in_order_and_drops_republished_events() {
    let wiring = wire(true, None).await;
    assert!(wiring.publisher.is_fifo());
    // Interleaved: three aggregates, five events each.
    let batch: Vec<Envelope> = (1..=5_u64)
        .flat_map(|sequence| ["a", "b", "c"].map(|aggregate| policy_event(aggregate, sequence, 0)))
        .collect();

    let first = wiring.publisher.publish_batch(&batch).await;
    assert!(first.iter().all(Result::is_ok), "{first:?}");
    // A relay that crashed before recording success publishes the same events again.
    let again = wiring.publisher.publish_batch(&batch).await;
    assert!(again.iter().all(Result::is_ok), "{again:?}");

    let received = drain(&wiring.sqs, &wiring.queue, batch.len()).await;
    assert_eq!(received.len(), batch.len(), "deduplicated by event id");
    for aggregate in ["a", "b", "c"] {
        let sequences: Vec<u64> = received
            .iter()
            .map(envelope_of)
            .filter(|envelope| envelope.aggregate_id().as_str() == aggregate)
            .map(|envelope| envelope.sequence().get())
            .collect();
        assert_eq!(sequences, [1, 2, 3, 4, 5], "aggregate {aggregate} in order");
    }
}

#[tokio::test]
async fn an_oversized_event_is_refused_before_sending_and_holds_back_its_aggregate() {
    let wiring = wire(false, None).await;
    let batch = vec![
        policy_event("big", 1, 300 * 1024),
        policy_event("big", 2, 10),
        policy_event("small", 1, 10),
    ];

    let results = wiring.publisher.publish_batch(&batch).await;

    let Err(PublishError::TooLarge(too_large)) = &results[0] else {
        panic!("expected TooLarge, got {:?}", results[0]);
    };
    let message = too_large.to_string();
    assert!(
        message.contains("SNS") && message.contains("262144"),
        "{message}"
    );
    assert!(!results[0].as_ref().unwrap_err().is_retriable());
    assert_eq!(
        results[1],
        Err(PublishError::EarlierEventFailed {
            earlier: batch[0].id()
        })
    );
    assert!(results[2].is_ok());
    let received = drain(&wiring.sqs, &wiring.queue, 1).await;
    let ids: Vec<_> = received.iter().map(|m| envelope_of(m).id()).collect();
    assert_eq!(ids, [batch[2].id()]);
}

#[tokio::test]
async fn a_missing_topic_is_refused_not_retried() {
    let aws = dovetail_testkit::aws().await;
    let publisher = SnsPublisher::new(
        aws.sns(),
        SnsPublisherConfig {
            topic_arn: "arn:aws:sns:us-east-1:000000000000:dvt-no-such-topic".to_owned(),
        },
    );
    let result = publisher.publish(&policy_event("pol-1", 1, 0)).await;
    let error = result.expect_err("the topic does not exist");
    assert!(
        matches!(error, PublishError::Rejected { .. }),
        "a missing topic is the caller's fault: {error:?}"
    );
    assert!(!error.is_retriable());
}
