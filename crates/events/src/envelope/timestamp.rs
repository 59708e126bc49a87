//! When an event occurred: always UTC, always writable as RFC 3339.

use serde::{Deserialize, Deserializer, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::error::FieldError;

const FIELD: &str = "occurred at";

/// Converts `at` to UTC and checks that RFC 3339 can write it (years 0000 to 9999).
pub(crate) fn normalize(at: OffsetDateTime) -> Result<OffsetDateTime, FieldError> {
    let utc = at.to_offset(UtcOffset::UTC);
    if (0..=9999).contains(&utc.year()) {
        Ok(utc)
    } else {
        Err(FieldError::YearOutOfRange {
            field: FIELD,
            year: utc.year(),
        })
    }
}

/// Parses an RFC 3339 timestamp with any offset and converts it to UTC.
pub(crate) fn parse(text: &str) -> Result<OffsetDateTime, FieldError> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|err| FieldError::NotRfc3339 {
        field: FIELD,
        reason: err.to_string(),
    })?;
    normalize(at)
}

/// Writes a timestamp that went through [`normalize`] as RFC 3339 in UTC (`...Z`), with
/// as many fractional digits as it needs.
pub(crate) fn format(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .expect("a normalized timestamp is in UTC and in the years 0000 to 9999")
}

/// `#[serde(with = "timestamp")]` for a normalized `OffsetDateTime`.
pub(crate) fn serialize<S: Serializer>(
    at: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*at))
}

/// `#[serde(with = "timestamp")]` for a normalized `OffsetDateTime`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn writes_utc_with_a_z() {
        let at = normalize(datetime!(2025-03-01 10:15:30.5 +02:00)).unwrap();
        assert_eq!(format(at), "2025-03-01T08:15:30.5Z");
    }

    #[test]
    fn keeps_nanoseconds() {
        let at = datetime!(2025-03-01 10:15:30.123456789 UTC);
        assert_eq!(format(at), "2025-03-01T10:15:30.123456789Z");
        assert_eq!(parse(&format(at)).unwrap(), at);
    }

    #[test]
    fn reads_any_offset_and_converts_to_utc() {
        let at = parse("2025-03-01T10:15:30-05:00").unwrap();
        assert_eq!(at.offset(), UtcOffset::UTC);
        assert_eq!(at, datetime!(2025-03-01 15:15:30 UTC));
    }

    #[test]
    fn rejects_text_that_is_not_rfc_3339() {
        let err = parse("2025-03-01 10:15:30").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("occurred at is not an RFC 3339 timestamp: "),
            "{err}"
        );
    }

    #[test]
    fn rejects_years_rfc_3339_cannot_write() {
        let err = normalize(datetime!(-0001-12-31 23:00 UTC)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "occurred at falls in the year -1 (UTC); RFC 3339 covers the years 0000 to 9999"
        );
        // In range locally, out of range once converted to UTC.
        let err = parse("0000-01-01T00:30:00+01:00").unwrap_err();
        assert!(
            matches!(err, FieldError::YearOutOfRange { year: -1, .. }),
            "{err}"
        );
    }
}
