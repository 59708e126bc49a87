//! Run with: `cargo run -p example-sqs-idempotent-consumer` (needs `AWS_ENDPOINT_URL`)
//!
//! An SQS consumer behind the idempotency layer: the same `payment.received` event
//! arrives twice in the queue (as it does after a producer's retry or a relay's crash),
//! and the account is credited once. The layer keeps its records in DynamoDB, so every
//! instance of the consumer sees them.
//!
//! It runs against the AWS emulator named by `AWS_ENDPOINT_URL`, with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_REGION` (default `us-east-1`); `cargo xtask servers`
//! starts one and prints what to export. It creates its own queue and table (names
//! prefixed `ex-<run>-`, left in the emulator) and exits non-zero unless there was
//! exactly one effect.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_types::SdkConfig;
use aws_types::region::Region;
use dovetail_events::consumer::sqs::{SqsConsumer, SqsConsumerConfig};
use dovetail_events::consumer::{EnvelopeLayer, HandlerError, RetryBackoff};
use dovetail_events::envelope::{
    AggregateRef, Envelope, Event, EventMetadata, Sequence, Source, Upcasters,
};
use dovetail_events::idempotency::{
    DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore, IdempotencyConfig, IdempotencyLayer,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A payment to credit to an account.
#[derive(Debug, Serialize, Deserialize)]
struct PaymentReceived {
    account: String,
    cents: u64,
}

impl Event for PaymentReceived {
    const TYPE: &'static str = "payment.received";
    const VERSION: u32 = 1;
}

/// The SDK's configuration from the environment, or what to set.
fn aws_config() -> anyhow::Result<SdkConfig> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint = var("AWS_ENDPOINT_URL").context(
        "AWS_ENDPOINT_URL is not set: point it at an AWS emulator \
         (`cargo xtask servers` starts one and prints what to export)",
    )?;
    let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) else {
        anyhow::bail!(
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set: the emulator takes any \
             (export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test)"
        );
    };
    let credentials = Credentials::new(key, secret, None, None, "environment");
    Ok(SdkConfig::builder()
        .endpoint_url(endpoint)
        .region(Region::new(
            var("AWS_REGION").unwrap_or_else(|| "us-east-1".into()),
        ))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build())
}

/// What the run saw: deliveries handled by the consumer, effects the handler applied,
/// duplicates the layer answered.
#[derive(Debug)]
struct Outcome {
    deliveries: u64,
    effects: u64,
    duplicates: u64,
}

async fn run() -> anyhow::Result<Outcome> {
    let aws = aws_config()?;
    let prefix = format!("ex-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}payments"))
        .send()
        .await?
        .queue_url
        .context("SQS created the queue without a URL")?;

    // ANCHOR: duplicate
    // One event, sent twice: two SQS messages with the same envelope (same event id).
    let payment = Envelope::new(
        Source::parse("payment-service")?,
        AggregateRef::parse("account", "acc-1")?,
        Sequence::FIRST,
        &PaymentReceived {
            account: "acc-1".into(),
            cents: 2_500,
        },
        EventMetadata::default(),
    )?;
    let body = String::from_utf8(payment.to_json_bytes())?;
    for _ in 0..2 {
        sqs.send_message()
            .queue_url(&queue_url)
            .message_body(&body)
            .send()
            .await?;
    }
    println!(
        "sent {} ({}) twice to {queue_url}",
        payment.event_type().as_str(),
        payment.id()
    );
    // ANCHOR_END: duplicate

    // ANCHOR: consumer
    let store = DynamoDbIdempotencyStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        DynamoDbIdempotencyConfig::new(format!("{prefix}payments-idempotency")),
    );
    store.create_table_if_missing().await?;
    let idempotency = IdempotencyLayer::new(store, IdempotencyConfig::new("ledger.payments"));
    let credited = Arc::new(AtomicU64::new(0));
    let effects = Arc::new(AtomicU64::new(0));
    let handler = {
        let (credited, effects) = (Arc::clone(&credited), Arc::clone(&effects));
        tower::service_fn(move |envelope: Envelope| {
            let (credited, effects) = (Arc::clone(&credited), Arc::clone(&effects));
            async move {
                let payment: PaymentReceived = envelope
                    .decode(&Upcasters::new())
                    .map_err(|error| HandlerError::rejected(error.to_string()))?;
                credited.fetch_add(payment.cents, Ordering::SeqCst); // the effect
                effects.fetch_add(1, Ordering::SeqCst);
                println!("credited {} cents to {}", payment.cents, payment.account);
                Ok::<(), HandlerError>(())
            }
        })
    };
    let service = tower::ServiceBuilder::new()
        .layer(idempotency.clone())
        .layer(EnvelopeLayer)
        .service(handler);
    let mut config = SqsConsumerConfig::new(&queue_url);
    config.wait_time = Duration::from_secs(1);
    // The two copies may arrive together: the second then finds the first in progress
    // and is retried a second later, when the layer answers it as a duplicate.
    config.retry_backoff = RetryBackoff::new(Duration::from_secs(1), Duration::from_secs(2));
    let (stop, mut stopped) = watch::channel(false);
    let consumer = SqsConsumer::new(sqs, config);
    let consumer = tokio::spawn(async move {
        consumer
            .run(service, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    // ANCHOR_END: consumer

    let duplicates = || {
        idempotency.stats().duplicates_from_cache() + idempotency.stats().duplicates_from_store()
    };
    let started = tokio::time::Instant::now();
    while (effects.load(Ordering::SeqCst) < 1 || duplicates() < 1)
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let report = consumer.await??;
    println!(
        "account acc-1 holds {} cents",
        credited.load(Ordering::SeqCst)
    );
    Ok(Outcome {
        deliveries: report.handled,
        effects: effects.load(Ordering::SeqCst),
        duplicates: duplicates(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let outcome = run().await?;
    println!(
        "{} deliveries handled, {} effect, {} duplicate answered without a second effect",
        outcome.deliveries, outcome.effects, outcome.duplicates
    );
    anyhow::ensure!(
        outcome.deliveries == 2 && outcome.effects == 1 && outcome.duplicates == 1,
        "expected 2 deliveries, 1 effect and 1 duplicate: {outcome:?}"
    );
    Ok(())
}

#[cfg(test)]
mod needs_servers {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_delivered_twice_has_its_effect_once() {
        let outcome = super::run().await.unwrap();
        assert_eq!(outcome.deliveries, 2, "{outcome:?}");
        assert_eq!(outcome.effects, 1, "{outcome:?}");
        assert_eq!(outcome.duplicates, 1, "{outcome:?}");
    }
}
