//! Size limits of transports, and the check that an envelope fits one.

use thiserror::Error;

use super::Envelope;
use super::id::EventId;
use super::names::EventType;

/// The largest message a transport accepts.
///
/// ```
/// use dovetail_events::envelope::TransportLimit;
///
/// assert_eq!(TransportLimit::SNS.max_bytes, 262_144);
/// let embedded = TransportLimit { name: "embedded bus", max_bytes: 4 << 20 };
/// assert_eq!(embedded.max_bytes, 4_194_304);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransportLimit {
    /// The transport, for messages: `"SNS"`, `"SQS"`, ...
    pub name: &'static str,
    /// The most bytes a message (body and attributes together) may have.
    pub max_bytes: usize,
}

impl TransportLimit {
    /// SNS `Publish`: 256 KiB for the message and its attributes together. A queue fed
    /// by a topic is held to this limit too, whatever the queue itself accepts.
    pub const SNS: Self = Self {
        name: "SNS",
        max_bytes: 262_144,
    };

    /// SQS, classic limit: 256 KiB for the body and attributes together. Every queue and
    /// every emulator accepts this much.
    pub const SQS: Self = Self {
        name: "SQS",
        max_bytes: 262_144,
    };

    /// SQS sent to directly, with the 1 MiB limit AWS introduced in 2025 (the queue's
    /// `MaximumMessageSize` must be raised to match). Not for queues fed by SNS, which
    /// stays at 256 KiB: use [`TransportLimit::SNS`] for those.
    pub const SQS_1_MIB: Self = Self {
        name: "SQS (1 MiB)",
        max_bytes: 1_048_576,
    };

    /// EventBridge `PutEvents`: 256 KiB for an entry. EventBridge counts the entry's
    /// fields rather than one body, so this check is an approximation that errs on the
    /// side of the envelope's whole JSON.
    pub const EVENTBRIDGE: Self = Self {
        name: "EventBridge",
        max_bytes: 262_144,
    };
}

/// Checks that `envelope`, as a message body with its [`message attributes`], fits `limit`.
///
/// [`message attributes`]: Envelope::message_attributes
///
/// # Errors
///
/// [`TooLarge`] when the body and attributes together are over `limit.max_bytes`.
///
/// ```
/// use dovetail_events::envelope::{
///     check_size, AggregateRef, Envelope, Event, EventMetadata, Sequence, Source, TransportLimit,
/// };
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct DocumentAttached { content: String }
/// impl Event for DocumentAttached {
///     const TYPE: &'static str = "claim.document-attached";
///     const VERSION: u32 = 1;
/// }
///
/// let envelope = Envelope::new(
///     Source::parse("claim-service")?,
///     AggregateRef::parse("claim", "c-1")?,
///     Sequence::FIRST,
///     &DocumentAttached { content: "x".repeat(300_000) },
///     EventMetadata::default(),
/// )?;
/// let err = check_size(&envelope, TransportLimit::SNS).unwrap_err();
/// assert_eq!(err.transport, "SNS");
/// assert!(check_size(&envelope, TransportLimit::SQS_1_MIB).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_size(envelope: &Envelope, limit: TransportLimit) -> Result<(), TooLarge> {
    let actual_bytes = envelope.encoded_len() + envelope.message_attributes().encoded_len();
    if actual_bytes <= limit.max_bytes {
        Ok(())
    } else {
        Err(TooLarge {
            event_id: envelope.id(),
            event_type: envelope.event_type().clone(),
            transport: limit.name,
            max_bytes: limit.max_bytes,
            actual_bytes,
        })
    }
}

/// An envelope too large for its transport.
///
/// ### Handling
///
/// Sending it would fail, and retrying cannot help. Store the large part of the payload
/// elsewhere (an object store such as S3, or the service's own database) and put a
/// reference to it in the event (the claim-check pattern); consumers fetch it when they
/// need it. Check before the envelope is written to the outbox, so a write that cannot
/// be published is refused at once.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "the {event_type} envelope {event_id} is {actual_bytes} bytes with its message attributes, over the {transport} limit of {max_bytes} bytes; store the payload elsewhere (e.g. S3) and send a reference to it"
)]
#[non_exhaustive]
pub struct TooLarge {
    /// The envelope's event id.
    pub event_id: EventId,
    /// The envelope's event type.
    pub event_type: EventType,
    /// The transport, [`TransportLimit::name`].
    pub transport: &'static str,
    /// The transport's limit, [`TransportLimit::max_bytes`].
    pub max_bytes: usize,
    /// The envelope's size: its JSON body and its message attributes.
    pub actual_bytes: usize,
}
