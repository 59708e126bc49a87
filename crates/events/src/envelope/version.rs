//! The schema version of an event's payload.

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::FieldError;
use super::event::Event;

/// Which version of its type's schema an event's payload follows: 1 for the first, one
/// more for each incompatible change. [`Upcasters`](super::Upcasters) turn older versions
/// into the current one on read.
///
/// ```
/// use dovetail_events::envelope::SchemaVersion;
///
/// assert_eq!(SchemaVersion::new(2)?.get(), 2);
/// assert_eq!(SchemaVersion::FIRST.to_string(), "1");
/// assert!(SchemaVersion::new(0).is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaVersion(NonZeroU32);

impl SchemaVersion {
    /// The first version of a schema.
    pub const FIRST: Self = Self(NonZeroU32::MIN);

    /// A schema version from an integer.
    ///
    /// # Errors
    ///
    /// [`FieldError::Zero`] for 0: versions start at 1.
    pub fn new(value: u32) -> Result<Self, FieldError> {
        NonZeroU32::new(value).map(Self).ok_or(FieldError::Zero {
            field: "schema version",
        })
    }

    /// The current version of the event `E`, `E::VERSION`.
    ///
    /// `E::VERSION` is checked when the program is compiled: 0 stops the build.
    ///
    /// ```
    /// use dovetail_events::envelope::{Event, SchemaVersion};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PolicyActivated { policy_id: String }
    /// impl Event for PolicyActivated {
    ///     const TYPE: &'static str = "policy.activated";
    ///     const VERSION: u32 = 2;
    /// }
    ///
    /// assert_eq!(SchemaVersion::of::<PolicyActivated>().get(), 2);
    /// ```
    pub fn of<E: Event>() -> Self {
        let version = const {
            match NonZeroU32::new(E::VERSION) {
                Some(version) => version,
                None => panic!("Event::VERSION must be at least 1"),
            }
        };
        Self(version)
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The version after this one, or `None` after `u32::MAX`.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.get())
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u32::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one() {
        assert_eq!(SchemaVersion::FIRST.get(), 1);
        assert_eq!(
            SchemaVersion::new(0).unwrap_err().to_string(),
            "schema version must be at least 1"
        );
    }

    #[test]
    fn next_stops_at_the_end() {
        assert_eq!(SchemaVersion::FIRST.next().unwrap().get(), 2);
        assert_eq!(SchemaVersion::new(u32::MAX).unwrap().next(), None);
    }

    #[test]
    fn serializes_as_a_number() {
        let version = SchemaVersion::new(3).unwrap();
        assert_eq!(serde_json::to_string(&version).unwrap(), "3");
        assert_eq!(serde_json::from_str::<SchemaVersion>("3").unwrap(), version);
        let err = serde_json::from_str::<SchemaVersion>("0").unwrap_err();
        assert_eq!(err.to_string(), "schema version must be at least 1");
    }
}
