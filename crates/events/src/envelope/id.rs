//! The event id: a UUIDv7, so ids sort by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::{Uuid, Variant};

use super::error::FieldError;
use super::serde_str::deserialize_parsed;

/// The id of an event, also used as its correlation and causation ids.
///
/// Always a version 7 UUID (RFC 9562): time-ordered, so ids made later sort later, which
/// keeps database indexes on them compact. Written as the lowercase hyphenated form.
///
/// ```
/// use dovetail_events::envelope::EventId;
///
/// let id = EventId::generate();
/// let text = id.to_string();
/// assert_eq!(EventId::parse(&text)?, id);
/// assert!(EventId::parse("a4b2f1c8-6f1e-4b8e-9c1d-2d3e4f5a6b7c").is_err()); // a v4 UUID
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(Uuid);

impl EventId {
    /// A new id from the current time; ids made by one process are strictly increasing.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// Parses an event id from any form the `uuid` crate reads (hyphenated, simple,
    /// braced, URN).
    ///
    /// # Errors
    ///
    /// [`FieldError::NotAUuid`] when `text` is not a UUID, [`FieldError::NotUuidV7`] when
    /// it is one of another version.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        Self::parse_field("event id", text)
    }

    /// Takes a UUID that is already parsed.
    ///
    /// # Errors
    ///
    /// [`FieldError::NotUuidV7`] when `uuid` is not a version 7 UUID.
    pub fn from_uuid(uuid: Uuid) -> Result<Self, FieldError> {
        Self::check_version("event id", uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Parses an id for `field` (the correlation and causation ids are event ids too),
    /// so that the error names the right field.
    pub(crate) fn parse_field(field: &'static str, text: &str) -> Result<Self, FieldError> {
        let uuid = Uuid::parse_str(text).map_err(|err| FieldError::NotAUuid {
            field,
            reason: err.to_string(),
        })?;
        Self::check_version(field, uuid)
    }

    fn check_version(field: &'static str, uuid: Uuid) -> Result<Self, FieldError> {
        let version = uuid.get_version_num();
        let found = match uuid.get_variant() {
            Variant::RFC4122 if version == 7 => return Ok(Self(uuid)),
            Variant::RFC4122 => format!("a version {version} UUID"),
            variant => format!("a UUID of the {variant:?} variant"),
        };
        Err(FieldError::NotUuidV7 { field, found })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for EventId {
    type Err = FieldError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const V7: &str = "01936f8e-6c1a-7b3e-9f00-0123456789ab";

    #[test]
    fn generated_ids_are_v7_and_increase() {
        let first = EventId::generate();
        let second = EventId::generate();
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert!(second > first);
    }

    #[test]
    fn round_trips_through_its_text() {
        let id = EventId::parse(V7).unwrap();
        assert_eq!(id.to_string(), V7);
        assert_eq!(EventId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn reads_uppercase_and_writes_lowercase() {
        let id = EventId::parse(&V7.to_uppercase()).unwrap();
        assert_eq!(id.to_string(), V7);
    }

    #[test]
    fn rejects_text_that_is_not_a_uuid() {
        let err = EventId::parse("not-a-uuid").unwrap_err();
        assert!(
            err.to_string().starts_with("event id is not a UUID: "),
            "{err}"
        );
    }

    #[test]
    fn rejects_other_uuid_versions() {
        let err = EventId::parse("a4b2f1c8-6f1e-4b8e-9c1d-2d3e4f5a6b7c").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event id is a version 4 UUID; event ids are UUIDv7 (time-ordered)"
        );
        let err = EventId::from_uuid(Uuid::max()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event id is a UUID of the Future variant; event ids are UUIDv7 (time-ordered)"
        );
    }

    #[test]
    fn rejects_a_v7_uuid_of_a_foreign_variant() {
        // Version nibble 7, variant bits 0b0xx (NCS) instead of 0b10x.
        let err = EventId::parse("01936f8e-6c1a-7b3e-1f00-0123456789ab").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event id is a UUID of the NCS variant; event ids are UUIDv7 (time-ordered)"
        );
    }

    #[test]
    fn names_the_field_it_parses() {
        let err = EventId::parse_field("causation id", "x").unwrap_err();
        assert!(
            err.to_string().starts_with("causation id is not a UUID"),
            "{err}"
        );
    }

    #[test]
    fn serializes_as_a_string() {
        let id = EventId::parse(V7).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{V7}\""));
        let back: EventId = serde_json::from_str(&format!("\"{V7}\"")).unwrap();
        assert_eq!(back, id);
    }
}
