//! [`Shutdown`]: the relay's shutdown signal, checked without waiting or awaited together
//! with a deadline and the `wake` signal.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The relay's shutdown signal, which may be checked without waiting.
pub(crate) struct Shutdown<'a, F> {
    signal: Pin<&'a mut F>,
    requested: bool,
}

impl<'a, F: Future> Shutdown<'a, F> {
    pub(crate) fn new(signal: Pin<&'a mut F>) -> Self {
        Self {
            signal,
            requested: false,
        }
    }

    /// Whether shutdown was requested, without waiting.
    pub(crate) fn requested(&mut self) -> bool {
        if !self.requested {
            let mut context = Context::from_waker(Waker::noop());
            self.requested = self.signal.as_mut().poll(&mut context).is_ready();
        }
        self.requested
    }

    /// Completes when shutdown is requested.
    pub(crate) async fn signalled(&mut self) {
        if !self.requested {
            self.signal.as_mut().await;
            self.requested = true;
        }
    }

    /// Waits until `deadline`, a `wake` signal or shutdown.
    pub(crate) async fn wait_until(&mut self, deadline: Instant, wake: Option<&Notify>) -> Waited {
        tokio::select! {
            biased;
            () = self.signalled() => Waited::Shutdown,
            () = woken(wake) => Waited::Woken,
            () = tokio::time::sleep_until(deadline) => Waited::Deadline,
        }
    }
}

/// What ended a wait.
pub(crate) enum Waited {
    Shutdown,
    Woken,
    Deadline,
}

/// Completes on a `wake` signal; never without one.
async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}
