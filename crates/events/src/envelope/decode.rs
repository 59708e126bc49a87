//! Decoding an envelope's payload into its Rust type, upcasting older versions on the way.

use thiserror::Error;

use super::Envelope;
use super::event::Event;
use super::names::EventType;
use super::upcast::{UpcastError, Upcasters};
use super::version::SchemaVersion;

impl Envelope {
    /// Decodes the payload into `E`: checks that the envelope holds an `E::TYPE`, upcasts
    /// the payload from its version to `E::VERSION` with `upcasters`, and deserializes it.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] that says which of those steps failed; see its variants for what
    /// to do about each.
    ///
    /// ```
    /// use dovetail_events::envelope::{
    ///     AggregateRef, DecodeError, Envelope, Event, EventMetadata, Sequence, Source, Upcasters,
    /// };
    ///
    /// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    /// struct ClaimSubmitted { claim_id: String }
    /// impl Event for ClaimSubmitted {
    ///     const TYPE: &'static str = "claim.submitted";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// #[derive(Debug, serde::Serialize, serde::Deserialize)]
    /// struct ClaimPaid { claim_id: String }
    /// impl Event for ClaimPaid {
    ///     const TYPE: &'static str = "claim.paid";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// let event = ClaimSubmitted { claim_id: "c-1".into() };
    /// let envelope = Envelope::new(
    ///     Source::parse("claim-service")?,
    ///     AggregateRef::parse("claim", "c-1")?,
    ///     Sequence::FIRST,
    ///     &event,
    ///     EventMetadata::default(),
    /// )?;
    ///
    /// let upcasters = Upcasters::new();
    /// assert_eq!(envelope.decode::<ClaimSubmitted>(&upcasters)?, event);
    /// assert!(matches!(
    ///     envelope.decode::<ClaimPaid>(&upcasters),
    ///     Err(DecodeError::TypeMismatch { .. })
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode<E: Event>(&self, upcasters: &Upcasters) -> Result<E, DecodeError> {
        let expected = EventType::of::<E>();
        let current = SchemaVersion::of::<E>();
        let event_type = self.event_type();
        let version = self.schema_version();
        if *event_type != expected {
            return Err(DecodeError::TypeMismatch {
                expected: E::TYPE,
                actual: event_type.clone(),
            });
        }
        if version > current {
            return Err(DecodeError::VersionTooNew {
                event_type: event_type.clone(),
                version,
                known: current,
            });
        }
        let payload = upcasters.upcast(event_type, version, current, self.payload().clone())?;
        serde_json::from_value(payload).map_err(|err| DecodeError::Payload {
            event_type: event_type.clone(),
            version: current,
            upcast_from: (version < current).then_some(version),
            message: err.to_string(),
        })
    }
}

/// Why an envelope's payload could not be decoded into a Rust type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The envelope holds another event type.
    ///
    /// ### Handling
    ///
    /// Route on [`Envelope::event_type`] before decoding. A consumer that receives a type it
    /// does not handle should acknowledge (delete) the message, or narrow its subscription
    /// filter; retrying cannot help.
    #[error("the envelope holds a {actual} event, not a {expected}")]
    TypeMismatch {
        /// The type asked for, `E::TYPE`.
        expected: &'static str,
        /// The type in the envelope.
        actual: EventType,
    },

    /// The envelope's schema version is newer than the Rust type knows.
    ///
    /// ### Handling
    ///
    /// A producer runs newer code than this consumer. Do not acknowledge the message: let
    /// it return to the queue (or the dead-letter queue, for a redrive later) and deploy
    /// the consumer that knows the new version. Deploy consumers before producers.
    #[error(
        "{event_type} v{version} is newer than this consumer knows (v{known}); deploy the consumer that knows v{version}"
    )]
    VersionTooNew {
        /// The event type.
        event_type: EventType,
        /// The envelope's schema version.
        version: SchemaVersion,
        /// `E::VERSION`, the newest version this code knows.
        known: SchemaVersion,
    },

    /// No upcaster is registered for a step the payload needs.
    ///
    /// ### Handling
    ///
    /// A programming error: register the missing step with
    /// [`Upcasters::register`]. Leave the message on the queue or dead-letter it for a
    /// redrive once the fix is deployed.
    #[error("no upcaster registered for {event_type} from v{from} (needed to reach v{to})")]
    MissingUpcaster {
        /// The event type.
        event_type: EventType,
        /// The version no step starts from.
        from: SchemaVersion,
        /// The version the payload had to reach, `E::VERSION`.
        to: SchemaVersion,
    },

    /// An upcaster step failed on this payload.
    ///
    /// ### Handling
    ///
    /// The old payload is not what the upcaster expected: dead-letter the message, then
    /// fix the upcaster (or the data) and redrive.
    #[error("upcasting {event_type} from v{from} to v{} failed", u64::from(from.get()) + 1)]
    Upcast {
        /// The event type.
        event_type: EventType,
        /// The version the failed step starts from.
        from: SchemaVersion,
        /// What the upcaster said.
        #[source]
        source: UpcastError,
    },

    /// The payload, at the current version, does not deserialize into the Rust type.
    ///
    /// ### Handling
    ///
    /// The payload does not follow its schema (a producer bug, or an upcaster that builds
    /// the wrong shape): dead-letter the message; retrying cannot help.
    #[error("the payload of {event_type} v{version}{} does not deserialize: {message}", UpcastNote(*upcast_from))]
    Payload {
        /// The event type.
        event_type: EventType,
        /// The version the payload was decoded at, `E::VERSION`.
        version: SchemaVersion,
        /// The envelope's own version, when the payload was upcast from it.
        upcast_from: Option<SchemaVersion>,
        /// What serde said.
        message: String,
    },
}

/// " (upcast from v1)" or nothing, for [`DecodeError::Payload`].
struct UpcastNote(Option<SchemaVersion>);

impl std::fmt::Display for UpcastNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(from) => write!(f, " (upcast from v{from})"),
            None => Ok(()),
        }
    }
}
