//! The aggregate an event is about: its type, its id, and the pair of them.
//!
//! Both are 1 to 256 characters with no control characters. They are free text otherwise
//! (an aggregate id may be a UUID, an e-mail address or a composite key), but control
//! characters would break logs, message attributes and HTTP headers.

use std::fmt;

use super::error::FieldError;
use super::serde_str::parsed_string_traits;

/// The most characters an aggregate type or id may have.
pub const MAX_AGGREGATE_LEN: usize = 256;

/// Checks an aggregate type or id and says which rule it breaks.
fn check_aggregate_text(field: &'static str, text: &str) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::Empty { field });
    }
    if let Some((index, character)) = text.chars().enumerate().find(|&(_, c)| c.is_control()) {
        return Err(FieldError::InvalidCharacter {
            field,
            character,
            index,
            allowed: "any character but control characters",
        });
    }
    let actual = text.chars().count();
    if actual > MAX_AGGREGATE_LEN {
        return Err(FieldError::TooLong {
            field,
            max: MAX_AGGREGATE_LEN,
            actual,
        });
    }
    Ok(())
}

/// The type of an aggregate, such as `policy`.
///
/// ```
/// use dovetail_events::envelope::AggregateType;
///
/// assert_eq!(AggregateType::parse("policy")?.as_str(), "policy");
/// assert!(AggregateType::parse("").is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateType(String);

impl AggregateType {
    /// Parses an aggregate type.
    ///
    /// # Errors
    ///
    /// [`FieldError::Empty`], [`FieldError::TooLong`] (over 256 characters) or
    /// [`FieldError::InvalidCharacter`] (a control character).
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        check_aggregate_text("aggregate type", text)?;
        Ok(Self(text.to_owned()))
    }

    /// The type as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of an aggregate, such as `pol-42`: the CloudEvents `subject`.
///
/// ```
/// use dovetail_events::envelope::AggregateId;
///
/// assert_eq!(AggregateId::parse("pol-42")?.as_str(), "pol-42");
/// assert!(AggregateId::parse("line\nbreak").is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateId(String);

impl AggregateId {
    /// Parses an aggregate id.
    ///
    /// # Errors
    ///
    /// [`FieldError::Empty`], [`FieldError::TooLong`] (over 256 characters) or
    /// [`FieldError::InvalidCharacter`] (a control character).
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        check_aggregate_text("aggregate id", text)?;
        Ok(Self(text.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which aggregate an event is about: the argument of
/// [`Envelope::new`](super::Envelope::new).
///
/// ```
/// use dovetail_events::envelope::AggregateRef;
///
/// let policy = AggregateRef::parse("policy", "pol-42")?;
/// assert_eq!(policy.aggregate_type.as_str(), "policy");
/// assert_eq!(policy.id.as_str(), "pol-42");
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateRef {
    /// The aggregate's type.
    pub aggregate_type: AggregateType,
    /// The aggregate's id.
    pub id: AggregateId,
}

impl AggregateRef {
    /// Pairs an aggregate type with an id.
    pub fn new(aggregate_type: AggregateType, id: AggregateId) -> Self {
        Self { aggregate_type, id }
    }

    /// Parses both halves.
    ///
    /// # Errors
    ///
    /// The [`FieldError`] of whichever half is invalid, the type first.
    pub fn parse(aggregate_type: &str, id: &str) -> Result<Self, FieldError> {
        Ok(Self::new(
            AggregateType::parse(aggregate_type)?,
            AggregateId::parse(id)?,
        ))
    }
}

impl fmt::Display for AggregateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for AggregateRef {
    /// `type/id`, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.aggregate_type, self.id)
    }
}

parsed_string_traits!(AggregateType, AggregateId);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_free_text_including_unicode_and_spaces() {
        let id = AggregateId::parse("customer 7 / été").unwrap();
        assert_eq!(id.as_str(), "customer 7 / été");
    }

    #[test]
    fn rejects_empty_values() {
        assert_eq!(
            AggregateType::parse("").unwrap_err().to_string(),
            "aggregate type must not be empty"
        );
        assert_eq!(
            AggregateId::parse("").unwrap_err().to_string(),
            "aggregate id must not be empty"
        );
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(AggregateId::parse(&"é".repeat(256)).is_ok());
        assert_eq!(
            AggregateId::parse(&"é".repeat(257))
                .unwrap_err()
                .to_string(),
            "aggregate id is 257 characters long; the limit is 256"
        );
        assert_eq!(
            AggregateType::parse(&"x".repeat(300))
                .unwrap_err()
                .to_string(),
            "aggregate type is 300 characters long; the limit is 256"
        );
    }

    #[test]
    fn rejects_control_characters() {
        assert_eq!(
            AggregateId::parse("a\tb").unwrap_err().to_string(),
            "aggregate id contains '\\t' at index 1; allowed are any character but control characters"
        );
        assert!(AggregateType::parse("policy\u{7f}").is_err());
    }

    #[test]
    fn parse_reports_the_type_first() {
        let err = AggregateRef::parse("", "").unwrap_err();
        assert_eq!(
            err,
            FieldError::Empty {
                field: "aggregate type"
            }
        );
        let err = AggregateRef::parse("policy", "").unwrap_err();
        assert_eq!(
            err,
            FieldError::Empty {
                field: "aggregate id"
            }
        );
    }

    #[test]
    fn displays_as_type_slash_id() {
        let policy = AggregateRef::parse("policy", "pol-1").unwrap();
        assert_eq!(policy.to_string(), "policy/pol-1");
    }

    #[test]
    fn checks_on_the_way_in_from_json() {
        let err = serde_json::from_str::<AggregateId>("\"\"").unwrap_err();
        assert_eq!(err.to_string(), "aggregate id must not be empty");
    }
}
