//! Serde for the field types that travel as a string and are parsed on the way in.

use std::fmt::Display;

use serde::{Deserialize, Deserializer, de};

/// Deserializes a string and parses it, turning a parse error into a serde error whose
/// message is the parse error's own (so serde_json adds only the position).
pub(crate) fn deserialize_parsed<'de, D, T, E>(
    deserializer: D,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: Display,
{
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(de::Error::custom)
}
