//! Calendar dates in JSON as `YYYY-MM-DD`, for `#[serde(with = "dovetail_contracts::date")]`.

use serde::{Deserialize, Deserializer, Serializer};
use time::Date;
use time::macros::format_description;

/// Parses `YYYY-MM-DD`.
///
/// ```
/// let date = dovetail_contracts::date::parse("2026-03-31")?;
/// assert_eq!(date.to_string(), "2026-03-31");
/// assert!(dovetail_contracts::date::parse("31/03/2026").is_err());
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// A message naming the text and the format when it is not a real date.
pub fn parse(text: &str) -> Result<Date, String> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).map_err(|error| {
        format!("{text:?} is not a date ({error}); send YYYY-MM-DD, such as \"2026-03-31\"")
    })
}

/// Writes `date` as `YYYY-MM-DD`.
///
/// # Errors
/// When the serializer fails.
pub fn serialize<S: Serializer>(date: &Date, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(date)
}

/// Reads a `YYYY-MM-DD` string.
///
/// # Errors
/// When the value is not a string or not a real date.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Date, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for `Option<Date>`, for `#[serde(default, with = "dovetail_contracts::date::option")]`.
pub mod option {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    /// Writes `Some(date)` as `YYYY-MM-DD`, `None` as null.
    ///
    /// # Errors
    /// When the serializer fails.
    pub fn serialize<S: Serializer>(date: &Option<Date>, serializer: S) -> Result<S::Ok, S::Error> {
        match date {
            Some(date) => serializer.collect_str(date),
            None => serializer.serialize_none(),
        }
    }

    /// Reads an optional `YYYY-MM-DD` string.
    ///
    /// # Errors
    /// When the value is neither null nor a real date.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Date>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
        text.map(|text| super::parse(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}
