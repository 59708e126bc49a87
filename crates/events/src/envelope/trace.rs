//! W3C Trace Context: the `traceparent` and `tracestate` an event carries so that its
//! consumers continue the producer's trace.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use super::error::FieldError;
use super::serde_str::deserialize_parsed;

/// The trace an event belongs to: a parsed `traceparent` and, when the producer had one,
/// its `tracestate`.
///
/// ```
/// use dovetail_events::envelope::{TraceContext, TraceParent, TraceState};
///
/// let trace = TraceContext {
///     traceparent: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?,
///     tracestate: Some(TraceState::parse("congo=t61rcWkgMzE")?),
/// };
/// assert!(trace.traceparent.is_sampled());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    /// Which trace, which span in it, and whether it is sampled.
    pub traceparent: TraceParent,
    /// Vendor-specific trace data, passed on unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<TraceState>,
}

impl TraceContext {
    /// A trace context with no `tracestate`.
    pub fn new(traceparent: TraceParent) -> Self {
        Self {
            traceparent,
            tracestate: None,
        }
    }
}

/// A W3C `traceparent`: trace id, parent (span) id and trace flags.
///
/// Parsing follows the W3C Trace Context rules: version `00` is exactly
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>` in lowercase, with neither id
/// all zeros. A later version (`01` to `fe`) is read the way the specification asks of a
/// version-00 reader: the same three fields in the same places, then either the end or a
/// `-` and fields that are ignored. Version `ff` is invalid. The value is always written
/// back as version `00`, the highest version this code knows, as the specification
/// requires of a system that passes the trace on.
///
/// ```
/// use dovetail_events::envelope::TraceParent;
///
/// let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceParent::parse(text)?;
/// assert_eq!(parent.to_string(), text);
/// assert_eq!(parent.parent_id(), [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
///
/// let future = TraceParent::parse(
///     "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next",
/// )?;
/// assert_eq!(future, parent);
/// # Ok::<(), dovetail_events::envelope::TraceParentError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

/// The length of a version-00 `traceparent`.
const V00_LEN: usize = 55;

impl TraceParent {
    /// Builds a `traceparent` from its fields.
    ///
    /// # Errors
    ///
    /// [`TraceParentError::AllZero`] when the trace id or the parent id is all zeros.
    pub fn new(
        trace_id: [u8; 16],
        parent_id: [u8; 8],
        flags: u8,
    ) -> Result<Self, TraceParentError> {
        if trace_id == [0; 16] {
            return Err(TraceParentError::AllZero { part: "trace id" });
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::AllZero { part: "parent id" });
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses a `traceparent` header value.
    ///
    /// # Errors
    ///
    /// A [`TraceParentError`] that says which part is wrong. W3C asks a receiver to ignore
    /// an invalid `traceparent` and start a new trace, not to reject the message.
    pub fn parse(text: &str) -> Result<Self, TraceParentError> {
        let bytes = text.as_bytes();
        if bytes.len() < V00_LEN {
            return Err(TraceParentError::Length {
                actual: text.chars().count(),
            });
        }
        let version = match lower_hex::<1>(&bytes[0..2]) {
            Some([version]) if version != 0xff => version,
            _ => {
                return Err(TraceParentError::InvalidVersion {
                    found: text.chars().take(2).collect(),
                });
            }
        };
        expect_dash(bytes, 2, "version")?;
        let trace_id = lower_hex::<16>(&bytes[3..35]).ok_or(TraceParentError::NotLowercaseHex {
            part: "trace id",
            digits: 32,
        })?;
        expect_dash(bytes, 35, "trace id")?;
        let parent_id =
            lower_hex::<8>(&bytes[36..52]).ok_or(TraceParentError::NotLowercaseHex {
                part: "parent id",
                digits: 16,
            })?;
        expect_dash(bytes, 52, "parent id")?;
        let [flags] = lower_hex::<1>(&bytes[53..55]).ok_or(TraceParentError::NotLowercaseHex {
            part: "flags",
            digits: 2,
        })?;
        if version == 0 && bytes.len() != V00_LEN {
            return Err(TraceParentError::Length {
                actual: text.chars().count(),
            });
        }
        if bytes.len() > V00_LEN {
            expect_dash(bytes, V00_LEN, "flags")?;
        }
        Self::new(trace_id, parent_id, flags)
    }

    /// The trace id: the whole trace, across every service.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The parent id: the span that produced this event.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the producer sampled (recorded) the trace: flag bit `01`.
    pub fn is_sampled(&self) -> bool {
        self.flags & 0x01 == 0x01
    }
}

/// Checks that `bytes[index]` is a dash; `after` names the field before it.
fn expect_dash(bytes: &[u8], index: usize, after: &'static str) -> Result<(), TraceParentError> {
    if bytes[index] == b'-' {
        Ok(())
    } else {
        Err(TraceParentError::MissingDash { after })
    }
}

/// Decodes exactly `2 * N` lowercase hex digits.
fn lower_hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn value(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0])? << 4 | value(pair[1])?;
    }
    Some(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
}

impl fmt::Display for TraceParent {
    /// The version-00 form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_char('-')?;
        write_hex(f, &self.parent_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

/// Why a `traceparent` is invalid.
///
/// ### Handling
///
/// For every variant: W3C asks a receiver to ignore an invalid `traceparent` (and its
/// `tracestate`) and start a new trace. Reject it only where the value comes from your own
/// code, where it is a bug.
///
/// ```
/// use dovetail_events::envelope::{TraceParent, TraceParentError};
///
/// let err = TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
///     .unwrap_err();
/// assert_eq!(err, TraceParentError::AllZero { part: "trace id" });
/// assert_eq!(err.to_string(), "traceparent trace id is all zeros, which W3C reserves as invalid");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Too short for any version, or not exactly 55 characters for version `00`.
    ///
    /// ### Handling
    ///
    /// See the type: start a new trace.
    #[error(
        "traceparent is {actual} characters long; version 00 has exactly 55 and later versions at least 55"
    )]
    Length {
        /// How many characters the value has.
        actual: usize,
    },

    /// The version is not two lowercase hex digits, or is the invalid `ff`.
    ///
    /// ### Handling
    ///
    /// See the type: start a new trace.
    #[error("traceparent version {found:?} is not two lowercase hex digits other than \"ff\"")]
    InvalidVersion {
        /// The first two characters of the value.
        found: String,
    },

    /// A field is not followed by a `-` where the format puts one.
    ///
    /// ### Handling
    ///
    /// See the type: start a new trace.
    #[error("traceparent has no '-' after the {after}")]
    MissingDash {
        /// The field before the missing dash: `"version"`, `"trace id"`, ...
        after: &'static str,
    },

    /// A field is not lowercase hex (uppercase is invalid too).
    ///
    /// ### Handling
    ///
    /// See the type: start a new trace.
    #[error("traceparent {part} is not {digits} lowercase hex digits")]
    NotLowercaseHex {
        /// The field: `"trace id"`, `"parent id"` or `"flags"`.
        part: &'static str,
        /// How many digits the field has.
        digits: usize,
    },

    /// The trace id or the parent id is all zeros, which W3C reserves as invalid.
    ///
    /// ### Handling
    ///
    /// See the type: start a new trace.
    #[error("traceparent {part} is all zeros, which W3C reserves as invalid")]
    AllZero {
        /// The field: `"trace id"` or `"parent id"`.
        part: &'static str,
    },
}

/// A W3C `tracestate`: vendor-specific trace data, carried unchanged.
///
/// Checked only at the character level: 1 to 512 printable ASCII characters (W3C asks
/// that at least 512 characters be passed on, and lets a system drop list members beyond
/// that). Its `key=value` grammar is the business of the tracing systems that read it.
///
/// ```
/// use dovetail_events::envelope::TraceState;
///
/// let state = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")?;
/// assert_eq!(state.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
/// assert!(TraceState::parse("tab\there").is_err());
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceState(String);

/// The most characters a `tracestate` may have here.
pub const MAX_TRACESTATE_LEN: usize = 512;

impl TraceState {
    /// Parses a `tracestate` header value.
    ///
    /// # Errors
    ///
    /// [`FieldError::Empty`], [`FieldError::InvalidCharacter`] (not printable ASCII) or
    /// [`FieldError::TooLong`] (over 512 characters).
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        const FIELD: &str = "tracestate";
        if text.is_empty() {
            return Err(FieldError::Empty { field: FIELD });
        }
        if let Some((index, character)) = text
            .chars()
            .enumerate()
            .find(|&(_, c)| !(' '..='~').contains(&c))
        {
            return Err(FieldError::InvalidCharacter {
                field: FIELD,
                character,
                index,
                allowed: "printable ASCII characters",
            });
        }
        if text.len() > MAX_TRACESTATE_LEN {
            return Err(FieldError::TooLong {
                field: FIELD,
                max: MAX_TRACESTATE_LEN,
                actual: text.len(),
            });
        }
        Ok(Self(text.to_owned()))
    }

    /// The value as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TraceState {
    type Err = FieldError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for TraceState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TraceState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer, Self::parse)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse_err(text: &str) -> String {
        TraceParent::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_w3c_example() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(
            parent.trace_id(),
            [
                0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
                0x47, 0x36
            ]
        );
        assert_eq!(parent.flags(), 1);
        assert!(parent.is_sampled());
        assert_eq!(parent.to_string(), VALID);
    }

    #[test]
    fn reads_unknown_flags_and_keeps_them() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe";
        let parent = TraceParent::parse(text).unwrap();
        assert!(!parent.is_sampled());
        assert_eq!(parent.to_string(), text);
    }

    #[test]
    fn rejects_wrong_lengths() {
        assert_eq!(
            parse_err(""),
            "traceparent is 0 characters long; version 00 has exactly 55 and later versions at least 55"
        );
        assert_eq!(
            parse_err(&VALID[..54]),
            "traceparent is 54 characters long; version 00 has exactly 55 and later versions at least 55"
        );
        assert_eq!(
            parse_err(&format!("{VALID}-00")),
            "traceparent is 58 characters long; version 00 has exactly 55 and later versions at least 55"
        );
    }

    #[test]
    fn rejects_version_ff_and_non_hex_versions() {
        let with_version = |v: &str| format!("{v}{}", &VALID[2..]);
        assert_eq!(
            parse_err(&with_version("ff")),
            "traceparent version \"ff\" is not two lowercase hex digits other than \"ff\""
        );
        assert_eq!(
            parse_err(&with_version("0A")),
            "traceparent version \"0A\" is not two lowercase hex digits other than \"ff\""
        );
        assert!(TraceParent::parse(&with_version("zz")).is_err());
    }

    #[test]
    fn accepts_later_versions_and_writes_version_00() {
        let v1 = format!("cc{}", &VALID[2..]);
        assert_eq!(TraceParent::parse(&v1).unwrap().to_string(), VALID);
        let v1_longer = format!("01{}-extra", &VALID[2..]);
        assert_eq!(TraceParent::parse(&v1_longer).unwrap().to_string(), VALID);
    }

    #[test]
    fn a_later_version_still_needs_a_dash_after_the_flags() {
        let v1 = format!("01{}x", &VALID[2..]);
        assert_eq!(parse_err(&v1), "traceparent has no '-' after the flags");
    }

    #[test]
    fn rejects_missing_dashes() {
        let replace = |at: usize| {
            let mut bytes = VALID.as_bytes().to_vec();
            bytes[at] = b'_';
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(
            parse_err(&replace(2)),
            "traceparent has no '-' after the version"
        );
        assert_eq!(
            parse_err(&replace(35)),
            "traceparent has no '-' after the trace id"
        );
        assert_eq!(
            parse_err(&replace(52)),
            "traceparent has no '-' after the parent id"
        );
    }

    #[test]
    fn rejects_uppercase_and_non_hex_fields() {
        assert_eq!(
            parse_err(&VALID.replace("4bf9", "4BF9")),
            "traceparent trace id is not 32 lowercase hex digits"
        );
        assert_eq!(
            parse_err(&VALID.replace("00f067aa", "00f067ag")),
            "traceparent parent id is not 16 lowercase hex digits"
        );
        assert_eq!(
            parse_err(&VALID.replace("-01", "-0x")),
            "traceparent flags is not 2 lowercase hex digits"
        );
    }

    #[test]
    fn rejects_all_zero_ids() {
        assert_eq!(
            parse_err("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            "traceparent trace id is all zeros, which W3C reserves as invalid"
        );
        assert_eq!(
            parse_err("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
            "traceparent parent id is all zeros, which W3C reserves as invalid"
        );
        assert_eq!(
            TraceParent::new([1; 16], [0; 8], 0).unwrap_err(),
            TraceParentError::AllZero { part: "parent id" }
        );
    }

    #[test]
    fn does_not_panic_on_multibyte_text() {
        let text = format!("é{}", &VALID[1..]);
        assert!(TraceParent::parse(&text).is_err());
        let text = "é".repeat(30);
        assert!(TraceParent::parse(&text).is_err());
    }

    #[test]
    fn tracestate_rejects_empty_control_non_ascii_and_too_long() {
        assert_eq!(
            TraceState::parse("").unwrap_err().to_string(),
            "tracestate must not be empty"
        );
        assert_eq!(
            TraceState::parse("a=\u{1}").unwrap_err().to_string(),
            "tracestate contains '\\u{1}' at index 2; allowed are printable ASCII characters"
        );
        assert!(TraceState::parse("a=é").is_err());
        assert!(TraceState::parse(&"a".repeat(512)).is_ok());
        assert_eq!(
            TraceState::parse(&"a".repeat(513)).unwrap_err().to_string(),
            "tracestate is 513 characters long; the limit is 512"
        );
    }

    #[test]
    fn trace_context_json_leaves_out_a_missing_tracestate() {
        let trace = TraceContext::new(TraceParent::parse(VALID).unwrap());
        let json = serde_json::to_value(&trace).unwrap();
        assert_eq!(json, serde_json::json!({ "traceparent": VALID }));
        let back: TraceContext = serde_json::from_value(json).unwrap();
        assert_eq!(back, trace);
    }

    #[test]
    fn trace_context_json_checks_the_traceparent() {
        let err = serde_json::from_str::<TraceContext>(r#"{"traceparent":"00-x"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("traceparent is 4 characters long"),
            "{err}"
        );
    }
}
