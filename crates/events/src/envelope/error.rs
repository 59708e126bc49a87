//! Errors shared by the envelope's field types: why a value is not a valid field.

use thiserror::Error;

/// A value that cannot be an envelope field: the error of every `parse` in this module
/// except [`TraceParent::parse`](super::TraceParent::parse).
///
/// Each variant names the field (`"event type"`, `"aggregate id"`, ...) and says what the
/// rule is, so the message can go back to whoever sent the value.
///
/// ```
/// use dovetail_events::envelope::{EventType, FieldError};
///
/// let err = EventType::parse("order placed").unwrap_err();
/// assert!(matches!(err, FieldError::InvalidCharacter { character: ' ', index: 5, .. }));
/// assert_eq!(
///     err.to_string(),
///     "event type contains ' ' at index 5; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FieldError {
    /// The value is empty.
    ///
    /// ### Handling
    ///
    /// A caller's mistake: report it as a bad request (400). In a received message it is
    /// a poison message: send it to the dead-letter queue, retrying cannot help.
    #[error("{field} must not be empty")]
    Empty {
        /// The field, e.g. `"event type"`.
        field: &'static str,
    },

    /// The value is longer than the field allows.
    ///
    /// ### Handling
    ///
    /// As for [`FieldError::Empty`]: 400 for a caller, dead-letter for a message.
    #[error("{field} is {actual} characters long; the limit is {max}")]
    TooLong {
        /// The field, e.g. `"aggregate id"`.
        field: &'static str,
        /// The most characters the field takes.
        max: usize,
        /// How many characters the value has.
        actual: usize,
    },

    /// The value holds a character the field does not allow.
    ///
    /// ### Handling
    ///
    /// As for [`FieldError::Empty`]: 400 for a caller, dead-letter for a message.
    #[error("{field} contains {character:?} at index {index}; allowed are {allowed}")]
    InvalidCharacter {
        /// The field, e.g. `"source"`.
        field: &'static str,
        /// The first character that is not allowed.
        character: char,
        /// Its index, counted in characters from 0.
        index: usize,
        /// The characters the field allows, in words.
        allowed: &'static str,
    },

    /// A number that starts at 1 (a schema version, a sequence) is 0.
    ///
    /// ### Handling
    ///
    /// A programming error when it comes from code (versions and sequences start at 1);
    /// dead-letter it when it comes in a message.
    #[error("{field} must be at least 1")]
    Zero {
        /// The field, e.g. `"sequence"`.
        field: &'static str,
    },

    /// The value is not a UUID at all.
    ///
    /// ### Handling
    ///
    /// As for [`FieldError::Empty`]: 400 for a caller, dead-letter for a message.
    #[error("{field} is not a UUID: {reason}")]
    NotAUuid {
        /// The field, e.g. `"event id"`.
        field: &'static str,
        /// What the UUID parser said.
        reason: String,
    },

    /// The value is a UUID, but not a version 7 (time-ordered) one of the RFC 9562 variant.
    ///
    /// ### Handling
    ///
    /// Event ids are UUIDv7 so that they sort by creation time; a producer that sends
    /// another version is not using this crate's [`EventId::generate`](super::EventId::generate).
    /// Dead-letter the message and fix the producer.
    #[error("{field} is {found}; event ids are UUIDv7 (time-ordered)")]
    NotUuidV7 {
        /// The field, e.g. `"causation id"`.
        field: &'static str,
        /// What the UUID is instead, e.g. `"a version 4 UUID"`.
        found: String,
    },

    /// The value is not an RFC 3339 timestamp.
    ///
    /// ### Handling
    ///
    /// As for [`FieldError::Empty`]: 400 for a caller, dead-letter for a message.
    #[error("{field} is not an RFC 3339 timestamp: {reason}")]
    NotRfc3339 {
        /// The field, e.g. `"occurred at"`.
        field: &'static str,
        /// What the timestamp parser said.
        reason: String,
    },

    /// The timestamp is outside the years RFC 3339 can write (0000 to 9999, in UTC).
    ///
    /// ### Handling
    ///
    /// A programming error: the time was computed wrongly. Fix the code that made it.
    #[error("{field} falls in the year {year} (UTC); RFC 3339 covers the years 0000 to 9999")]
    YearOutOfRange {
        /// The field, e.g. `"occurred at"`.
        field: &'static str,
        /// The year of the timestamp in UTC.
        year: i32,
    },
}

/// An event that could not be turned into a JSON payload by
/// [`Envelope::new`](super::Envelope::new).
///
/// ### Handling
///
/// A programming error in the event type's `Serialize` implementation (for example a map
/// whose keys are not strings, or a custom `serialize` that fails). Fix the type; retrying
/// cannot help.
///
/// ```
/// use std::collections::BTreeMap;
/// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Odd { by_pair: BTreeMap<(u8, u8), u8> }
/// impl Event for Odd {
///     const TYPE: &'static str = "odd";
///     const VERSION: u32 = 1;
/// }
///
/// let event = Odd { by_pair: BTreeMap::from([((1, 2), 3)]) };
/// let err = Envelope::new(
///     Source::parse("tests")?,
///     AggregateRef::parse("odd", "1")?,
///     Sequence::FIRST,
///     &event,
///     EventMetadata::default(),
/// )
/// .unwrap_err();
/// assert_eq!(err.to_string(), "event odd v1 does not serialize to JSON: key must be a string");
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("event {event_type} v{version} does not serialize to JSON: {message}")]
#[non_exhaustive]
pub struct EncodeError {
    /// The event's type.
    pub event_type: &'static str,
    /// The event's schema version.
    pub version: u32,
    /// What serde said.
    pub message: String,
}
