//! The per-aggregate sequence number of an event.

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::FieldError;

/// The position of an event among the events of its aggregate: 1 for the first, then 2,
/// 3 and so on. A relay never publishes n + 1 of an aggregate before n was accepted, and
/// a consumer can tell a duplicate or a gap from it.
///
/// ```
/// use dovetail_events::envelope::Sequence;
///
/// let third = Sequence::new(3)?;
/// assert_eq!(third.get(), 3);
/// assert_eq!(Sequence::FIRST.next(), Some(Sequence::new(2)?));
/// assert!(Sequence::new(0).is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sequence(NonZeroU64);

impl Sequence {
    /// The sequence number of an aggregate's first event.
    pub const FIRST: Self = Self(NonZeroU64::MIN);

    /// A sequence number from an integer.
    ///
    /// # Errors
    ///
    /// [`FieldError::Zero`] for 0: sequences start at 1.
    pub fn new(value: u64) -> Result<Self, FieldError> {
        NonZeroU64::new(value)
            .map(Self)
            .ok_or(FieldError::Zero { field: "sequence" })
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The number after this one, or `None` after `u64::MAX`.
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Sequence {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.get())
    }
}

impl<'de> Deserialize<'de> for Sequence {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(deserializer)?;
        Self::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one() {
        assert_eq!(Sequence::FIRST.get(), 1);
        assert_eq!(
            Sequence::new(0).unwrap_err().to_string(),
            "sequence must be at least 1"
        );
    }

    #[test]
    fn next_stops_at_the_end() {
        assert_eq!(Sequence::new(41).unwrap().next().unwrap().get(), 42);
        assert_eq!(Sequence::new(u64::MAX).unwrap().next(), None);
    }

    #[test]
    fn serializes_as_a_number() {
        let seq = Sequence::new(7).unwrap();
        assert_eq!(serde_json::to_string(&seq).unwrap(), "7");
        assert_eq!(serde_json::from_str::<Sequence>("7").unwrap(), seq);
        let err = serde_json::from_str::<Sequence>("0").unwrap_err();
        assert_eq!(err.to_string(), "sequence must be at least 1");
    }
}
