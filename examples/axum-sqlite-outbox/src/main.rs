//! Run with: `cargo run -p example-axum-sqlite-outbox` (add `-- --serve` to keep serving)
//!
//! An orders service on axum and SQLite that tells other services about its orders
//! through the transactional outbox: `POST /orders` writes the order's row and appends an
//! `order.placed` event in one transaction, a relay publishes the event to the embedded
//! bus, and a shipping consumer handles it once.
//!
//! By default it runs a short demo against itself on a free port (`demo.rs`: a rejected
//! order, then an accepted one whose event it waits for) and exits, non-zero when the
//! event was not delivered. With `--serve` it listens on 127.0.0.1:3000 until Ctrl-C.
//!
//! The book's "Tutorial: add Dovetail to an existing axum service" walks through this file.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Json, Router, routing::post};
use dovetail_events::bus::EmbeddedBus;
use dovetail_events::consumer::{EnvelopeLayer, HandlerError};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Source, Upcasters};
use dovetail_events::idempotency::{IdempotencyConfig, IdempotencyLayer, SqliteIdempotencyStore};
use dovetail_events::transport::{Subscription, Transport, TypeFilter};
use dovetail_http::Problem;
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::relay::{Relay, RelayConfig};
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

mod demo;

// ANCHOR: event
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
// ANCHOR_END: event

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
struct NewOrder {
    item: String,
    quantity: u32,
}

// ANCHOR: app
#[derive(Clone)]
struct AppState {
    db: Arc<Mutex<Connection>>,
    outbox: SqliteOutbox,
}

/// The service: its database (orders and the outbox in one file) and its routes.
fn app(db_path: &Path) -> anyhow::Result<(Router, SqliteOutbox)> {
    let db = Connection::open(db_path)?;
    SqliteOutbox::prepare_connection(&db)?; // WAL, a busy handler, the outbox's tables
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS orders (
             order_id TEXT PRIMARY KEY, item TEXT NOT NULL, quantity INTEGER NOT NULL)",
    )?;
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("order-service")?));
    let state = AppState {
        db: Arc::new(Mutex::new(db)),
        outbox: outbox.clone(),
    };
    let router = Router::new()
        .route("/orders", post(place_order))
        .with_state(state);
    Ok((router, outbox))
}
// ANCHOR_END: app

// ANCHOR: handler
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
    let event = placed.clone();
    // One unit of work: the row and its event commit together, or neither does.
    let saved = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut db = app
            .db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut unit = app.outbox.begin(&mut db)?;
        unit.transaction().execute(
            "INSERT INTO orders (order_id, item, quantity) VALUES (?1, ?2, ?3)",
            (&event.order_id, &event.item, event.quantity),
        )?;
        let order = AggregateRef::parse("order", &event.order_id)?;
        unit.append(
            order,
            ExpectedVersion::New,
            &event,
            EventMetadata::default(),
        )?;
        unit.commit()?; // also wakes the relay
        Ok(())
    })
    .await;
    match saved {
        Ok(Ok(())) => Ok((StatusCode::CREATED, Json(placed))),
        Ok(Err(error)) => {
            eprintln!("placing an order failed: {error:#}");
            Err(Problem::unavailable("the order was not saved; try again"))
        }
        Err(panicked) => Err(Problem::internal(panicked.to_string())),
    }
}
// ANCHOR_END: handler

// ANCHOR: relay
/// Publishes every committed event of the outbox to the `order-events` topic.
async fn start_relay(
    db_path: &Path,
    outbox: &SqliteOutbox,
    transport: &Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let store = SqliteOutboxStore::open(db_path, "order-service.relay")?;
    let publisher = transport.publisher("order-events").await?;
    let mut config = RelayConfig::default();
    config.name = "order-service".into();
    config.wake = Some(outbox.commits()); // publish at once after a commit
    let relay = Relay::new(store, publisher, config);
    Ok(tokio::spawn(async move {
        relay.run(shutdown).await?;
        Ok(())
    }))
}
// ANCHOR_END: relay

// ANCHOR: consumer
/// The shipping side: handles each `order.placed` once, however often it is delivered.
async fn start_consumer(
    dir: &Path,
    transport: &Transport,
    shipped: mpsc::UnboundedSender<OrderPlaced>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let orders = Subscription::new("shipping")
        .to_topic("order-events", TypeFilter::types([OrderPlaced::TYPE]));
    let source = transport.subscribe(&orders).await?;
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
            let _ = shipped.send(order); // a real consumer writes to its own database
            Ok::<(), HandlerError>(())
        }
    });
    let idempotency = IdempotencyLayer::new(
        SqliteIdempotencyStore::open(dir.join("shipping-idempotency.db"))?,
        IdempotencyConfig::new("shipping.orders"),
    );
    let service = tower::ServiceBuilder::new()
        .layer(idempotency)
        .layer(EnvelopeLayer)
        .service(handler);
    Ok(tokio::spawn(async move {
        source.run(service, shutdown).await?;
        Ok(())
    }))
}
// ANCHOR_END: consumer

// ANCHOR: run
/// Runs the service, its relay and the consumer on the files in `dir`: the demo, or
/// serving until Ctrl-C.
async fn run(dir: &Path, serve: bool) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let db_path = dir.join("orders.db");
    let (router, outbox) = app(&db_path)?;
    let transport = Transport::embedded(EmbeddedBus::open(dir.join("bus.db"))?);
    let (shipped, mut delivered) = mpsc::unbounded_channel();
    // Subscribe before the relay publishes: the bus keeps events for its subscriptions.
    let consumer = start_consumer(dir, &transport, shipped, until_stopped()).await?;
    let relay = start_relay(&db_path, &outbox, &transport, until_stopped()).await?;

    let listener = tokio::net::TcpListener::bind(if serve {
        "127.0.0.1:3000"
    } else {
        "127.0.0.1:0"
    })
    .await?;
    let address = listener.local_addr()?;
    let server = axum::serve(listener, router).with_graceful_shutdown(until_stopped());
    let server = tokio::spawn(server.into_future());
    if serve {
        println!("orders service on http://{address}; try:");
        println!(
            "  curl -i -X POST http://{address}/orders -H 'content-type: application/json' -d '{{\"item\":\"chair\",\"quantity\":2}}'"
        );
        tokio::signal::ctrl_c().await?;
    } else {
        demo::run(address, &mut delivered).await?;
    }
    let _ = stop.send(true);
    server.await??;
    relay.await??;
    consumer.await??;
    Ok(())
}
// ANCHOR_END: run

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let serve = std::env::args().any(|arg| arg == "--serve");
    let dir = std::env::temp_dir().join(format!("dovetail-orders-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let outcome = run(&dir, serve).await;
    std::fs::remove_dir_all(&dir)?;
    outcome
}

#[cfg(test)]
mod tests {
    /// The demo checks its own outcome: a 422 problem for the bad order, and the good
    /// order's event consumed within 10 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_places_an_order_and_its_event_is_consumed() {
        let dir = std::env::temp_dir().join(format!("example-orders-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let outcome = super::run(&dir, false).await;
        std::fs::remove_dir_all(&dir).ok();
        outcome.unwrap();
    }
}
