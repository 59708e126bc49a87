//! The envelope every event travels in, and its mappings to CloudEvents and to message
//! attributes.
//!
//! An [`Envelope`] holds one event and what every consumer needs to know about it: a
//! UUIDv7 [`EventId`], the [`EventType`] and [`SchemaVersion`] of the payload, the
//! [`Source`] service, the aggregate it is about and its per-aggregate [`Sequence`], when it
//! occurred, correlation and causation ids, the W3C [`TraceContext`], and the payload as
//! JSON. Every field is a type that can only hold a valid value, so an `Envelope` is valid
//! however it was made: by [`Envelope::new`] from a typed [`Event`], from its JSON form, from
//! a CloudEvent, or from [`EnvelopeParts`].
//!
//! On the way out an envelope becomes JSON ([`Envelope::to_json_bytes`], the message body),
//! [`MessageAttributes`] (what subscriptions filter on) and, for systems that speak it, a
//! CloudEvent ([`Envelope::to_cloudevent`]); [`check_size`] says whether it fits a
//! transport. On the way in, [`Envelope::decode`] turns the payload back into the Rust
//! type, upcasting older schema versions with [`Upcasters`].
//!
//! # The JSON form
//!
//! Field names are camelCase and stable; absent optional fields are left out, and fields
//! this version does not know are ignored on read, so a field can be added later without
//! breaking older consumers.
//!
//! ```json
//! {
//!   "id": "01936f8e-6c1a-7b3e-9f00-0123456789ab",
//!   "type": "policy.activated",
//!   "schemaVersion": 2,
//!   "source": "policy-service",
//!   "aggregateType": "policy",
//!   "aggregateId": "pol-42",
//!   "sequence": 3,
//!   "occurredAt": "2025-03-01T10:15:30.123456Z",
//!   "correlationId": "01936f8e-6c1a-7b3e-9f00-0123456789ab",
//!   "causationId": "01936f8e-6b00-7000-8000-000000000001",
//!   "trace": {
//!     "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//!     "tracestate": "congo=t61rcWkgMzE"
//!   },
//!   "payload": { "policyId": "pol-42" }
//! }
//! ```
//!
//! # Example
//!
//! ```
//! use dovetail_events::envelope::{
//!     AggregateRef, Envelope, Event, EventMetadata, Sequence, Source, Upcasters,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct PolicyActivated { policy_id: String }
//!
//! impl Event for PolicyActivated {
//!     const TYPE: &'static str = "policy.activated";
//!     const VERSION: u32 = 1;
//! }
//!
//! let event = PolicyActivated { policy_id: "pol-42".into() };
//! let envelope = Envelope::new(
//!     Source::parse("policy-service")?,
//!     AggregateRef::parse("policy", "pol-42")?,
//!     Sequence::FIRST,
//!     &event,
//!     EventMetadata::default(),
//! )?;
//!
//! // The body of the message, and back.
//! let body = envelope.to_json_bytes();
//! let received: Envelope = serde_json::from_slice(&body)?;
//! assert_eq!(received, envelope);
//! assert_eq!(received.decode::<PolicyActivated>(&Upcasters::new())?, event);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod attributes;
mod cloudevent;
mod decode;
mod error;
mod event;
mod id;
mod metadata;
mod names;
mod sequence;
mod serde_str;
mod size;
mod timestamp;
mod trace;
mod upcast;
mod version;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

pub use aggregate::{AggregateId, AggregateRef, AggregateType, MAX_AGGREGATE_LEN};
pub use attributes::{AttributeError, MAX_MESSAGE_ATTRIBUTES, MessageAttributes};
pub use cloudevent::CloudEventError;
pub use decode::DecodeError;
pub use error::{EncodeError, FieldError};
pub use event::Event;
pub use id::EventId;
pub use metadata::EventMetadata;
pub use names::{EventType, MAX_NAME_LEN, Source};
pub use sequence::Sequence;
pub use size::{TooLarge, TransportLimit, check_size};
pub use trace::{MAX_TRACESTATE_LEN, TraceContext, TraceParent, TraceParentError, TraceState};
pub use upcast::{RegisterError, UpcastError, Upcasters};
pub use version::SchemaVersion;

/// One event and what every consumer needs to know about it.
///
/// There are no setters: an envelope is a fact that was published. Make one with
/// [`Envelope::new`], read one from its JSON form with serde, from a CloudEvent with
/// [`Envelope::from_cloudevent`], or rebuild one with [`Envelope::from_parts`].
/// See the [module documentation](self) for the JSON form and an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    id: EventId,
    #[serde(rename = "type")]
    event_type: EventType,
    schema_version: SchemaVersion,
    source: Source,
    aggregate_type: AggregateType,
    aggregate_id: AggregateId,
    sequence: Sequence,
    #[serde(with = "timestamp")]
    occurred_at: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    correlation_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    causation_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace: Option<TraceContext>,
    payload: Value,
}

/// Every field of an [`Envelope`], for stores and adapters that keep an envelope in a
/// form of their own and rebuild it: [`Envelope::from_parts`] and [`Envelope::into_parts`].
///
/// Producers use [`Envelope::new`], which fills in the id, the time, the type and the
/// version from the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeParts {
    /// The event id.
    pub id: EventId,
    /// The event type.
    pub event_type: EventType,
    /// The schema version of `payload`.
    pub schema_version: SchemaVersion,
    /// The service that published the event.
    pub source: Source,
    /// The aggregate the event is about.
    pub aggregate: AggregateRef,
    /// The event's position among its aggregate's events.
    pub sequence: Sequence,
    /// When the event occurred, in any offset (it is stored in UTC).
    pub occurred_at: OffsetDateTime,
    /// Correlation, causation and trace, taken as they are (no defaults are applied).
    pub metadata: EventMetadata,
    /// The event as JSON.
    pub payload: Value,
}

impl Envelope {
    /// Wraps `event`, which belongs to `aggregate` at position `sequence`, in a new
    /// envelope from `source`.
    ///
    /// The envelope gets a new [`EventId`], the current time as `occurred_at`, `E::TYPE`
    /// and `E::VERSION`. When `metadata.correlation_id` is `None` the event correlates to
    /// itself (its correlation id is its own id), so that every envelope made here has a
    /// correlation id to pass on.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] when `event` does not serialize to JSON.
    ///
    /// ```
    /// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PolicyActivated { policy_id: String }
    /// impl Event for PolicyActivated {
    ///     const TYPE: &'static str = "policy.activated";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// let envelope = Envelope::new(
    ///     Source::parse("policy-service")?,
    ///     AggregateRef::parse("policy", "pol-42")?,
    ///     Sequence::FIRST,
    ///     &PolicyActivated { policy_id: "pol-42".into() },
    ///     EventMetadata::default(),
    /// )?;
    /// assert_eq!(envelope.event_type().as_str(), "policy.activated");
    /// assert_eq!(envelope.correlation_id(), Some(envelope.id()));
    /// assert_eq!(envelope.payload()["policy_id"], "pol-42");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<E: Event>(
        source: Source,
        aggregate: AggregateRef,
        sequence: Sequence,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<Self, EncodeError> {
        let event_type = EventType::of::<E>();
        let schema_version = SchemaVersion::of::<E>();
        let payload = serde_json::to_value(event).map_err(|err| EncodeError {
            event_type: E::TYPE,
            version: E::VERSION,
            message: err.to_string(),
        })?;
        let id = EventId::generate();
        Ok(Self {
            id,
            event_type,
            schema_version,
            source,
            aggregate_type: aggregate.aggregate_type,
            aggregate_id: aggregate.id,
            sequence,
            occurred_at: OffsetDateTime::now_utc(),
            correlation_id: Some(metadata.correlation_id.unwrap_or(id)),
            causation_id: metadata.causation_id,
            trace: metadata.trace,
            payload,
        })
    }

    /// Rebuilds an envelope from its fields, as a store that kept them separately would.
    ///
    /// # Errors
    ///
    /// [`FieldError::YearOutOfRange`] when `occurred_at`, in UTC, is outside the years
    /// 0000 to 9999 that RFC 3339 can write.
    ///
    /// ```
    /// use dovetail_events::envelope::*;
    /// use time::macros::datetime;
    ///
    /// let envelope = Envelope::from_parts(EnvelopeParts {
    ///     id: EventId::parse("01936f8e-6c1a-7b3e-9f00-0123456789ab")?,
    ///     event_type: EventType::parse("policy.activated")?,
    ///     schema_version: SchemaVersion::FIRST,
    ///     source: Source::parse("policy-service")?,
    ///     aggregate: AggregateRef::parse("policy", "pol-42")?,
    ///     sequence: Sequence::FIRST,
    ///     occurred_at: datetime!(2025-03-01 10:15:30 +01:00),
    ///     metadata: EventMetadata::default(),
    ///     payload: serde_json::json!({ "policy_id": "pol-42" }),
    /// })?;
    /// assert_eq!(envelope.occurred_at(), datetime!(2025-03-01 09:15:30 UTC));
    /// assert_eq!(envelope.correlation_id(), None);
    /// # Ok::<(), FieldError>(())
    /// ```
    pub fn from_parts(parts: EnvelopeParts) -> Result<Self, FieldError> {
        Ok(Self {
            id: parts.id,
            event_type: parts.event_type,
            schema_version: parts.schema_version,
            source: parts.source,
            aggregate_type: parts.aggregate.aggregate_type,
            aggregate_id: parts.aggregate.id,
            sequence: parts.sequence,
            occurred_at: timestamp::normalize(parts.occurred_at)?,
            correlation_id: parts.metadata.correlation_id,
            causation_id: parts.metadata.causation_id,
            trace: parts.metadata.trace,
            payload: parts.payload,
        })
    }

    /// Takes the envelope apart; [`Envelope::from_parts`] puts it back together.
    pub fn into_parts(self) -> EnvelopeParts {
        EnvelopeParts {
            id: self.id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            source: self.source,
            aggregate: AggregateRef::new(self.aggregate_type, self.aggregate_id),
            sequence: self.sequence,
            occurred_at: self.occurred_at,
            metadata: EventMetadata {
                correlation_id: self.correlation_id,
                causation_id: self.causation_id,
                trace: self.trace,
            },
            payload: self.payload,
        }
    }

    /// The event id.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The event type.
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }

    /// The schema version of the payload.
    pub fn schema_version(&self) -> SchemaVersion {
        self.schema_version
    }

    /// The service that published the event.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The type of the aggregate the event is about.
    pub fn aggregate_type(&self) -> &AggregateType {
        &self.aggregate_type
    }

    /// The id of the aggregate the event is about.
    pub fn aggregate_id(&self) -> &AggregateId {
        &self.aggregate_id
    }

    /// The event's position among its aggregate's events.
    pub fn sequence(&self) -> Sequence {
        self.sequence
    }

    /// When the event occurred, in UTC.
    pub fn occurred_at(&self) -> OffsetDateTime {
        self.occurred_at
    }

    /// The conversation the event belongs to. Always set on envelopes made by
    /// [`Envelope::new`]; may be missing on envelopes from other producers.
    pub fn correlation_id(&self) -> Option<EventId> {
        self.correlation_id
    }

    /// The event (or command) that directly caused this one.
    pub fn causation_id(&self) -> Option<EventId> {
        self.causation_id
    }

    /// The trace the event belongs to.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }

    /// The payload as JSON, in the envelope's schema version; [`Envelope::decode`] turns it
    /// into the current Rust type.
    pub fn payload(&self) -> &Value {
        &self.payload
    }

    /// The JSON form, as the body of a message.
    ///
    /// # Panics
    ///
    /// Never: every field of an envelope serializes (the time is kept within the years
    /// RFC 3339 can write).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("every field of an envelope serializes to JSON")
    }

    /// The length in bytes of [`Envelope::to_json_bytes`], counted without building it.
    ///
    /// # Panics
    ///
    /// Never, as for [`Envelope::to_json_bytes`].
    pub fn encoded_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, self)
            .expect("every field of an envelope serializes to JSON");
        counter.0
    }
}

/// An `io::Write` that only counts what is written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
