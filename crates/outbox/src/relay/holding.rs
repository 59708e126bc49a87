//! The lease loop both relays run ([`Relay`](super::Relay) and the DynamoDB Streams
//! relay): take the outbox's lease or stand by, renew it on time while working, rest
//! without letting it lapse, and release it on shutdown.
//!
//! Each relay runs the same loop over its own work:
//!
//! ```text
//! while let Some(mut held) = keeper.take(&mut shutdown, meter, &mut last_token).await {
//!     let end = work_while_held(&mut held, &mut shutdown).await;
//!     if !keeper.ended(&held, end, meter).await { break }
//! }
//! ```

use tokio::sync::Notify;
use tokio::time::Instant;

use super::RelayConfig;
use super::lease::{self, HeldLease, Renewal};
use super::report::Meter;
use super::shutdown::{Shutdown, Waited};
use crate::OutboxStore;

/// How a stretch of holding the lease ended.
pub(crate) enum Holding {
    /// Shutdown was requested; the lease is still ours, to release.
    Stopped,
    /// The lease was taken over or lapsed.
    Lost,
}

/// What ended a [`LeaseKeeper::rest`] while the lease stayed ours.
pub(crate) enum Rested {
    /// The deadline came.
    Deadline,
    /// The `wake` signal came first.
    Woken,
}

/// Takes, renews and releases one relay's lease on `store`, counting on the relay's
/// meter and logging as `what` (such as "outbox" or "outbox streams").
pub(crate) struct LeaseKeeper<'a, S> {
    pub(crate) store: &'a S,
    pub(crate) config: &'a RelayConfig,
    pub(crate) what: &'static str,
}

impl<S: OutboxStore> LeaseKeeper<'_, S> {
    /// Ends a stretch of holding the lease: on shutdown releases it, so that a standby
    /// relay takes over at once, and answers `false` (the relay stops); on a loss counts
    /// and logs it and answers `true` (the relay stands by and tries again).
    pub(crate) async fn ended(&self, held: &HeldLease, end: Holding, meter: &mut Meter) -> bool {
        match end {
            Holding::Stopped => {
                self.release(held, meter).await;
                false
            }
            Holding::Lost => {
                meter.lease_lost();
                tracing::warn!(
                    outbox = %self.config.name,
                    owner = %self.config.owner,
                    fencing_token = held.lease.fencing_token,
                    "the {} lease was lost; standing by", self.what
                );
                true
            }
        }
    }

    /// Takes the lease, standing by while another relay holds it and trying again every
    /// `poll_interval`; `None` on shutdown. A takeover (a fencing token not seen before)
    /// is counted and logged once.
    pub(crate) async fn take<F: Future>(
        &self,
        shutdown: &mut Shutdown<'_, F>,
        meter: &mut Meter,
        last_token: &mut Option<u64>,
    ) -> Option<HeldLease> {
        let config = self.config;
        let mut standing_by = false;
        loop {
            if shutdown.requested() {
                return None;
            }
            match lease::ask(self.store, config).await.into_held(config) {
                Ok(Some(held)) => {
                    let token = held.lease.fencing_token;
                    if *last_token != Some(token) {
                        *last_token = Some(token);
                        meter.lease_taken();
                        tracing::info!(outbox = %config.name, owner = %config.owner, fencing_token = token, "took the {} lease", self.what);
                    }
                    return Some(held);
                }
                Ok(None) if !standing_by => {
                    standing_by = true;
                    tracing::debug!(outbox = %config.name, owner = %config.owner, "another relay holds the {} lease; standing by", self.what);
                }
                Ok(None) => {}
                Err(error) => {
                    meter.store_error();
                    tracing::warn!(outbox = %config.name, %error, "could not take the {} lease; trying again", self.what);
                }
            }
            let next_try = Instant::now() + config.poll_interval;
            if let Waited::Shutdown = shutdown.wait_until(next_try, None).await {
                return None;
            }
        }
    }

    /// Renews the lease; whether it is still ours. A renewal the store did not answer
    /// keeps it until it lapses.
    pub(crate) async fn renew(&self, held: &mut HeldLease, meter: &mut Meter) -> bool {
        let answer = lease::ask(self.store, self.config).await;
        match held.renewed(answer, self.config) {
            Renewal::Renewed => true,
            Renewal::Lost => false,
            Renewal::Failed(error) => {
                meter.store_error();
                tracing::warn!(outbox = %self.config.name, %error, "could not renew the {} lease", self.what);
                !held.lapsed()
            }
        }
    }

    /// Renews the lease when it is due; whether it is still ours.
    pub(crate) async fn renew_if_due(&self, held: &mut HeldLease, meter: &mut Meter) -> bool {
        Instant::now() < held.renew_at || self.renew(held, meter).await
    }

    /// Waits until `until` or the `wake` signal, renewing the lease whenever it is due
    /// meanwhile; `Err` when shutdown came or the lease was lost.
    pub(crate) async fn rest<F: Future>(
        &self,
        until: Instant,
        wake: Option<&Notify>,
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        meter: &mut Meter,
    ) -> Result<Rested, Holding> {
        loop {
            match shutdown.wait_until(until.min(held.renew_at), wake).await {
                Waited::Shutdown => return Err(Holding::Stopped),
                Waited::Woken => return Ok(Rested::Woken),
                Waited::Deadline if Instant::now() >= until => return Ok(Rested::Deadline),
                Waited::Deadline => {
                    if !self.renew(held, meter).await {
                        return Err(Holding::Lost);
                    }
                }
            }
        }
    }

    /// Gives the lease up so that a standby relay takes over at once.
    async fn release(&self, held: &HeldLease, meter: &mut Meter) {
        let config = self.config;
        match self.store.release_lease(&held.lease).await {
            Ok(()) => {
                tracing::info!(outbox = %config.name, owner = %config.owner, "released the {} lease", self.what);
            }
            Err(error) => {
                meter.store_error();
                tracing::warn!(outbox = %config.name, %error, "could not release the {} lease; it lapses by itself", self.what);
            }
        }
    }

    /// Refreshes the backlog gauges (feature `metrics`; without it, nothing is asked).
    pub(crate) async fn observe_backlog(&self, meter: &mut Meter) {
        if !cfg!(feature = "metrics") {
            return;
        }
        match self.store.backlog().await {
            Ok(backlog) => meter.backlog(&backlog),
            Err(error) => {
                meter.store_error();
                tracing::warn!(outbox = %self.config.name, %error, "could not read the outbox backlog");
            }
        }
    }
}
