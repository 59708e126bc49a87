//! [`run_until_stopped`]: one service's HTTP server, outbox relay and consumers, run
//! together and stopped in the order that loses nothing.

use std::future::Future;
use std::pin::Pin;

use axum::Router;
use dovetail_events::transport::TransportError;
use tokio::net::TcpListener;

use crate::events::OutboxRelay;
use crate::ops::Readiness;
use crate::{RunError, Shutdown, serve};

/// A consumer of the service, as a future that runs until the shutdown it was given.
pub type ConsumerTask = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// What a service runs besides answering requests: its outbox relay and its consumers.
///
/// ```
/// use dovetail_service_kit::Background;
///
/// let background = Background::default().consumer("claim-service.policies", |stop| async move {
///     stop.cancelled().await; // a real consumer runs until `stop`, then drains
///     Ok(())
/// });
/// assert_eq!(format!("{background:?}"), "Background { relay: false, consumers: [\"claim-service.policies\"] }");
/// ```
#[derive(Default)]
pub struct Background {
    relay: Option<OutboxRelay>,
    consumers: Vec<(String, ConsumerTask)>,
    consumer_stop: Shutdown,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("relay", &self.relay.is_some())
            .field(
                "consumers",
                &self
                    .consumers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Background {
    /// Runs `relay` with the service.
    #[must_use]
    pub fn relay(mut self, relay: OutboxRelay) -> Self {
        self.relay = Some(relay);
        self
    }

    /// Runs the consumer `start` builds with the service; it must stop and drain when the
    /// signal it is given is cancelled.
    #[must_use]
    pub fn consumer<F, Fut>(mut self, name: impl Into<String>, start: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = Result<(), TransportError>> + Send + 'static,
    {
        let task = start(self.consumer_stop.clone());
        self.consumers.push((name.into(), Box::pin(task)));
        self
    }
}

/// Serves `router` on `listener`, runs the relay and consumers, until `shutdown`; then
/// stops in the order that loses nothing: `/readyz` turns 503 and the server stops
/// accepting and finishes the requests in flight; then consumers drain (a handler may
/// still commit events); last the relay stops, after every commit of this process.
/// Whatever it had not published yet stays committed and goes out at the next start.
///
/// # Errors
/// When the server, a consumer or the relay failed.
pub async fn run_until_stopped(
    listener: TcpListener,
    router: Router,
    readiness: Readiness,
    background: Background,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let relay_stop = Shutdown::new();
    let consumer_stop = background.consumer_stop;
    let relay = background.relay.map(|relay| {
        let stop = relay_stop.clone();
        // On the heap: the DynamoDB relay's future is large (SDK request state).
        tokio::spawn(Box::pin(relay.run(async move { stop.cancelled().await })))
    });
    let consumers: Vec<_> = background
        .consumers
        .into_iter()
        .map(|(name, task)| (name, tokio::spawn(task)))
        .collect();
    let draining = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            readiness.start_draining();
        }
    };
    let (served, ()) = tokio::join!(serve(listener, router, shutdown), draining);
    consumer_stop.cancel();
    let mut failures: Vec<(String, Box<dyn std::error::Error + Send + Sync>)> = Vec::new();
    if let Err(error) = served {
        failures.push(("the HTTP server".to_owned(), Box::new(error)));
    }
    for (name, consumer) in consumers {
        match consumer.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failures.push((format!("consumer {name}"), Box::new(error))),
            Err(panic) => failures.push((format!("consumer {name}"), Box::new(panic))),
        }
    }
    relay_stop.cancel();
    if let Some(relay) = relay {
        match relay.await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => failures.push(("the relay".to_owned(), Box::new(error))),
            Err(panic) => failures.push(("the relay".to_owned(), Box::new(panic))),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunError { failures })
    }
}
