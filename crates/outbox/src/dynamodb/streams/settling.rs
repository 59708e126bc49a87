//! Settling a page of stream records: which are pending outbox records, their current
//! state and their predecessors', and publishing them in place with retries.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_dynamodbstreams::types::Record;
use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{PublishError, Publisher};
use tokio::time::Instant;

use super::records::{self, Candidate, Decoded};
use super::{Interrupted, ItemState, Pending, StreamsRelay, Tally, count};
use crate::dynamodb::{
    ATTEMPTS, PARKED, PENDING, STATE, number_of, shard_partition, storage, string_of,
};
use crate::relay::Shutdown;
use crate::relay::lease::HeldLease;
use crate::{Failure, OutboxError, OutboxStore};

/// How many keys one `BatchGetItem` asks for (DynamoDB's limit).
const KEYS_PER_BATCH_GET: usize = 100;

/// How often a `BatchGetItem` is retried for keys DynamoDB left unprocessed.
const BATCH_GET_ATTEMPTS: u32 = 8;

impl<P: Publisher> StreamsRelay<P> {
    /// Publishes a page's new outbox records and marks them, until each is published,
    /// parked, held back or found published already; whether the page had any.
    pub(super) async fn settle_page<F: Future>(
        &self,
        records: &[Record],
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Result<bool, Interrupted> {
        let mut candidates = Vec::new();
        for record in records {
            match records::decode(record, self.store.config()) {
                Decoded::Candidate(candidate) => candidates.push(*candidate),
                Decoded::Other => {}
                Decoded::Corrupt(why) => {
                    tracing::error!(outbox = %self.config.relay.name, %why, "skipping a stream record the outbox cannot read");
                }
            }
        }
        if candidates.is_empty() {
            return Ok(false);
        }
        let current = self
            .current_states(&candidates)
            .await
            .map_err(|error| self.failed(tally, &error))?;
        let mut pending = self.sort_candidates(candidates, &current, tally);
        let result = self
            .publish_in_place(&mut pending, held, shutdown, tally)
            .await;
        // Marks forget published records' positions; these are the rest.
        self.store
            .forget(pending.iter().map(|record| record.position));
        result.map(|()| true)
    }

    /// Turns a page's candidates into records to publish: skips those published already,
    /// holds back aggregates whose predecessor is still pending or parked.
    pub(super) fn sort_candidates(
        &self,
        candidates: Vec<Candidate>,
        current: &HashMap<(u16, String), ItemState>,
        tally: &mut Tally,
    ) -> Vec<Pending> {
        let mut first_seen: HashSet<(String, String)> = HashSet::new();
        let mut blocked: HashSet<(String, String)> = HashSet::new();
        let mut pending = Vec::new();
        let mut held_back = 0;
        for candidate in candidates {
            let (aggregate_type, aggregate_id) = candidate.aggregate();
            let aggregate = (aggregate_type.to_owned(), aggregate_id.to_owned());
            if first_seen.insert(aggregate.clone())
                && let Some(predecessor) = candidate.predecessor()
                && current
                    .get(&(candidate.shard, predecessor))
                    .is_some_and(|state| state.pending)
            {
                blocked.insert(aggregate.clone());
            }
            let own = current.get(&(candidate.shard, candidate.sort_key.clone()));
            let Some(state) = own.filter(|state| state.pending) else {
                // Published (and perhaps deleted by TTL) since it was committed.
                tally.counts.already_published += 1;
                continue;
            };
            if state.parked {
                blocked.insert(aggregate.clone());
            }
            if blocked.contains(&aggregate) {
                held_back += 1;
                continue;
            }
            pending.push(Pending {
                position: self.store.position_at(candidate.shard, &candidate.sort_key),
                envelope: candidate.envelope,
                attempts: state.attempts,
                settled: false,
            });
        }
        tally.meter.held_back(held_back);
        pending
    }

    /// Publishes `pending` in order, retrying failures in place with the backoff, until
    /// every record is settled.
    pub(super) async fn publish_in_place<F: Future>(
        &self,
        pending: &mut [Pending],
        held: &mut HeldLease,
        shutdown: &mut Shutdown<'_, F>,
        tally: &mut Tally,
    ) -> Result<(), Interrupted> {
        let relay = &self.config.relay;
        loop {
            let waiting: Vec<usize> = (0..pending.len())
                .filter(|&index| !pending[index].settled)
                .collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if shutdown.requested() {
                return Err(Interrupted::Stopped);
            }
            if !self.keeper().renew_if_due(held, &mut tally.meter).await {
                return Err(Interrupted::Lost);
            }
            let envelopes: Vec<Envelope> = waiting
                .iter()
                .map(|&index| pending[index].envelope.clone())
                .collect();
            tally.meter.batch();
            let started = Instant::now();
            let results = self.publish_renewing(&envelopes, held, tally).await?;
            tally.meter.publish_time(started.elapsed());

            let now = SystemTime::now();
            let mut results = results.into_iter();
            let mut accepted = Vec::new();
            let mut failures = Vec::new();
            let mut parked = 0;
            let mut held_back = 0;
            let mut soonest: Option<Duration> = None;
            for &index in &waiting {
                let result = results.next().unwrap_or_else(|| {
                    Err(PublishError::Unavailable {
                        reason: "the publisher returned no result for this event".to_owned(),
                    })
                });
                if pending[index].settled {
                    continue; // held back behind a record parked just now
                }
                let error = match result {
                    Ok(()) => {
                        accepted.push(pending[index].position);
                        pending[index].settled = true;
                        continue;
                    }
                    // Waits behind its aggregate's failed record, in place.
                    Err(PublishError::EarlierEventFailed { .. }) => continue,
                    Err(error) => error,
                };
                let record = &mut pending[index];
                record.attempts = record.attempts.saturating_add(1);
                let attempts = record.attempts;
                if !error.is_retriable() || attempts >= relay.max_attempts {
                    let why = if error.is_retriable() {
                        format!("parked after {attempts} failed attempts")
                    } else {
                        "parked: not retriable".to_owned()
                    };
                    tracing::warn!(event_id = %record.envelope.id(), reason = %error, "outbox record parked; the stream moves on, its aggregate's later records wait");
                    failures.push(Failure {
                        position: record.position,
                        reason: format!("{error} ({why})"),
                        retry_at: None,
                    });
                    record.settled = true;
                    parked += 1;
                    let aggregate = (
                        record.envelope.aggregate_type().clone(),
                        record.envelope.aggregate_id().clone(),
                    );
                    for later in &mut pending[index + 1..] {
                        if !later.settled
                            && later.envelope.aggregate_type() == &aggregate.0
                            && later.envelope.aggregate_id() == &aggregate.1
                        {
                            later.settled = true;
                            held_back += 1;
                        }
                    }
                } else {
                    let delay = relay.backoff.delay(attempts);
                    soonest = Some(soonest.map_or(delay, |known| known.min(delay)));
                    tracing::debug!(event_id = %record.envelope.id(), reason = %error, ?delay, "outbox record failed; retrying in place");
                    failures.push(Failure {
                        position: record.position,
                        reason: error.to_string(),
                        retry_at: Some(now + delay),
                    });
                }
            }
            tally.meter.published(count(accepted.len()));
            tally.meter.held_back(held_back);
            if !accepted.is_empty() {
                match self.store.mark_published(&held.lease, &accepted).await {
                    Ok(()) => {}
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if !failures.is_empty() {
                match self.store.mark_failed(&held.lease, &failures).await {
                    Ok(()) => tally.meter.failed(count(failures.len()), parked),
                    Err(OutboxError::LeaseLost { .. }) => return Err(Interrupted::Lost),
                    Err(error) => return Err(self.failed(tally, &error)),
                }
            }
            if let Some(delay) = soonest {
                self.pause(delay, held, shutdown, tally).await?;
            }
        }
    }

    /// The current state of each candidate's item and of each aggregate's first
    /// candidate's predecessor, read strongly consistently; an item absent from the answer
    /// is gone (published, then deleted by TTL).
    pub(super) async fn current_states(
        &self,
        candidates: &[Candidate],
    ) -> Result<HashMap<(u16, String), ItemState>, OutboxError> {
        const OPERATION: &str = "reading the state of streamed outbox records";
        let config = self.store.config();
        let mut keys: Vec<(u16, String)> = Vec::new();
        let mut wanted = HashSet::new();
        let mut first_seen = HashSet::new();
        for candidate in candidates {
            if first_seen.insert(candidate.aggregate())
                && let Some(predecessor) = candidate.predecessor()
                && wanted.insert((candidate.shard, predecessor.clone()))
            {
                keys.push((candidate.shard, predecessor));
            }
            if wanted.insert((candidate.shard, candidate.sort_key.clone())) {
                keys.push((candidate.shard, candidate.sort_key.clone()));
            }
        }
        let mut states = HashMap::new();
        for chunk in keys.chunks(KEYS_PER_BATCH_GET) {
            let mut asked: Vec<_> = chunk
                .iter()
                .map(|(shard, sort_key)| config.key(shard_partition(*shard), sort_key.clone()))
                .collect();
            let mut attempt = 0;
            while !asked.is_empty() {
                attempt += 1;
                if attempt > BATCH_GET_ATTEMPTS {
                    return Err(OutboxError::storage(
                        OPERATION,
                        format!(
                            "DynamoDB left keys unprocessed {BATCH_GET_ATTEMPTS} times \
                         (throttled); the relay retries"
                        ),
                    ));
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut asked)))
                    .consistent_read(true)
                    .projection_expression("#pk, #sk, #state, #attempts, #parked")
                    .expression_attribute_names("#pk", &config.partition_key)
                    .expression_attribute_names("#sk", &config.sort_key)
                    .expression_attribute_names("#state", STATE)
                    .expression_attribute_names("#attempts", ATTEMPTS)
                    .expression_attribute_names("#parked", PARKED)
                    .build()
                    .map_err(|error| storage(OPERATION, error))?;
                let output = self
                    .store
                    .client()
                    .batch_get_item()
                    .request_items(&config.table, request)
                    .send()
                    .await
                    .map_err(|error| storage(OPERATION, error))?;
                for item in output
                    .responses()
                    .and_then(|responses| responses.get(&config.table))
                    .into_iter()
                    .flatten()
                {
                    let shard = string_of(item, &config.partition_key)
                        .and_then(|pk| pk.strip_prefix("outbox#"))
                        .and_then(|shard| shard.parse::<u16>().ok());
                    let (Some(shard), Some(sort_key)) = (shard, string_of(item, &config.sort_key))
                    else {
                        continue;
                    };
                    states.insert(
                        (shard, sort_key.to_owned()),
                        ItemState {
                            pending: string_of(item, STATE) == Some(PENDING),
                            parked: matches!(item.get(PARKED), Some(AttributeValue::Bool(true))),
                            attempts: number_of(item, ATTEMPTS)
                                .and_then(|attempts| u32::try_from(attempts).ok())
                                .unwrap_or(0),
                        },
                    );
                }
                if let Some(left) = output
                    .unprocessed_keys()
                    .and_then(|left| left.get(&config.table))
                {
                    asked = left.keys().to_vec();
                    if !asked.is_empty() {
                        tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                    }
                }
            }
        }
        Ok(states)
    }
}
