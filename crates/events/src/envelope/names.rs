//! Names that route events: the event type and the source service.
//!
//! Both follow one rule, checked at compile time for `Event::TYPE` and at run time for
//! everything else: 1 to 128 characters of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`. The rule
//! keeps names safe in SNS filter policies, metric labels, queue names and URLs.

use std::fmt;

use super::error::FieldError;
use super::event::Event;
use super::serde_str::parsed_string_traits;

/// The most characters a name (event type, source) may have.
pub const MAX_NAME_LEN: usize = 128;

const ALLOWED: &str = "A-Z, a-z, 0-9, '.', '_' and '-'";

/// Whether `byte` may appear in a name.
const fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

/// Whether `name` follows the rule; usable in constant evaluation.
pub(crate) const fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if !is_name_byte(bytes[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// Checks `name` and says which rule it breaks.
fn check_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(FieldError::Empty { field });
    }
    if let Some((index, character)) = name
        .chars()
        .enumerate()
        .find(|&(_, c)| !u8::try_from(c).is_ok_and(is_name_byte))
    {
        return Err(FieldError::InvalidCharacter {
            field,
            character,
            index,
            allowed: ALLOWED,
        });
    }
    // All ASCII from here on, so bytes and characters agree.
    if name.len() > MAX_NAME_LEN {
        return Err(FieldError::TooLong {
            field,
            max: MAX_NAME_LEN,
            actual: name.len(),
        });
    }
    Ok(())
}

/// The type of an event, such as `policy.activated`: what subscriptions filter on and
/// what a consumer routes by.
///
/// 1 to 128 characters of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`.
///
/// ```
/// use dovetail_events::envelope::EventType;
///
/// let event_type = EventType::parse("policy.activated")?;
/// assert_eq!(event_type.as_str(), "policy.activated");
/// assert!(EventType::parse("").is_err());
/// assert!(EventType::parse("policy/activated").is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    /// Parses an event type.
    ///
    /// # Errors
    ///
    /// [`FieldError::Empty`], [`FieldError::TooLong`] or [`FieldError::InvalidCharacter`]
    /// when `name` breaks the rule.
    pub fn parse(name: &str) -> Result<Self, FieldError> {
        check_name("event type", name)?;
        Ok(Self(name.to_owned()))
    }

    /// The type of the event `E`, `E::TYPE`.
    ///
    /// `E::TYPE` is checked when the program is compiled: a type that breaks the rule
    /// stops the build.
    ///
    /// ```
    /// use dovetail_events::envelope::{Event, EventType};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PolicyActivated { policy_id: String }
    /// impl Event for PolicyActivated {
    ///     const TYPE: &'static str = "policy.activated";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// assert_eq!(EventType::of::<PolicyActivated>().as_str(), "policy.activated");
    /// ```
    ///
    /// ```compile_fail
    /// use dovetail_events::envelope::{Event, EventType};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Bad;
    /// impl Event for Bad {
    ///     const TYPE: &'static str = "has spaces";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// let _ = EventType::of::<Bad>();
    /// ```
    pub fn of<E: Event>() -> Self {
        const {
            assert!(
                is_valid_name(E::TYPE),
                "Event::TYPE must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            );
        }
        Self(E::TYPE.to_owned())
    }

    /// The type as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A service that publishes events, such as `policy-service`: the CloudEvents `source`.
///
/// 1 to 128 characters of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`.
///
/// ```
/// use dovetail_events::envelope::Source;
///
/// let source = Source::parse("policy-service")?;
/// assert_eq!(source.to_string(), "policy-service");
/// assert!(Source::parse("policy service").is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(String);

impl Source {
    /// Parses a source service name.
    ///
    /// # Errors
    ///
    /// [`FieldError::Empty`], [`FieldError::TooLong`] or [`FieldError::InvalidCharacter`]
    /// when `name` breaks the rule.
    pub fn parse(name: &str) -> Result<Self, FieldError> {
        check_name("source", name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

parsed_string_traits!(EventType, Source);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        let name = "AZaz09._-";
        assert_eq!(EventType::parse(name).unwrap().as_str(), name);
        assert_eq!(Source::parse(name).unwrap().as_str(), name);
        assert!(is_valid_name(name));
    }

    #[test]
    fn rejects_an_empty_name() {
        let err = EventType::parse("").unwrap_err();
        assert_eq!(err.to_string(), "event type must not be empty");
        let err = Source::parse("").unwrap_err();
        assert_eq!(err.to_string(), "source must not be empty");
        assert!(!is_valid_name(""));
    }

    #[test]
    fn accepts_128_characters_and_rejects_129() {
        let longest = "a".repeat(128);
        assert!(EventType::parse(&longest).is_ok());
        assert!(is_valid_name(&longest));

        let err = EventType::parse(&"a".repeat(129)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "event type is 129 characters long; the limit is 128"
        );
        let err = Source::parse(&"a".repeat(200)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "source is 200 characters long; the limit is 128"
        );
        assert!(!is_valid_name(&"a".repeat(129)));
    }

    #[test]
    fn rejects_a_character_outside_the_set_and_says_where() {
        let err = EventType::parse("policy/activated").unwrap_err();
        assert_eq!(
            err.to_string(),
            "event type contains '/' at index 6; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        );
        let err = Source::parse("svc:1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "source contains ':' at index 3; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        );
        assert!(!is_valid_name("a b"));
    }

    #[test]
    fn counts_the_index_in_characters_not_bytes() {
        let err = EventType::parse("é.x").unwrap_err();
        assert_eq!(
            err,
            FieldError::InvalidCharacter {
                field: "event type",
                character: 'é',
                index: 0,
                allowed: ALLOWED
            }
        );
        assert!(!is_valid_name("é"));
    }

    #[test]
    fn serializes_as_a_plain_string_and_checks_on_the_way_in() {
        let event_type = EventType::parse("claim.submitted").unwrap();
        assert_eq!(
            serde_json::to_string(&event_type).unwrap(),
            "\"claim.submitted\""
        );
        let back: EventType = serde_json::from_str("\"claim.submitted\"").unwrap();
        assert_eq!(back, event_type);

        let err = serde_json::from_str::<Source>("\"a b\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "source contains ' ' at index 1; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        );
    }

    #[test]
    fn parses_through_from_str() {
        let source: Source = "claims".parse().unwrap();
        assert_eq!(source.as_str(), "claims");
        assert!("".parse::<EventType>().is_err());
    }
}
