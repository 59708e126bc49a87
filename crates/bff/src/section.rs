//! [`Section`]: one part of a composed answer, saying what happened to it
//! ([`SectionOutcome`]), with its data when there is any.

use serde::{Deserialize, Serialize};

/// What happened to one section of a composed answer.
///
/// Serialised as the `status` of its [`Section`]: `ok`, `timeout`, `circuit_open`,
/// `unavailable`, `forbidden`, or `stale` with the `version` the section holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SectionOutcome {
    /// The downstream answered; the data is current.
    Ok,
    /// The request's deadline (or the call's own timeout) passed first.
    Timeout,
    /// The downstream's circuit breaker is open: it was not called.
    CircuitOpen,
    /// The downstream failed (a connection error, a 5xx, an answer that cannot be read).
    Unavailable,
    /// The downstream refused the caller (401 or 403).
    Forbidden,
    /// The data is older than the version the caller asked to read.
    Stale {
        /// The version the section holds.
        version: u64,
    },
}

impl SectionOutcome {
    /// The `status` word, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Unavailable => "unavailable",
            Self::Forbidden => "forbidden",
            Self::Stale { .. } => "stale",
        }
    }

    /// Whether the section failed (it carries no data): neither `ok` nor `stale`.
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::Ok | Self::Stale { .. })
    }
}

/// One part of a composed answer: `{"status": "...", "data": ..., "detail": ...}`.
///
/// `data` is there when the status is `ok` or `stale`; `detail` says, for a person, what
/// happened when it is not `ok`. A `stale` section also has `version`.
///
/// ```
/// use dovetail_bff::{Section, SectionOutcome};
///
/// let ok = Section::ok(vec!["pol-1"]);
/// assert_eq!(serde_json::to_value(&ok)?, serde_json::json!({"status": "ok", "data": ["pol-1"]}));
///
/// let stale = Section::stale(vec!["pol-1"], 6);
/// assert_eq!(stale.outcome(), SectionOutcome::Stale { version: 6 });
/// assert_eq!(serde_json::to_value(&stale)?["version"], 6);
///
/// let timed_out = Section::<Vec<String>>::failed(SectionOutcome::Timeout, "policy did not answer in time");
/// assert_eq!(serde_json::to_value(&timed_out)?["status"], "timeout");
/// assert!(timed_out.data().is_none());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section<T> {
    #[serde(flatten)]
    outcome: SectionOutcome,
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

fn none<T>() -> Option<T> {
    None
}

impl<T> Section<T> {
    /// A section whose downstream answered.
    pub fn ok(data: T) -> Self {
        Self {
            outcome: SectionOutcome::Ok,
            data: Some(data),
            detail: None,
        }
    }

    /// A section whose data has only reached `version`, older than the caller asked for.
    pub fn stale(data: T, version: u64) -> Self {
        Self {
            outcome: SectionOutcome::Stale { version },
            data: Some(data),
            detail: Some(format!("the data has reached version {version} only")),
        }
    }

    /// A section without data: `outcome` says why, `detail` says it for a person.
    pub fn failed(outcome: SectionOutcome, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            data: None,
            detail: Some(detail.into()),
        }
    }

    /// What happened.
    pub fn outcome(&self) -> SectionOutcome {
        self.outcome
    }

    /// The data, when the section is `ok` or `stale`.
    pub fn data(&self) -> Option<&T> {
        self.data.as_ref()
    }

    /// The data, taken.
    pub fn into_data(self) -> Option<T> {
        self.data
    }

    /// What happened, for a person.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The section with its data changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Section<U> {
        Section {
            outcome: self.outcome,
            data: self.data.map(f),
            detail: self.detail,
        }
    }
}

/// The JSON schema (OpenAPI 3.1) of a [`Section`] whose `data` has the schema `data`.
///
/// ```
/// let schema = dovetail_bff::section_schema(&serde_json::json!({"type": "array"}));
/// assert_eq!(schema["required"], serde_json::json!(["status"]));
/// assert_eq!(schema["properties"]["data"]["type"], "array");
/// ```
pub fn section_schema(data: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "description": "One part of a composed answer and what happened to it. `data` is \
                        there when `status` is `ok` or `stale`; `version` only when `stale`.",
        "required": ["status"],
        "properties": {
            "status": {
                "type": "string",
                "enum": ["ok", "timeout", "circuit_open", "unavailable", "forbidden", "stale"],
            },
            "data": data,
            "version": {
                "type": "integer",
                "minimum": 0,
                "description": "With `stale`: the version the data has reached.",
            },
            "detail": {"type": "string", "description": "What happened, for a person."},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_serialises_as_its_status_word_and_reads_back() {
        for outcome in [
            SectionOutcome::Ok,
            SectionOutcome::Timeout,
            SectionOutcome::CircuitOpen,
            SectionOutcome::Unavailable,
            SectionOutcome::Forbidden,
            SectionOutcome::Stale { version: 3 },
        ] {
            let section = Section::<u8>::failed(outcome, "why");
            let json = serde_json::to_value(&section).unwrap();
            assert_eq!(json["status"], outcome.as_str());
            let back: Section<u8> = serde_json::from_value(json).unwrap();
            assert_eq!(back, section);
        }
        let schema = section_schema(&serde_json::json!({}));
        assert_eq!(
            schema["properties"]["status"]["enum"]
                .as_array()
                .unwrap()
                .len(),
            6
        );
    }
}
