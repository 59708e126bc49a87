//! The consumer of policy and claim events: each event's snapshot becomes a
//! [`SearchDocument`] written with the event's sequence as its version.
//!
//! The service runs [`apply`] behind dovetail-events' idempotent consumer
//! ([`IdempotencyLayer`](dovetail_events::idempotency::IdempotencyLayer), keyed by event
//! id, records in a SQLite file): a redelivered event is acknowledged without reaching
//! the index (`search_consumer_duplicates_total`), and an event id reused with another
//! payload is rejected to the dead letters (`search_consumer_key_reused_total`).
//!
//! The external version stays as the defence in depth: an event the layer lets through
//! again (its record expired or was lost, or another instance with its own records got
//! it) is a write of a version the index holds already, and a late event one of a lower
//! version; both are stale writes, acknowledged without a change
//! (`search_events_total{outcome="stale"}`).
//!
//! Freshness: `search_freshness_seconds` is the time from the event's `occurred_at` to
//! the moment searches see its document, recorded by the backend that knows it: tantivy
//! when its commit is reloaded (before the write is acknowledged), OpenSearch when a
//! probe written with `refresh=wait_for` after the document returns (see
//! [`OpenSearchIndex`](crate::index::OpenSearchIndex)).

use std::time::{Duration, Instant};

use dovetail_events::consumer::HandlerError;
use dovetail_events::envelope::Envelope;
use dovetail_events::idempotency::IdempotencyStats;

use crate::document::SearchDocument;
use crate::index::{IndexError, SearchIndex, UpsertOutcome};

/// Indexes the event in `envelope`.
///
/// # Errors
/// [`HandlerError::rejected`] for an event that is not a policy or claim event, or whose
/// payload does not match its schema (to the dead-letter queue);
/// [`HandlerError::retriable`] when the index is unavailable.
pub async fn apply<I: SearchIndex>(
    index: &I,
    envelope: Envelope,
) -> Result<UpsertOutcome, HandlerError> {
    let document = SearchDocument::from_envelope(&envelope)
        .map_err(|error| HandlerError::rejected(error.to_string()))?;
    let doc_type = document.doc_type.as_str();
    let outcome = index.upsert(document).await.map_err(|error| match error {
        IndexError::Unavailable(_) => HandlerError::retriable(error.to_string()),
        other => HandlerError::rejected(other.to_string()),
    })?;
    let label = match outcome {
        UpsertOutcome::Applied => "applied",
        UpsertOutcome::Stale => "stale",
    };
    metrics::counter!("search_events_total", "doc_type" => doc_type, "outcome" => label)
        .increment(1);
    Ok(outcome)
}

/// How long, by default, a handler waits out an unavailable index before it gives its
/// event back to the transport: see [`apply_patiently`].
pub const INDEX_OUTAGE_PATIENCE: Duration = Duration::from_secs(300);

/// [`apply`], retrying in place while the index is unavailable, for up to `patience`
/// (then the error goes back to the transport, which redelivers the event later).
///
/// An outage of the index would otherwise spend the event's deliveries (10 on the
/// embedded bus, the queue's `maxReceiveCount` on SQS) within minutes and send healthy
/// events to the dead letters; waiting here holds the event instead (its idempotency
/// lease and SQS visibility are extended while its handler runs), and the handlers in
/// flight waiting are the backpressure. Errors that are not retriable return at once.
///
/// # Errors
/// As [`apply`].
pub async fn apply_patiently<I: SearchIndex>(
    index: &I,
    envelope: Envelope,
    patience: Duration,
) -> Result<UpsertOutcome, HandlerError> {
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    const LONGEST_WAIT: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let mut wait = FIRST_WAIT;
    loop {
        match apply(index, envelope.clone()).await {
            Err(error) if error.is_retriable() && started.elapsed() + wait <= patience => {
                if wait == FIRST_WAIT {
                    tracing::warn!(event = %envelope.id(), %error, "index unavailable; waiting for it");
                }
                metrics::counter!("search_index_unavailable_retries_total").increment(1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_WAIT);
            }
            outcome => return outcome,
        }
    }
}

/// Publishes the idempotency layer's counters as metrics: duplicates answered (from the
/// in-process cache or the store), event ids reused with another payload, and events
/// handled and recorded. Cheap: a few atomic loads; counters only ever move up.
pub fn record_idempotency_stats(stats: &IdempotencyStats) {
    metrics::counter!("search_consumer_duplicates_total")
        .absolute(stats.duplicates_from_cache() + stats.duplicates_from_store());
    metrics::counter!("search_consumer_key_reused_total").absolute(stats.mismatches());
    metrics::counter!("search_consumer_processed_total").absolute(stats.processed());
}
