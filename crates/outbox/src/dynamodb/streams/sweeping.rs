//! The sweep: publishes, like the polling relay, the ready records the stream did not
//! deliver in time.

use std::time::{SystemTime, UNIX_EPOCH};

use dovetail_events::publish::Publisher;
use tokio::time::Instant;

use super::{Interrupted, StreamsRelay, Tally, count};
use crate::dynamodb::epoch_ms;
use crate::relay::lease::HeldLease;
use crate::relay::outcome;
use crate::{OutboxError, OutboxRecord, OutboxStore};

/// How many batches one sweep publishes at most.
const SWEEP_BATCHES: usize = 100;

impl<P: Publisher> StreamsRelay<P> {
    /// Publishes, like the polling relay, the ready records committed more than
    /// `sweep_after` ago.
    pub(super) async fn sweep(
        &self,
        held: &mut HeldLease,
        tally: &mut Tally,
    ) -> Result<(), Interrupted> {
        tally.counts.sweeps += 1;
        let relay = &self.config.relay;
        let cutoff = epoch_ms(
            SystemTime::now()
                .checked_sub(self.config.sweep_after)
                .unwrap_or(UNIX_EPOCH),
        );
        for _ in 0..SWEEP_BATCHES {
            let ready = self
                .store
                .fetch_ready_placed(relay.batch_size)
                .await
                .map_err(|error| self.failed(tally, &error))?;
            let full = ready.len() == relay.batch_size;
            // Places never decrease: the old records are a prefix, in commit order.
            let old: Vec<OutboxRecord> = ready
                .into_iter()
                .take_while(|(_, placed)| *placed <= cutoff)
                .map(|(record, _)| record)
                .collect();
            if old.is_empty() {
                return Ok(());
            }
            let whole_batch = full && old.len() == relay.batch_size;
            let (slots, envelopes) = outcome::slots_of(old);
            tally.meter.batch();
            let started = Instant::now();
            let results = self.publish_renewing(&envelopes, held, tally).await?;
            tally.meter.publish_time(started.elapsed());
            let outcome = outcome::sort_results(&slots, results, relay, SystemTime::now());
            tally.meter.published(count(outcome.published.len()));
            tally.counts.swept += count(outcome.published.len());
            tally.meter.held_back(outcome.held_back);
            if !outcome.published.is_empty() {
                tracing::info!(outbox = %relay.name, count = outcome.published.len(), "the sweeper published pending records the stream did not deliver");
                match self
                    .store
                    .mark_published(&held.lease, &outcome.published)
                    .await
                {
                    Ok(()) => {}
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !outcome.failures.is_empty() {
                match self.store.mark_failed(&held.lease, &outcome.failures).await {
                    Ok(()) => tally
                        .meter
                        .failed(count(outcome.failures.len()), outcome.parked),
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !whole_batch || outcome.published.is_empty() {
                return Ok(());
            }
        }
        Ok(())
    }
}
