//! Publishes a batch in rounds so that per-aggregate order survives partial failures.
//!
//! Round `k` holds the `k`-th envelope of every aggregate in the batch. Round `k + 1` is sent
//! only after round `k` returned, and only for aggregates whose earlier envelopes were all
//! accepted; the others fail with [`PublishError::EarlierEventFailed`] without being sent.
//! No broker call ever holds two envelopes of one aggregate, so a broker that reorders the
//! messages of one call (as SNS standard topics may) cannot reorder an aggregate.

use std::collections::HashMap;
use std::future::Future;

use super::{PublishError, PublishResult};
use crate::envelope::{Envelope, EventId};

/// Sends `envelopes` through `send_round` (which must answer one result per envelope it is
/// given, in order) and returns one result per envelope, in batch order.
pub(crate) async fn publish_in_rounds<'a, Send, Fut>(
    envelopes: &'a [Envelope],
    mut send_round: Send,
) -> Vec<PublishResult>
where
    Send: FnMut(Vec<&'a Envelope>) -> Fut,
    Fut: Future<Output = Vec<PublishResult>>,
{
    let mut results: Vec<Option<PublishResult>> = envelopes.iter().map(|_| None).collect();
    let mut failed: HashMap<(&str, &str), EventId> = HashMap::new();
    for round in rounds(envelopes) {
        let mut to_send = Vec::with_capacity(round.len());
        for index in round {
            let envelope = &envelopes[index];
            match failed.get(&aggregate_of(envelope)) {
                Some(earlier) => {
                    results[index] =
                        Some(Err(PublishError::EarlierEventFailed { earlier: *earlier }));
                }
                None => to_send.push(index),
            }
        }
        if to_send.is_empty() {
            continue;
        }
        let mut sent = send_round(to_send.iter().map(|&index| &envelopes[index]).collect())
            .await
            .into_iter();
        for index in to_send {
            let result = sent.next().unwrap_or_else(|| {
                Err(PublishError::Unavailable {
                    reason: "the broker call returned fewer results than messages".to_owned(),
                })
            });
            if result.is_err() {
                let envelope = &envelopes[index];
                failed.insert(aggregate_of(envelope), envelope.id());
            }
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(PublishError::Unavailable {
                    reason: "no result was recorded for this event".to_owned(),
                })
            })
        })
        .collect()
}

/// Indices into the batch grouped by round, each round in batch order.
fn rounds(envelopes: &[Envelope]) -> Vec<Vec<usize>> {
    let mut next_round: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (index, envelope) in envelopes.iter().enumerate() {
        let round = next_round.entry(aggregate_of(envelope)).or_insert(0);
        if rounds.len() <= *round {
            rounds.push(Vec::new());
        }
        rounds[*round].push(index);
        *round += 1;
    }
    rounds
}

fn aggregate_of(envelope: &Envelope) -> (&str, &str) {
    (
        envelope.aggregate_type().as_str(),
        envelope.aggregate_id().as_str(),
    )
}
