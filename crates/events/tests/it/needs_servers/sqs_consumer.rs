//! The SQS consumer runtime against the real emulator: handling and deleting, raw and
//! SNS-wrapped bodies, the visibility heartbeat, FIFO group order, retry backoff, the
//! dead-letter queue and its attribute limit, bounded concurrency, graceful drain, and a
//! consumer process killed mid-handler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageAttributeValue, QueueAttributeName};
use dovetail_events::consumer::sqs::{
    ConsumerError, REASON_ATTRIBUTE, SOURCE_ATTRIBUTE, SqsConsumer, SqsConsumerConfig,
};
use dovetail_events::consumer::{ConsumerReport, Delivery, HandlerError, RetryBackoff};
use dovetail_testkit::aws::{DeadLetter, Queue, QueueSpec, fresh_queue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const SECOND: Duration = Duration::from_secs(1);

/// A configuration that keeps the suite fast: short polls, short visibility, quick flushes.
fn fast_config(queue: &Queue) -> SqsConsumerConfig {
    let mut config = SqsConsumerConfig::new(&queue.url);
    config.wait_time = SECOND;
    config.visibility_timeout = 4 * SECOND;
    config.heartbeat_every = SECOND;
    config.delete_flush_interval = Duration::from_millis(50);
    config.drain_timeout = 10 * SECOND;
    config.retry_backoff = RetryBackoff::new(SECOND, 4 * SECOND);
    config
}

/// A consumer running in the background.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<ConsumerReport, ConsumerError>>,
}

impl Running {
    fn start<S>(sqs: &aws_sdk_sqs::Client, config: SqsConsumerConfig, handler: S) -> Self
    where
        S: tower::Service<Delivery, Response = (), Error = HandlerError> + Clone + Send + 'static,
        S::Future: Send + 'static,
    {
        let stop = CancellationToken::new();
        let consumer = SqsConsumer::new(sqs.clone(), config);
        let task = tokio::spawn(consumer.run(handler, stop.clone().cancelled_owned()));
        Self { stop, task }
    }

    async fn stop(self) -> ConsumerReport {
        self.stop.cancel();
        tokio::time::timeout(30 * SECOND, self.task)
            .await
            .expect("the consumer stops within 30 s")
            .unwrap()
            .unwrap()
    }
}

/// Polls `condition` every 50 ms until it holds or `within` passed.
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < within, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &Queue, body: &str) -> String {
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body(body)
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap()
}

async fn send_to_group(sqs: &aws_sdk_sqs::Client, queue: &Queue, group: &str, body: &str) {
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(format!("{group}-{body}"))
        .send()
        .await
        .unwrap();
}

/// (visible, in flight) messages of a queue.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &Queue) -> (u64, u64) {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |name| {
        attributes
            .get(&name)
            .and_then(|value: &String| value.parse().ok())
            .unwrap_or(0)
    };
    (
        count(QueueAttributeName::ApproximateNumberOfMessages),
        count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Receives from `queue` until `expected` messages arrived or `within` passed.
async fn receive_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &Queue,
    expected: usize,
    within: Duration,
) -> Vec<Message> {
    let mut received = Vec::new();
    let started = Instant::now();
    while received.len() < expected && started.elapsed() < within {
        let output = sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(30)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        received.extend(output.messages.unwrap_or_default());
    }
    received
}

fn string_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .unwrap()
}

fn attribute_text<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message
        .message_attributes()
        .and_then(|attributes| attributes.get(name))
        .and_then(|value| value.string_value())
}

/// Every delivery a recording handler saw, in order.
type Seen = Arc<Mutex<Vec<Delivery>>>;

/// Decides a recording handler's answer to a delivery.
type Answer = Arc<dyn Fn(&Delivery) -> Result<(), HandlerError> + Send + Sync>;

/// A handler that records every delivery and answers as told.
#[derive(Clone)]
struct Recording {
    seen: Seen,
    answer: Answer,
}

impl tower::Service<Delivery> for Recording {
    type Response = ();
    type Error = HandlerError;
    type Future = std::future::Ready<Result<(), HandlerError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), HandlerError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let answer = (self.answer)(&delivery);
        self.seen.lock().unwrap().push(delivery);
        std::future::ready(answer)
    }
}

/// A handler that records every delivery and answers with `answer`.
fn recording(
    answer: impl Fn(&Delivery) -> Result<(), HandlerError> + Send + Sync + 'static,
) -> (Seen, Recording) {
    let seen = Seen::default();
    let handler = Recording {
        seen: Arc::clone(&seen),
        answer: Arc::new(answer),
    };
    (seen, handler)
}

#[tokio::test]
async fn a_message_is_handled_and_deleted() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-basic", &QueueSpec::default()).await;
    let message_id = send(&sqs, &queue, "hello").await;
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body("with attributes")
        .message_attributes("type", string_attribute("policy.issued"))
        .send()
        .await
        .unwrap();

    let (seen, handler) = recording(|_| Ok(()));
    let running = Running::start(&sqs, fast_config(&queue), handler);
    wait_until(10 * SECOND, "both messages are handled", || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    let report = running.stop().await;

    let seen = seen.lock().unwrap().clone();
    let hello = seen.iter().find(|d| d.body == "hello").unwrap();
    assert_eq!(hello.message_id, message_id);
    assert_eq!(hello.receive_count, 1);
    assert_eq!(hello.source_queue, queue.name);
    assert!(hello.sent_at.is_some());
    let typed = seen.iter().find(|d| d.body == "with attributes").unwrap();
    assert_eq!(typed.attribute("type"), Some("policy.issued"));
    assert_eq!(report.received, 2);
    assert_eq!(report.handled, 2);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0), "both were deleted");
}

#[cfg(feature = "sns")]
#[tokio::test]
async fn raw_and_sns_wrapped_bodies_arrive_as_the_same_delivery() {
    use dovetail_testkit::aws::{SubscriptionSpec, TopicSpec, fresh_topic, subscribe_queue};

    let aws = dovetail_testkit::aws().await;
    let (sns, sqs) = (aws.sns(), aws.sqs());
    let topic = fresh_topic(&sns, "consumer-bodies", &TopicSpec::default()).await;
    let raw = fresh_queue(&sqs, "consumer-raw", &QueueSpec::default()).await;
    let wrapped = fresh_queue(&sqs, "consumer-wrapped", &QueueSpec::default()).await;
    for (queue, raw_message_delivery) in [(&raw, true), (&wrapped, false)] {
        let spec = SubscriptionSpec {
            filter_policy: None,
            raw_message_delivery,
        };
        subscribe_queue(&sns, &sqs, &topic, queue, &spec).await;
    }
    let body = r#"{"policyId":"pol-42","note":"ünïcode \"quoted\""}"#;
    sns.publish()
        .topic_arn(&topic.arn)
        .message(body)
        .message_attributes(
            "type",
            aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value("policy.issued")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut deliveries = Vec::new();
    for queue in [&raw, &wrapped] {
        let (seen, handler) = recording(|_| Ok(()));
        let running = Running::start(&sqs, fast_config(queue), handler);
        wait_until(10 * SECOND, "the message arrives", || {
            !seen.lock().unwrap().is_empty()
        })
        .await;
        let report = running.stop().await;
        assert_eq!(report.handled, 1);
        deliveries.push(seen.lock().unwrap()[0].clone());
    }
    let (raw_delivery, wrapped_delivery) = (&deliveries[0], &deliveries[1]);
    assert_eq!(raw_delivery.body, body);
    assert_eq!(
        wrapped_delivery.body, body,
        "the SNS notification is unwrapped"
    );
    assert_eq!(raw_delivery.attribute("type"), Some("policy.issued"));
    assert_eq!(wrapped_delivery.attribute("type"), Some("policy.issued"));
    assert_eq!(raw_delivery.topic_arn, None);
    assert_eq!(
        wrapped_delivery.topic_arn.as_deref(),
        Some(topic.arn.as_str())
    );
}

#[tokio::test]
async fn a_slow_handler_keeps_its_message_through_heartbeats() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-slow", &QueueSpec::default()).await;
    send(&sqs, &queue, "slow").await;

    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut config = fast_config(&queue);
    config.visibility_timeout = 2 * SECOND;
    config.heartbeat_every = Duration::from_millis(700);
    let consumers: Vec<Running> = (0..2)
        .map(|consumer| {
            let starts = Arc::clone(&starts);
            let handler = tower::service_fn(move |delivery: Delivery| {
                starts.lock().unwrap().push((consumer, delivery.message_id));
                async {
                    tokio::time::sleep(5 * SECOND).await;
                    Ok::<(), HandlerError>(())
                }
            });
            Running::start(&sqs, config.clone(), handler)
        })
        .collect();

    wait_until(10 * SECOND, "the slow message is picked up", || {
        !starts.lock().unwrap().is_empty()
    })
    .await;
    // Well past the 2 s visibility timeout: the other consumer keeps polling meanwhile.
    tokio::time::sleep(7 * SECOND).await;
    let mut reports = Vec::new();
    for running in consumers {
        reports.push(running.stop().await);
    }

    assert_eq!(
        starts.lock().unwrap().len(),
        1,
        "handled once, never redelivered to the other consumer"
    );
    let handled: u64 = reports.iter().map(|r| r.handled).sum();
    let extensions: u64 = reports.iter().map(|r| r.visibility_extensions).sum();
    assert_eq!(handled, 1);
    assert!(
        extensions >= 5,
        "about one heartbeat per 0.7 s: {reports:?}"
    );
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0));
}

#[tokio::test]
async fn fifo_groups_keep_their_order_and_run_in_parallel() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let spec = QueueSpec {
        fifo: true,
        ..QueueSpec::default()
    };
    let queue = fresh_queue(&sqs, "consumer-fifo", &spec).await;
    let groups = ["g0", "g1", "g2"];
    for index in 0..10 {
        for group in groups {
            send_to_group(&sqs, &queue, group, &format!("{index}")).await;
        }
    }

    // (group, index, start, end) of each handling.
    type Spans = Vec<(String, u32, Instant, Instant)>;
    let spans: Arc<Mutex<Spans>> = Arc::default();
    let recorded = Arc::clone(&spans);
    let handler = tower::service_fn(move |delivery: Delivery| {
        let recorded = Arc::clone(&recorded);
        async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let index = delivery.body.parse().unwrap();
            let group = delivery.group_id.unwrap();
            recorded
                .lock()
                .unwrap()
                .push((group, index, start, Instant::now()));
            Ok::<(), HandlerError>(())
        }
    });
    let running = Running::start(&sqs, fast_config(&queue), handler);
    wait_until(30 * SECOND, "all 30 messages are handled", || {
        spans.lock().unwrap().len() == 30
    })
    .await;
    let report = running.stop().await;
    assert_eq!(report.handled, 30, "{report:?}");

    let spans = spans.lock().unwrap().clone();
    let mut by_group: BTreeMap<String, Vec<(u32, Instant, Instant)>> = BTreeMap::new();
    for (group, index, start, end) in &spans {
        by_group
            .entry(group.clone())
            .or_default()
            .push((*index, *start, *end));
    }
    for (group, handled) in &mut by_group {
        handled.sort_by_key(|(_, start, _)| *start);
        let order: Vec<u32> = handled.iter().map(|(index, _, _)| *index).collect();
        assert_eq!(order, (0..10).collect::<Vec<_>>(), "group {group} in order");
        for pair in handled.windows(2) {
            assert!(pair[0].2 <= pair[1].1, "group {group}: one at a time");
        }
    }
    let overlapping = spans.iter().any(|(g1, _, s1, e1)| {
        spans
            .iter()
            .any(|(g2, _, s2, e2)| g1 != g2 && s1 < e2 && s2 < e1)
    });
    assert!(overlapping, "different groups ran in parallel");
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0));
}

#[tokio::test]
async fn a_fifo_retry_holds_back_the_rest_of_its_group() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let spec = QueueSpec {
        fifo: true,
        ..QueueSpec::default()
    };
    let queue = fresh_queue(&sqs, "consumer-fifo-retry", &spec).await;
    for index in 0..5 {
        send_to_group(&sqs, &queue, "g", &format!("{index}")).await;
    }

    // Message 2 fails on its first receive.
    let (seen, handler) = recording(|delivery| {
        if delivery.body == "2" && delivery.receive_count == 1 {
            Err(HandlerError::retriable("not yet"))
        } else {
            Ok(())
        }
    });
    let running = Running::start(&sqs, fast_config(&queue), handler);
    wait_until(20 * SECOND, "every message is handled", || {
        let seen = seen.lock().unwrap();
        seen.iter().filter(|d| d.body == "4").count() >= 1
    })
    .await;
    tokio::time::sleep(SECOND).await;
    let report = running.stop().await;

    let attempts: Vec<(String, u32)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|d| (d.body.clone(), d.receive_count))
        .collect();
    let successes: Vec<&str> = attempts
        .iter()
        .filter(|(body, count)| !(body == "2" && *count == 1))
        .map(|(body, _)| body.as_str())
        .collect();
    assert_eq!(
        successes,
        ["0", "1", "2", "3", "4"],
        "nothing after 2 ran before 2 succeeded: {attempts:?}"
    );
    let retried_at = attempts
        .iter()
        .position(|a| a == &("2".to_owned(), 1))
        .unwrap();
    assert_eq!(retried_at, 2);
    assert_eq!(report.retried, 1);
    assert_eq!(report.handled, 5);
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0));
}

#[tokio::test]
async fn a_retriable_failure_is_redelivered_with_a_growing_receive_count_and_backoff() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-retry", &QueueSpec::default()).await;
    send(&sqs, &queue, "flaky").await;

    let attempts: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let recorded = Arc::clone(&attempts);
    let handler = tower::service_fn(move |delivery: Delivery| {
        recorded
            .lock()
            .unwrap()
            .push((delivery.receive_count, Instant::now()));
        std::future::ready(if delivery.receive_count < 3 {
            Err(HandlerError::retriable("the policy service is down"))
        } else {
            Ok(())
        })
    });
    let mut config = fast_config(&queue);
    config.retry_backoff = RetryBackoff::new(SECOND, 10 * SECOND);
    let running = Running::start(&sqs, config, handler);
    wait_until(20 * SECOND, "the third attempt", || {
        attempts.lock().unwrap().len() == 3
    })
    .await;
    let report = running.stop().await;

    let attempts = attempts.lock().unwrap().clone();
    let counts: Vec<u32> = attempts.iter().map(|(count, _)| *count).collect();
    assert_eq!(counts, [1, 2, 3]);
    let first_gap = attempts[1].1 - attempts[0].1;
    let second_gap = attempts[2].1 - attempts[1].1;
    // base × 2^(count-1): 1 s after the first receive, 2 s after the second.
    assert!(first_gap >= Duration::from_millis(900), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1900), "{second_gap:?}");
    assert!(
        second_gap < 4 * SECOND,
        "not the 4 s visibility timeout: {second_gap:?}"
    );
    assert_eq!((report.retried, report.handled), (2, 1));
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0));
}

#[tokio::test]
async fn rejected_and_undecodable_messages_go_to_the_dead_letter_queue_with_a_reason() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-poison", &QueueSpec::default()).await;
    let dead = fresh_queue(&sqs, "consumer-poison-dlq", &QueueSpec::default()).await;

    // Ten attributes: the most SQS allows, so the copy must drop some to add its own.
    let mut request = sqs
        .send_message()
        .queue_url(&queue.url)
        .message_body("reject me");
    for index in 0..10 {
        request = request.message_attributes(format!("a{index}"), string_attribute("x"));
    }
    request.send().await.unwrap();
    let damaged = r#"{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:000000000000:t","Message":"trunc"#;
    send(&sqs, &queue, damaged).await;
    send(&sqs, &queue, "fine").await;

    let (seen, handler) = recording(|delivery| {
        if delivery.body == "reject me" {
            Err(HandlerError::rejected("unknown policy pol-0"))
        } else {
            Ok(())
        }
    });
    let mut config = fast_config(&queue);
    config.dead_letter_queue_url = Some(dead.url.clone());
    let running = Running::start(&sqs, config, handler);
    wait_until(
        10 * SECOND,
        "the good and the rejected message are handled",
        || seen.lock().unwrap().len() == 2,
    )
    .await;
    tokio::time::sleep(SECOND).await;
    let report = running.stop().await;
    assert!(
        seen.lock().unwrap().iter().all(|d| d.body != damaged),
        "an undecodable body never reaches the handler"
    );
    assert_eq!((report.handled, report.dead_lettered), (1, 2), "{report:?}");
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0), "originals deleted");

    let letters = receive_all(&sqs, &dead, 2, 5 * SECOND).await;
    assert_eq!(letters.len(), 2);
    let rejected = letters
        .iter()
        .find(|m| m.body() == Some("reject me"))
        .unwrap();
    let reason = attribute_text(rejected, REASON_ATTRIBUTE).unwrap();
    assert!(reason.starts_with("unknown policy pol-0"), "{reason}");
    assert!(
        reason.ends_with("(attributes dropped to fit the limit of 10: a9, dovetail-dlq-source)"),
        "{reason}"
    );
    assert_eq!(rejected.message_attributes().unwrap().len(), 10);
    assert_eq!(attribute_text(rejected, "a0"), Some("x"));

    let undecodable = letters.iter().find(|m| m.body() == Some(damaged)).unwrap();
    let reason = attribute_text(undecodable, REASON_ATTRIBUTE).unwrap();
    assert!(reason.starts_with("undecodable: "), "{reason}");
    assert_eq!(
        attribute_text(undecodable, SOURCE_ATTRIBUTE),
        Some(queue.name.as_str())
    );
}

#[tokio::test]
async fn a_fifo_rejection_goes_to_a_fifo_dead_letter_queue_and_the_group_goes_on() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let spec = QueueSpec {
        fifo: true,
        ..QueueSpec::default()
    };
    let queue = fresh_queue(&sqs, "consumer-fifo-poison", &spec).await;
    let dead = fresh_queue(&sqs, "consumer-fifo-poison-dlq", &spec).await;
    for body in ["0", "poison", "2"] {
        send_to_group(&sqs, &queue, "g", body).await;
    }
    let (seen, handler) = recording(|delivery| {
        if delivery.body == "poison" {
            Err(HandlerError::rejected("poison"))
        } else {
            Ok(())
        }
    });
    let mut config = fast_config(&queue);
    config.dead_letter_queue_url = Some(dead.url.clone());
    let running = Running::start(&sqs, config, handler);
    wait_until(10 * SECOND, "the group is done", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    let report = running.stop().await;
    let bodies: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.body.clone())
        .collect();
    assert_eq!(bodies, ["0", "poison", "2"]);
    assert_eq!((report.handled, report.dead_lettered), (2, 1));

    let letters = receive_all(&sqs, &dead, 1, 5 * SECOND).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body(), Some("poison"));
    assert_eq!(
        attribute_text(&letters[0], REASON_ATTRIBUTE),
        Some("poison")
    );
}

#[tokio::test]
async fn without_a_dead_letter_queue_a_rejection_is_left_to_the_redrive_policy() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let redrive_target = fresh_queue(&sqs, "consumer-redrive-dlq", &QueueSpec::default()).await;
    let spec = QueueSpec {
        dead_letter: Some(DeadLetter {
            queue_arn: redrive_target.arn.clone(),
            max_receive_count: 2,
        }),
        ..QueueSpec::default()
    };
    let queue = fresh_queue(&sqs, "consumer-redrive", &spec).await;
    send(&sqs, &queue, "poison").await;

    let (seen, handler) = recording(|_| Err(HandlerError::rejected("poison")));
    let mut config = fast_config(&queue);
    config.retry_backoff = RetryBackoff::new(SECOND, SECOND);
    let running = Running::start(&sqs, config, handler);
    wait_until(15 * SECOND, "two attempts", || {
        seen.lock().unwrap().len() >= 2
    })
    .await;
    // After the second receive, SQS moves it to the redrive target instead of a third.
    tokio::time::sleep(3 * SECOND).await;
    let report = running.stop().await;

    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "held back, not retried in a loop"
    );
    assert_eq!(report.failed, 2, "{report:?}");
    let moved = receive_all(&sqs, &redrive_target, 1, 5 * SECOND).await;
    assert_eq!(moved.len(), 1, "the queue's redrive policy moved it");
    assert_eq!(moved[0].body(), Some("poison"));
}

#[tokio::test]
async fn at_most_max_in_flight_handlers_run_at_once() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-bounded", &QueueSpec::default()).await;
    for index in 0..12 {
        send(&sqs, &queue, &format!("{index}")).await;
    }

    #[derive(Default)]
    struct Gauge {
        running: usize,
        most: usize,
        done: usize,
    }
    let gauge = Arc::new(Mutex::new(Gauge::default()));
    let shared = Arc::clone(&gauge);
    let handler = tower::service_fn(move |_: Delivery| {
        let gauge = Arc::clone(&shared);
        async move {
            {
                let mut gauge = gauge.lock().unwrap();
                gauge.running += 1;
                gauge.most = gauge.most.max(gauge.running);
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
            let mut gauge = gauge.lock().unwrap();
            gauge.running -= 1;
            gauge.done += 1;
            Ok::<(), HandlerError>(())
        }
    });
    let mut config = fast_config(&queue);
    config.max_in_flight = 3;
    let running = Running::start(&sqs, config, handler);
    wait_until(20 * SECOND, "all 12 are handled", || {
        gauge.lock().unwrap().done == 12
    })
    .await;
    let report = running.stop().await;

    let most = gauge.lock().unwrap().most;
    assert!(most <= 3, "{most} handlers ran at once");
    assert!(most >= 2, "handlers ran in parallel ({most})");
    assert_eq!(
        report.received, 12,
        "never received more than it could start"
    );
    assert_eq!(report.handled, 12);
}

#[tokio::test]
async fn shutdown_drains_running_handlers_and_deletes_their_messages() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-drain", &QueueSpec::default()).await;
    for index in 0..4 {
        send(&sqs, &queue, &format!("{index}")).await;
    }
    let counts: Arc<Mutex<(usize, usize)>> = Arc::default();
    let shared = Arc::clone(&counts);
    let handler = tower::service_fn(move |_: Delivery| {
        let counts = Arc::clone(&shared);
        async move {
            counts.lock().unwrap().0 += 1;
            tokio::time::sleep(2 * SECOND).await;
            counts.lock().unwrap().1 += 1;
            Ok::<(), HandlerError>(())
        }
    });
    let mut config = fast_config(&queue);
    config.max_in_flight = 4;
    let running = Running::start(&sqs, config, handler);
    wait_until(10 * SECOND, "all four handlers started", || {
        counts.lock().unwrap().0 == 4
    })
    .await;
    assert_eq!(counts.lock().unwrap().1, 0, "none finished yet");

    let report = running.stop().await;
    assert_eq!(
        *counts.lock().unwrap(),
        (4, 4),
        "the running handlers finished"
    );
    assert_eq!(report.handled, 4);
    assert_eq!(report.abandoned, 0);
    assert_eq!(
        queue_depth(&sqs, &queue).await,
        (0, 0),
        "their deletes were flushed before run returned"
    );
}

#[tokio::test]
async fn a_drain_that_times_out_abandons_the_handler_and_the_message_comes_back() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-abandon", &QueueSpec::default()).await;
    send(&sqs, &queue, "stuck").await;
    let started = Arc::new(Mutex::new(0));
    let shared = Arc::clone(&started);
    let handler = tower::service_fn(move |_: Delivery| {
        *shared.lock().unwrap() += 1;
        async {
            tokio::time::sleep(60 * SECOND).await;
            Ok::<(), HandlerError>(())
        }
    });
    let mut config = fast_config(&queue);
    config.visibility_timeout = 2 * SECOND;
    config.heartbeat_every = Duration::from_millis(500);
    config.drain_timeout = Duration::from_millis(500);
    let running = Running::start(&sqs, config, handler);
    wait_until(10 * SECOND, "the handler started", || {
        *started.lock().unwrap() == 1
    })
    .await;
    let stopping = Instant::now();
    let report = running.stop().await;
    assert!(
        stopping.elapsed() < 5 * SECOND,
        "bounded by the drain timeout"
    );
    assert_eq!(report.abandoned, 1, "{report:?}");

    // No heartbeat any more: the message is visible again after the visibility timeout.
    let again = receive_all(&sqs, &queue, 1, 6 * SECOND).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body(), Some("stuck"));
}

#[tokio::test]
async fn a_message_arriving_while_a_stopped_consumer_was_long_polling_is_put_back_at_once() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-stop-poll", &QueueSpec::default()).await;
    let (seen, handler) = recording(|_| Ok(()));
    let mut config = fast_config(&queue);
    config.wait_time = 5 * SECOND;
    config.visibility_timeout = 60 * SECOND;
    let running = Running::start(&sqs, config, handler);
    // Let the consumer's long poll reach the queue, then stop it while the poll waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = tokio::spawn(running.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&sqs, &queue, "late").await;
    let report = stopping.await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "a stopped consumer handles nothing"
    );
    assert_eq!(report.handled, 0, "{report:?}");

    // SQS hands what arrives to the poll in flight; the consumer made it visible again
    // rather than leaving it invisible for the minute of its visibility timeout.
    let again = receive_all(&sqs, &queue, 1, 3 * SECOND).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body(), Some("late"));
}

#[tokio::test]
async fn a_queue_that_does_not_exist_stops_the_consumer_with_an_error() {
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-gone", &QueueSpec::default()).await;
    sqs.delete_queue()
        .queue_url(&queue.url)
        .send()
        .await
        .unwrap();

    let (_, handler) = recording(|_| Ok(()));
    let consumer = SqsConsumer::new(sqs.clone(), fast_config(&queue));
    let result = tokio::time::timeout(
        10 * SECOND,
        consumer.run(handler, std::future::pending::<()>()),
    )
    .await
    .expect("a missing queue is not retried forever");
    let error = result.unwrap_err();
    assert!(
        matches!(&error, ConsumerError::QueueUnavailable { queue: url, .. } if *url == queue.url),
        "{error:?}"
    );
}

/// The environment variable that makes [`consumer_child_process`] run a consumer.
const CHILD_QUEUE_VAR: &str = "DOVETAIL_TEST_KILLED_CONSUMER_QUEUE";
/// The file the child writes the message id to once its handler started.
const CHILD_MARKER_VAR: &str = "DOVETAIL_TEST_KILLED_CONSUMER_MARKER";

/// The child half of [`a_consumer_killed_mid_handler_has_its_message_redelivered_and_applied_once`]:
/// that test runs this test binary again, with only itself and the child variables set,
/// as a consumer process to kill.
async fn consumer_child_process(queue_url: String, marker: String) {
    let sqs = dovetail_testkit::aws().await.sqs();
    let mut config = SqsConsumerConfig::new(queue_url);
    config.wait_time = SECOND;
    config.visibility_timeout = 2 * SECOND;
    config.heartbeat_every = Duration::from_millis(500);
    let handler = tower::service_fn(move |delivery: Delivery| {
        std::fs::write(&marker, &delivery.message_id).unwrap();
        async {
            // Killed long before this ends: this process never completes the message.
            tokio::time::sleep(600 * SECOND).await;
            Ok::<(), HandlerError>(())
        }
    });
    let consumer = SqsConsumer::new(sqs, config);
    consumer
        .run(handler, std::future::pending::<()>())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_consumer_killed_mid_handler_has_its_message_redelivered_and_applied_once() {
    if let (Ok(queue_url), Ok(marker)) = (
        std::env::var(CHILD_QUEUE_VAR),
        std::env::var(CHILD_MARKER_VAR),
    ) {
        consumer_child_process(queue_url, marker).await;
        return;
    }
    let sqs = dovetail_testkit::aws().await.sqs();
    let queue = fresh_queue(&sqs, "consumer-killed", &QueueSpec::default()).await;
    let message_id = send(&sqs, &queue, "apply me").await;
    let marker = std::env::temp_dir().join(format!("{}.started", queue.name));

    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "needs_servers::sqs_consumer::a_consumer_killed_mid_handler_has_its_message_redelivered_and_applied_once",
            "--nocapture",
        ])
        .env(CHILD_QUEUE_VAR, &queue.url)
        .env(CHILD_MARKER_VAR, &marker)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < 20 * SECOND,
            "the child consumer never started its handler"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), message_id);
    // Heartbeats ran in the child for a while: it is the death that frees the message.
    tokio::time::sleep(3 * SECOND).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&marker);

    // The effect: a count of applications per message id.
    let applied: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let receive_counts = Arc::new(Mutex::new(Vec::new()));
    let (effects, counts) = (Arc::clone(&applied), Arc::clone(&receive_counts));
    let handler = tower::service_fn(move |delivery: Delivery| {
        counts.lock().unwrap().push(delivery.receive_count);
        *effects
            .lock()
            .unwrap()
            .entry(delivery.message_id)
            .or_default() += 1;
        std::future::ready(Ok::<(), HandlerError>(()))
    });
    let running = Running::start(&sqs, fast_config(&queue), handler);
    wait_until(10 * SECOND, "the message is redelivered", || {
        !applied.lock().unwrap().is_empty()
    })
    .await;
    // Long enough for a wrong second delivery to show.
    tokio::time::sleep(5 * SECOND).await;
    let report = running.stop().await;

    assert_eq!(
        applied.lock().unwrap().clone(),
        HashMap::from([(message_id, 1)]),
        "applied exactly once"
    );
    let receive_counts = receive_counts.lock().unwrap().clone();
    assert!(receive_counts[0] >= 2, "a redelivery: {receive_counts:?}");
    assert_eq!(report.handled, 1);
    assert_eq!(queue_depth(&sqs, &queue).await, (0, 0));
}
