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

/// `FromStr`, `Serialize` and `Deserialize` for a `struct Name(String)` whose
/// `parse(&str) -> Result<Self, FieldError>` is its only way in: the text form on the wire,
/// validated on the way in.
macro_rules! parsed_string_traits {
    ($($name:ident),+ $(,)?) => {$(
        impl std::str::FromStr for $name {
            type Err = super::error::FieldError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                super::serde_str::deserialize_parsed(deserializer, Self::parse)
            }
        }
    )+};
}

pub(crate) use parsed_string_traits;
