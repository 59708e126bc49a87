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

/// Publishes the idempotency layer's counters as metrics: duplicates answered (from the
/// in-process cache or the store), event ids reused with another payload, and events
/// handled and recorded. Cheap: a few atomic loads; counters only ever move up.
pub fn record_idempotency_stats(stats: &IdempotencyStats) {
    metrics::counter!("search_consumer_duplicates_total")
        .absolute(stats.duplicates_from_cache() + stats.duplicates_from_store());
    metrics::counter!("search_consumer_key_reused_total").absolute(stats.mismatches());
    metrics::counter!("search_consumer_processed_total").absolute(stats.processed());
}
