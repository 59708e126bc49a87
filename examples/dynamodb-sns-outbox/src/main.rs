//! Run with: `cargo run -p example-dynamodb-sns-outbox` (needs `AWS_ENDPOINT_URL`)
//!
//! The orders service of `example-axum-sqlite-outbox` on AWS: `POST /orders` writes the
//! order's item and its `order.placed` event in one DynamoDB `TransactWriteItems`, a relay
//! publishes the event to an SNS topic, and the shipping consumer receives it from its SQS
//! queue, behind the idempotency layer (records in DynamoDB).
//!
//! It runs against the AWS emulator named by `AWS_ENDPOINT_URL`, with `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_REGION` (default `us-east-1`); `cargo xtask servers`
//! starts one and prints what to export. Every run makes its own tables, topic and queue
//! (names prefixed `ex-<run>-`), and leaves them in the emulator. It places a rejected
//! order and an accepted one, waits for the accepted one's event and exits, non-zero
//! when it was not delivered.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use anyhow::Context as _;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_types::SdkConfig;
use aws_types::region::Region;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Source, Upcasters};
use dovetail_events::idempotency::{
    DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore, IdempotencyConfig, IdempotencyLayer,
};
use dovetail_events::transport::{Subscription, Transport, TypeFilter};
use dovetail_http::Problem;
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::dynamodb::{DynamoDbOutbox, DynamoDbOutboxConfig};
use dovetail_outbox::relay::{Relay, RelayConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// What other services learn when an order is placed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    item: String,
    quantity: u32,
}

impl Event for OrderPlaced {
    const TYPE: &'static str = "order.placed";
    const VERSION: u32 = 1;
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
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

#[derive(Clone)]
struct AppState {
    outbox: DynamoDbOutbox,
}

async fn place_order(
    State(app): State<AppState>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<OrderPlaced>), Problem> {
    let Json(order) = body.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    if order.quantity == 0 {
        return Err(Problem::invalid("an order needs at least one item")
            .field("quantity", "send a whole number of 1 or more"));
    }
    let placed = OrderPlaced {
        order_id: format!("ord-{}", uuid::Uuid::now_v7().simple()),
        item: order.item,
        quantity: order.quantity,
    };
    // ANCHOR: unit_of_work
    let item = Put::builder()
        .table_name(&app.outbox.config().table)
        .item(
            "pk",
            AttributeValue::S(format!("order#{}", placed.order_id)),
        )
        .item("sk", AttributeValue::S("order".into()))
        .item("item", AttributeValue::S(placed.item.clone()))
        .item("quantity", AttributeValue::N(placed.quantity.to_string()))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|error| Problem::internal(error.to_string()))?;
    let order = AggregateRef::parse("order", &placed.order_id)
        .map_err(|error| Problem::internal(error.to_string()))?;
    let mut unit = app.outbox.unit_of_work();
    unit.write(TransactWriteItem::builder().put(item).build())
        .append(
            order,
            ExpectedVersion::New,
            &placed,
            EventMetadata::default(),
        )
        .map_err(|error| Problem::internal(error.to_string()))?;
    if let Err(error) = unit.commit().await {
        eprintln!("placing an order failed: {error}");
        return Err(Problem::unavailable("the order was not saved; try again"));
    }
    // ANCHOR_END: unit_of_work
    Ok((StatusCode::CREATED, Json(placed)))
}

/// Runs the service, its relay and the consumer on this run's own AWS resources, and
/// the demo against them.
async fn run() -> anyhow::Result<()> {
    let aws = aws_config()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("ex-{}-", &run_id[..8]);
    let (stop, stopped) = watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };

    // ANCHOR: setup
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let config =
        DynamoDbOutboxConfig::new(format!("{prefix}orders"), Source::parse("order-service")?);
    let outbox = DynamoDbOutbox::new(dynamodb.clone(), config);
    outbox.create_table_if_missing().await?;
    let transport = Transport::aws(
        aws_sdk_sns::Client::new(&aws),
        aws_sdk_sqs::Client::new(&aws),
    )
    .with_aws_name_prefix(&prefix);
    // ANCHOR_END: setup

    // The shipping consumer: an SQS queue subscribed to the topic, created when missing.
    let orders = Subscription::new("shipping")
        .to_topic("order-events", TypeFilter::types([OrderPlaced::TYPE]))
        .with_wait_time(Duration::from_secs(1));
    let source = transport.subscribe(&orders).await?;
    let idempotency = DynamoDbIdempotencyStore::new(
        dynamodb,
        DynamoDbIdempotencyConfig::new(format!("{prefix}shipping-idempotency")),
    );
    idempotency.create_table_if_missing().await?;
    let (shipped, mut delivered) = mpsc::unbounded_channel();
    let handler = tower::service_fn(move |envelope: Envelope| {
        let shipped = shipped.clone();
        async move {
            let order: OrderPlaced = envelope
                .decode(&Upcasters::new())
                .map_err(|error| HandlerError::rejected(error.to_string()))?;
            println!(
                "shipping: packing {} x {} for {}",
                order.quantity, order.item, order.order_id
            );
            let _ = shipped.send(order);
            Ok::<(), HandlerError>(())
        }
    });
    let service = tower::ServiceBuilder::new()
        .layer(IdempotencyLayer::new(
            idempotency,
            IdempotencyConfig::new("shipping.orders"),
        ))
        .layer(EnvelopeLayer)
        .service(handler);
    let consumer = tokio::spawn(source.run(service, until_stopped()));

    // ANCHOR: relay
    let mut relay_config = RelayConfig::default();
    relay_config.name = "order-service".into();
    relay_config.wake = Some(outbox.commits());
    let publisher = transport.publisher("order-events").await?; // the SNS topic
    let relay = Relay::new(outbox.store("order-service.relay"), publisher, relay_config);
    let relay = tokio::spawn(relay.run(until_stopped()));
    // ANCHOR_END: relay

    let router = Router::new()
        .route("/orders", post(place_order))
        .with_state(AppState { outbox });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let server = axum::serve(listener, router).with_graceful_shutdown(until_stopped());
    let server = tokio::spawn(server.into_future());

    demo(address, &mut delivered).await?;
    let _ = stop.send(true);
    server.await??;
    relay.await??;
    consumer.await??;
    Ok(())
}

/// Places a bad order and a good one, and checks that the good one's event arrived.
async fn demo(
    address: std::net::SocketAddr,
    delivered: &mut mpsc::UnboundedReceiver<OrderPlaced>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{address}/orders");
    let rejected = client
        .post(&url)
        .json(&serde_json::json!({ "item": "chair", "quantity": 0 }))
        .send()
        .await?;
    let status = rejected.status();
    println!(
        "POST /orders {{quantity: 0}} -> {status}: {}",
        rejected.text().await?
    );
    anyhow::ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY,
        "a bad order was answered {status}, not 422"
    );

    let placed: OrderPlaced = client
        .post(&url)
        .json(&serde_json::json!({ "item": "chair", "quantity": 2 }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "POST /orders {{item: chair, quantity: 2}} -> 201 Created, {}",
        placed.order_id
    );

    let consumed = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
        .await
        .ok()
        .flatten();
    match consumed {
        Some(order) if order.order_id == placed.order_id => {
            println!(
                "order.placed for {} went DynamoDB -> relay -> SNS -> SQS and was consumed",
                order.order_id
            );
            Ok(())
        }
        Some(other) => anyhow::bail!("consumed {}, expected {}", other.order_id, placed.order_id),
        None => anyhow::bail!(
            "order.placed for {} was not consumed within 30 s",
            placed.order_id
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

#[cfg(test)]
mod needs_servers {
    /// The demo checks its own outcome: a 422 for the bad order, and the good order's
    /// event consumed from SQS within 30 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_places_an_order_and_its_event_arrives_through_sns_and_sqs() {
        super::run().await.unwrap();
    }
}
