//! The consumer of policy and claim events: each event's snapshot becomes a
//! [`SearchDocument`] written with the event's sequence as its version.
//!
//! Duplicates and reordering need no idempotency records here: the external version is
//! the idempotency check. A redelivered event is a write of a version the index holds
//! already, a late event one of a lower version; both are stale writes, acknowledged
//! without a change (`search_events_total{outcome="stale"}`).
//!
//! Freshness: `search_freshness_seconds` is the time from the event's `occurred_at` to
//! its document's write being acknowledged. On tantivy a write is searchable when it is
//! acknowledged; on OpenSearch it becomes searchable at the next refresh, at most the
//! index's `refresh_interval` later (the benchmark measures that directly).

use std::time::SystemTime;

use dovetail_events::consumer::HandlerError;
use dovetail_events::envelope::Envelope;

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
    if outcome == UpsertOutcome::Applied
        && let Ok(lag) = SystemTime::now().duration_since(SystemTime::from(envelope.occurred_at()))
    {
        metrics::histogram!("search_freshness_seconds", "doc_type" => doc_type)
            .record(lag.as_secs_f64());
    }
    Ok(outcome)
}
