//! Run with: `cargo run -p example-bff-two-services`
//!
//! A backend-for-frontend composing two tiny axum services with dovetail-bff: a
//! customer's page is the customer (from the customers service, required) and their
//! orders (from the orders service, optional), fetched in parallel under one deadline.
//! With both services up every section is `ok`; with the orders service stopped the page
//! still answers 200, its `orders` section `unavailable` with a detail, instead of
//! failing whole. It exits non-zero when the page does not look like that.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use axum::extract::{Path, State};
use axum::{Extension, Json, Router, routing::get};
use dovetail_bff::{CallContext, Composer, Downstream, DownstreamConfig, RouteBudget, Section};
use dovetail_http::Problem;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Serves `router` on a free port until the returned sender is used or dropped.
async fn serve(router: Router) -> anyhow::Result<(String, oneshot::Sender<()>, ServerTask)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    Ok((url, stop, tokio::spawn(server.into_future())))
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

// ANCHOR: services
/// The customers service: owns customers.
fn customers() -> Router {
    Router::new().route(
        "/customers/{id}",
        get(|Path(id): Path<String>| async move { Json(json!({ "id": id, "name": "Ada" })) }),
    )
}

/// The orders service: owns orders.
fn orders() -> Router {
    Router::new().route(
        "/customers/{id}/orders",
        get(|Path(id): Path<String>| async move {
            Json(json!([{ "order_id": "ord-1", "customer": id, "item": "chair" }]))
        }),
    )
}
// ANCHOR_END: services

// ANCHOR: bff
#[derive(Clone)]
struct Downstreams {
    customers: Downstream,
    orders: Downstream,
}

#[derive(serde::Serialize)]
struct CustomerPage {
    customer: Section<Value>,
    orders: Section<Value>,
}

/// `GET /customers/{id}/page`: both calls at once, within the route's budget; the
/// customer is required (the page fails without it), the orders are not.
async fn customer_page(
    State(downstreams): State<Downstreams>,
    Path(id): Path<String>,
    context: CallContext,
) -> Result<Json<CustomerPage>, Problem> {
    let (customer_path, orders_path) = (
        format!("/customers/{id}"),
        format!("/customers/{id}/orders"),
    );
    let mut page = Composer::new(context.deadline());
    let customer = page.required(
        "customer",
        downstreams.customers.get_json(&context, &customer_path),
    );
    let orders = page.section(
        "orders",
        downstreams.orders.get_json(&context, &orders_path),
    );
    let done = page.run().await?;
    Ok(Json(CustomerPage {
        customer: done.take(customer),
        orders: done.take(orders),
    }))
}

fn bff(customers_url: &str, orders_url: &str) -> anyhow::Result<Router> {
    let downstreams = Downstreams {
        customers: Downstream::new(DownstreamConfig::new("customers", customers_url))?,
        orders: Downstream::new(DownstreamConfig::new("orders", orders_url))?,
    };
    Ok(Router::new()
        .route("/customers/{id}/page", get(customer_page))
        .layer(Extension(RouteBudget(Duration::from_millis(800))))
        .with_state(downstreams))
}
// ANCHOR_END: bff

/// Fetches the page and says each section's status.
async fn fetch(url: &str) -> anyhow::Result<(Value, String, String)> {
    let answer = reqwest::get(url).await?;
    let status = answer.status();
    let page: Value = answer.json().await?;
    anyhow::ensure!(status.is_success(), "the page answered {status}: {page}");
    let section = |name: &str| {
        page[name]["status"]
            .as_str()
            .unwrap_or("missing")
            .to_owned()
    };
    let (customer, orders) = (section("customer"), section("orders"));
    Ok((page, customer, orders))
}

async fn run() -> anyhow::Result<()> {
    let (customers_url, _customers_stop, _customers_task) = serve(customers()).await?;
    let (orders_url, orders_stop, orders_task) = serve(orders()).await?;
    let (bff_url, _bff_stop, _bff_task) = serve(bff(&customers_url, &orders_url)?).await?;
    let page_url = format!("{bff_url}/customers/cus-1/page");

    let (page, customer, orders) = fetch(&page_url).await?;
    println!("both services up:\n  {page}");
    anyhow::ensure!(
        customer == "ok" && orders == "ok",
        "expected both sections ok, got customer {customer}, orders {orders}"
    );

    let _ = orders_stop.send(());
    orders_task.await??; // the orders service is down: nothing listens on its port
    let (page, customer, orders) = fetch(&page_url).await?;
    println!("orders service down:\n  {page}");
    anyhow::ensure!(
        customer == "ok" && orders == "unavailable",
        "expected customer ok and orders unavailable, got customer {customer}, orders {orders}"
    );
    println!("the page degraded to a partial answer instead of failing");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run().await
}

#[cfg(test)]
mod tests {
    /// The run checks its own outcome: both sections `ok`, then `orders` `unavailable`
    /// and `customer` still `ok` once the orders service is stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_degrades_to_a_partial_answer_when_a_service_is_down() {
        super::run().await.unwrap();
    }
}
