//! The demo `main` runs by default: a client that places a bad order and a good one, and
//! checks that the good one's event was consumed.

use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::mpsc;

use crate::OrderPlaced;

/// Places a bad order and a good one, and checks that the good one's event arrived.
pub(crate) async fn run(
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
    let content_type = rejected
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    println!("POST /orders {{quantity: 0}} -> {status} {content_type}");
    println!("  {}", rejected.text().await?);
    anyhow::ensure!(
        status == StatusCode::UNPROCESSABLE_ENTITY && content_type == "application/problem+json",
        "a bad order was answered {status} {content_type}, not a 422 problem"
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

    let consumed = tokio::time::timeout(Duration::from_secs(10), delivered.recv())
        .await
        .ok()
        .flatten();
    match consumed {
        Some(order) if order.order_id == placed.order_id => {
            println!(
                "order.placed for {} went through the outbox and was consumed",
                order.order_id
            );
            Ok(())
        }
        Some(other) => anyhow::bail!("consumed {}, expected {}", other.order_id, placed.order_id),
        None => anyhow::bail!(
            "order.placed for {} was not consumed within 10 s",
            placed.order_id
        ),
    }
}
