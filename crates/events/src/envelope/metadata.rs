//! The optional parts of a new envelope: correlation, causation and trace.

use super::Envelope;
use super::id::EventId;
use super::trace::TraceContext;

/// What a new event knows about the work it is part of, passed to
/// [`Envelope::new`](super::Envelope::new).
///
/// All fields are optional. When `correlation_id` is `None`, the new event correlates to
/// itself: it starts a new conversation and its own id becomes the correlation id that
/// the events it causes carry on. Use [`EventMetadata::caused_by`] when one event leads
/// to another, and `EventMetadata::default()` for an event that starts from a request.
///
/// ```
/// use dovetail_events::envelope::{EventId, EventMetadata};
///
/// let request_id = EventId::generate();
/// let metadata = EventMetadata { correlation_id: Some(request_id), ..EventMetadata::default() };
/// assert_eq!(metadata.causation_id, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMetadata {
    /// The conversation the event belongs to; `None` makes the event its own.
    pub correlation_id: Option<EventId>,
    /// The event (or command) that directly caused this one.
    pub causation_id: Option<EventId>,
    /// The trace to continue.
    pub trace: Option<TraceContext>,
}

impl EventMetadata {
    /// Metadata for an event that `cause` led to: the same correlation id (or `cause`'s
    /// own id when it has none), `cause` as the causation, and the same trace context, so
    /// the new event is a child of the span that produced `cause`.
    ///
    /// A handler that runs inside a span of its own may replace `trace` with that span's
    /// context; the trace id stays the same either way.
    ///
    /// ```
    /// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct ClaimSubmitted { claim_id: String }
    /// impl Event for ClaimSubmitted {
    ///     const TYPE: &'static str = "claim.submitted";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// let source = Source::parse("claim-service")?;
    /// let cause = Envelope::new(
    ///     source.clone(),
    ///     AggregateRef::parse("claim", "c-1")?,
    ///     Sequence::FIRST,
    ///     &ClaimSubmitted { claim_id: "c-1".into() },
    ///     EventMetadata::default(),
    /// )?;
    /// let metadata = EventMetadata::caused_by(&cause);
    /// assert_eq!(metadata.correlation_id, Some(cause.id()));
    /// assert_eq!(metadata.causation_id, Some(cause.id()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn caused_by(cause: &Envelope) -> Self {
        Self {
            correlation_id: Some(cause.correlation_id().unwrap_or(cause.id())),
            causation_id: Some(cause.id()),
            trace: cause.trace().cloned(),
        }
    }
}
