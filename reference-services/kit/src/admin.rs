//! The staff-only operator actions every service offers under `/admin`: release the
//! outbox records its relay parked, list and redrive the dead letters of its consumers.
//! The alert pages of the book (`book/src/operations/alerts/`) name them.
//!
//! | route | does | answers |
//! |---|---|---|
//! | `POST /admin/outbox/unpark` | makes every parked outbox record ready again ([`OutboxStore::unpark_all`]) | `{"unparked": n}` |
//! | `GET /admin/dead-letters` | the dead-letter depth of each consumer queue | `[{"queue": q, "depth": n}]` |
//! | `POST /admin/dead-letters/{queue}/redrive` | moves that queue's dead letters back to its consumer | `{"queue": q, "redriven": n}` |
//!
//! Every route needs a verified token with the staff role: 401 without one, 403 for any
//! other role. Errors are problem+json.

use std::convert::Infallible;

use axum::extract::{Path, Request, State};
use axum::response::IntoResponse;
use axum::routing::{Route, get, post};
use axum::{Json, Router};
use dovetail_events::transport::EventSource;
use dovetail_http::identity::{Identity, IdentityLayer, Role};
use dovetail_outbox::{AnyOutboxStore, OutboxStore};
use serde_json::{Value, json};
use tower::{Layer, Service};

use crate::Problem;

/// What a service's operators may act on: its outbox and its consumers' event sources.
///
/// ```
/// use dovetail_service_kit::admin::Admin;
///
/// let admin = Admin::default(); // a service with no outbox and no consumer
/// assert_eq!(format!("{admin:?}"), "Admin { outbox: false, consumers: [] }");
/// ```
#[derive(Clone, Default)]
pub struct Admin {
    outbox: Option<AnyOutboxStore>,
    sources: Vec<EventSource>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("outbox", &self.outbox.is_some())
            .field(
                "consumers",
                &self
                    .sources
                    .iter()
                    .map(EventSource::name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Admin {
    /// The same, acting on the service's outbox `store`.
    #[must_use]
    pub fn outbox(mut self, store: AnyOutboxStore) -> Self {
        self.outbox = Some(store);
        self
    }

    /// The same, acting on the dead letters of the consumer reading `source`.
    #[must_use]
    pub fn consumer(mut self, source: EventSource) -> Self {
        self.sources.push(source);
        self
    }

    /// The `/admin` routes, each behind `identity` and the staff role.
    pub fn router(self, identity: IdentityLayer) -> Router {
        self.router_behind(identity)
    }

    /// The `/admin` routes behind `authenticate`, a layer that puts the caller's verified
    /// `Identity` into the request (or answers 401): for a service that verifies tokens
    /// its own way, as the auth service does against its own rotating keys. A request
    /// that reaches a route without an `Identity` is refused 401 all the same, and every
    /// route needs the staff role.
    pub fn router_behind<L>(self, authenticate: L) -> Router
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Router::new()
            .route("/admin/outbox/unpark", post(unpark))
            .route("/admin/dead-letters", get(dead_letters))
            .route("/admin/dead-letters/{queue}/redrive", post(redrive))
            .route_layer(authenticate)
            .with_state(self)
    }
}

async fn unpark(State(admin): State<Admin>, identity: Identity) -> Result<Json<Value>, Problem> {
    identity.require(Role::Staff)?;
    let Some(store) = &admin.outbox else {
        return Err(Problem::not_found(
            "this service has no outbox: it publishes no events, so nothing can be parked",
        ));
    };
    let unparked = store.unpark_all().await.map_err(|error| {
        Problem::unavailable(format!(
            "the outbox could not be changed ({}); nothing was unparked, try again",
            chain(&error)
        ))
    })?;
    tracing::warn!(
        user = identity.subject(),
        unparked,
        "outbox records unparked by an operator"
    );
    Ok(Json(json!({ "unparked": unparked })))
}

async fn dead_letters(
    State(admin): State<Admin>,
    identity: Identity,
) -> Result<Json<Value>, Problem> {
    identity.require(Role::Staff)?;
    let mut queues = Vec::new();
    for source in &admin.sources {
        let depths = source.dead_letters().await.map_err(|error| {
            Problem::unavailable(format!(
                "the dead letters of {} could not be read ({}); try again",
                source.name(),
                chain(&error)
            ))
        })?;
        queues.extend(
            depths
                .into_iter()
                .map(|depth| json!({ "queue": depth.queue, "depth": depth.depth })),
        );
    }
    Ok(Json(Value::Array(queues)))
}

async fn redrive(
    State(admin): State<Admin>,
    identity: Identity,
    Path(queue): Path<String>,
) -> Result<Json<Value>, Problem> {
    identity.require(Role::Staff)?;
    for source in &admin.sources {
        let redriven = source.redrive_dead_letters(&queue).await.map_err(|error| {
            Problem::unavailable(format!(
                "the dead letters of {queue} could not be redriven ({}); what moved stays \
                 moved, run it again",
                chain(&error)
            ))
        })?;
        if let Some(redriven) = redriven {
            tracing::warn!(
                user = identity.subject(),
                queue,
                redriven,
                "dead letters redriven by an operator"
            );
            return Ok(Json(json!({ "queue": queue, "redriven": redriven })));
        }
    }
    let known: Vec<&str> = admin.sources.iter().flat_map(EventSource::parts).collect();
    Err(Problem::not_found(format!(
        "this service consumes no queue {queue:?}; its queues are {known:?} \
         (GET /admin/dead-letters lists them with their depth)"
    )))
}

/// `error: its source: …`, for the detail of a problem.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
