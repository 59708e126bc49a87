//! The operations endpoints every service serves — `/healthz` (alive), `/readyz` (able to
//! serve: its checks pass and it is not shutting down), `/metrics` (Prometheus) — and the
//! HTTP metrics layer behind them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::Problem;

/// One readiness check: resolves to `Err(reason)` when the service cannot serve.
pub type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// What `/readyz` asks: named checks (the database answers, the relay holds up), and
/// whether the service is draining.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
    draining: Arc<AtomicBool>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field(
                "checks",
                &self.checks.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("draining", &self.draining.load(Ordering::Relaxed))
            .finish()
    }
}

impl Readiness {
    /// Adds a check named `name`.
    #[must_use]
    pub fn check<F, Fut>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks
            .push((name, Arc::new(move || Box::pin(check()))));
        self
    }

    /// Adds a check named `name` that `check` makes of a clone of `value` (such as the
    /// service's store) each time `/readyz` asks; its error is the reason given.
    ///
    /// ```
    /// use dovetail_service_kit::ops::Readiness;
    ///
    /// let database = std::sync::Arc::new(());
    /// let readiness = Readiness::default().check_with("database", database, |_database| async {
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// assert!(format!("{readiness:?}").contains("database"));
    /// ```
    #[must_use]
    pub fn check_with<T, F, Fut, E>(self, name: &'static str, value: T, check: F) -> Self
    where
        T: Clone + Send + Sync + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        self.check(name, move || {
            let checked = check(value.clone());
            async move { checked.await.map_err(|error| error.to_string()) }
        })
    }

    /// From now on `/readyz` answers 503: the service is shutting down and load balancers
    /// should stop sending it requests while it drains.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    async fn evaluate(&self) -> Result<serde_json::Value, Problem> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(Problem::unavailable(
                "the service is shutting down; send requests to another instance",
            ));
        }
        let mut report = serde_json::Map::new();
        let mut failures = Vec::new();
        for (name, check) in &self.checks {
            match check().await {
                Ok(()) => {
                    report.insert((*name).to_owned(), "ok".into());
                }
                Err(reason) => {
                    report.insert((*name).to_owned(), reason.clone().into());
                    failures.push(format!("{name}: {reason}"));
                }
            }
        }
        if failures.is_empty() {
            Ok(serde_json::json!({ "status": "ready", "checks": report }))
        } else {
            Err(Problem::unavailable(format!(
                "not ready: {}",
                failures.join("; ")
            )))
        }
    }
}

/// The process's Prometheus recorder, installed on first use. Every service in the
/// process reports through it, told apart by their `service` label.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed already (a test's); ours then only renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `/healthz`, `/readyz` and `/metrics`, to merge into a service's router.
pub fn router(readiness: Readiness) -> Router {
    let metrics = prometheus();
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(|State(readiness): State<Readiness>| async move {
                readiness.evaluate().await.map(axum::Json)
            }),
        )
        .with_state(readiness)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                }
            }),
        )
}

/// Middleware counting requests (`http_requests_total{service,method,route,status}`) and
/// timing them (`http_request_duration_seconds{service,method,route}`); the route is
/// the matched pattern, so ids do not explode the label space.
pub async fn track_http(service: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "service" => service, "method" => method.clone(),
        "route" => route.clone(), "status" => status)
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "service" => service, "method" => method,
        "route" => route)
    .record(started.elapsed().as_secs_f64());
    response
}

/// The answer to a path no route matches.
pub async fn not_found(request: Request) -> Response {
    Problem::not_found(format!(
        "no route for {} {}; the API is described at /openapi.json",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}

/// The answer to a method a route does not take.
pub async fn method_not_allowed(request: Request) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail(format!(
        "{} does not take {}; the API is described at /openapi.json",
        request.uri().path(),
        request.method()
    ))
    .into_response()
}
