//! Binding, serving with problem+json fallbacks, and graceful shutdown on a signal.

use std::net::SocketAddr;

use axum::Router;
use dovetail_http::request_id::RequestIdLayer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The signal that stops a service: cancelled by Ctrl-C / SIGTERM or by the caller (a
/// test, the stack). Everything a service runs — HTTP server, relay, consumers — stops
/// on it and drains.
pub type Shutdown = CancellationToken;

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub fn shutdown_on_signal(shutdown: Shutdown) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            if let Ok(mut signal) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                signal.recv().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!("shutdown signal received; draining");
        shutdown.cancel();
    });
}

/// Binds `address`, with an error that says what to do when the port is taken.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!(
                "cannot listen on {address}: {error}; stop whatever uses the port or choose \
                 another one in the configuration"
            ),
        )
    })
}

/// Serves `router` on `listener` until `shutdown`, then stops accepting connections and
/// waits for requests in flight to finish. Unknown routes and methods get problem+json.
/// Each request carries its TCP peer as `axum::extract::ConnectInfo<SocketAddr>`, and is
/// served behind a [`RequestIdLayer`]: its id (the caller's `x-request-id` when fit, else
/// a UUIDv7) is on every log line of the request, in every answer's `x-request-id` and in
/// every problem's `request_id`.
///
/// # Errors
/// When the server fails to accept connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let router = router
        .fallback(crate::ops::not_found)
        .method_not_allowed_fallback(crate::ops::method_not_allowed)
        .layer(RequestIdLayer::new());
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}
