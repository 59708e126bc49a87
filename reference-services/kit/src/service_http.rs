//! [`ServiceHttp`]: a service's bound listener and its router, with the operations
//! endpoints and HTTP metrics every service has, ready to run.

use std::net::SocketAddr;

use axum::Router;
use dovetail_http::deadline::DeadlineLayer;
use tokio::net::TcpListener;

use crate::ops::{self, Readiness};
use crate::{Background, Shutdown};

/// The longest any API request of a reference service may take, whatever deadline its
/// caller sends (or when it sends none): past it the work stops and the answer is 504.
/// Every reference API answers in milliseconds; a rebuild of the search index runs as a
/// background job, not inside a request.
pub const REQUEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A service's HTTP side, bound and wired, not yet serving: its API merged with `/healthz`,
/// `/readyz` and `/metrics`, every request measured under the service's label. The API
/// honours the caller's deadline ([`DeadlineLayer`]: a request whose
/// `dovetail-deadline-ms` passes is stopped and answered 504), and no request runs longer
/// than [`REQUEST_LIMIT`]; every answer carries the request's `x-request-id` (given in
/// [`serve`](crate::serve)).
///
/// ```no_run
/// use dovetail_service_kit::{Background, ServiceHttp, Shutdown};
/// use dovetail_service_kit::ops::Readiness;
///
/// # async fn run() -> anyhow::Result<()> {
/// let api = axum::Router::new();
/// let http = ServiceHttp::bind("policy-service", "127.0.0.1:0".parse()?, api, Readiness::default()).await?;
/// println!("listening on http://{}", http.local_addr());
/// http.run_until_stopped(Background::default(), Shutdown::new()).await?;
/// # Ok(())
/// # }
/// ```
pub struct ServiceHttp {
    listener: TcpListener,
    router: Router,
    readiness: Readiness,
}

impl std::fmt::Debug for ServiceHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHttp")
            .field("listener", &self.listener.local_addr().ok())
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl ServiceHttp {
    /// Binds `address` (see [`bind`](crate::bind)) for `api` behind a [`DeadlineLayer`]
    /// capped at [`REQUEST_LIMIT`], merged with the operations endpoints over `readiness` and measured by
    /// [`ops::track_http`] under `service`.
    ///
    /// # Errors
    /// When the address cannot be bound; the message says what to do.
    pub async fn bind(
        service: &'static str,
        address: SocketAddr,
        api: Router,
        readiness: Readiness,
    ) -> std::io::Result<Self> {
        let router = api
            .layer(DeadlineLayer::with_max(REQUEST_LIMIT))
            .merge(ops::router(readiness.clone()))
            .layer(axum::middleware::from_fn(move |request, next| {
                ops::track_http(service, request, next)
            }));
        let listener = crate::bind(address).await?;
        Ok(Self {
            listener,
            router,
            readiness,
        })
    }

    /// Where the API listens.
    ///
    /// # Panics
    /// Never: the listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The router (for tests that call it without a socket).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves requests and runs `background` until `shutdown`, then stops in the order
    /// that loses nothing: see [`run_until_stopped`](crate::run_until_stopped).
    ///
    /// # Errors
    /// When the server, a consumer or the relay failed.
    pub async fn run_until_stopped(
        self,
        background: Background,
        shutdown: Shutdown,
    ) -> Result<(), crate::RunError> {
        crate::run_until_stopped(
            self.listener,
            self.router,
            self.readiness,
            background,
            shutdown,
        )
        .await
    }
}
