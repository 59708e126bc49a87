//! The envelope as a CloudEvents 1.0 event in JSON structured mode, and back.
//!
//! See [`Envelope::to_cloudevent`] for the mapping.

use serde_json::{Map, Value};
use thiserror::Error;

use std::str::FromStr;

use super::aggregate::{AggregateId, AggregateRef, AggregateType};
use super::error::FieldError;
use super::id::EventId;
use super::metadata::EventMetadata;
use super::names::{EventType, Source};
use super::sequence::Sequence;
use super::trace::{TraceContext, TraceParent, TraceParentError, TraceState};
use super::version::SchemaVersion;
use super::{Envelope, EnvelopeParts, timestamp};

const SPECVERSION: &str = "specversion";
const ID: &str = "id";
const SOURCE: &str = "source";
const TYPE: &str = "type";
const SUBJECT: &str = "subject";
const TIME: &str = "time";
const DATACONTENTTYPE: &str = "datacontenttype";
const DATA: &str = "data";
const DATA_BASE64: &str = "data_base64";
const SCHEMAVERSION: &str = "schemaversion";
const AGGREGATETYPE: &str = "aggregatetype";
const AGGREGATESEQUENCE: &str = "aggregatesequence";
const CORRELATIONID: &str = "correlationid";
const CAUSATIONID: &str = "causationid";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

const JSON: &str = "application/json";

impl Envelope {
    /// The envelope as a CloudEvents 1.0 JSON object (structured mode).
    ///
    /// | CloudEvents attribute | envelope field |
    /// |---|---|
    /// | `specversion` | always `"1.0"` |
    /// | `id` | [`Envelope::id`] |
    /// | `source` | [`Envelope::source`] |
    /// | `type` | [`Envelope::event_type`] |
    /// | `subject` | [`Envelope::aggregate_id`] |
    /// | `time` | [`Envelope::occurred_at`], RFC 3339 in UTC |
    /// | `datacontenttype` | always `"application/json"` |
    /// | `data` | [`Envelope::payload`] |
    /// | `schemaversion` (extension) | [`Envelope::schema_version`], decimal string |
    /// | `aggregatetype` (extension) | [`Envelope::aggregate_type`] |
    /// | `aggregatesequence` (extension) | [`Envelope::sequence`], decimal string |
    /// | `correlationid` (extension) | [`Envelope::correlation_id`], when set |
    /// | `causationid` (extension) | [`Envelope::causation_id`], when set |
    /// | `traceparent`, `tracestate` (Distributed Tracing extension) | [`Envelope::trace`], when set |
    ///
    /// Extension names are lowercase alphanumeric and at most 20 characters, as the
    /// specification asks. The numbers travel as strings because the CloudEvents `Integer`
    /// type is 32-bit signed; reading accepts a JSON number too. The schema version is an
    /// extension rather than `dataschema`, which is a URI for a schema document we do not
    /// publish. The sequence is not the documented `sequence` extension, whose order is per
    /// source and lexicographic; ours is per aggregate and numeric.
    ///
    /// ```
    /// use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PolicyActivated { policy_id: String }
    /// impl Event for PolicyActivated {
    ///     const TYPE: &'static str = "policy.activated";
    ///     const VERSION: u32 = 2;
    /// }
    ///
    /// let envelope = Envelope::new(
    ///     Source::parse("policy-service")?,
    ///     AggregateRef::parse("policy", "pol-42")?,
    ///     Sequence::new(3)?,
    ///     &PolicyActivated { policy_id: "pol-42".into() },
    ///     EventMetadata::default(),
    /// )?;
    /// let cloudevent = envelope.to_cloudevent();
    /// assert_eq!(cloudevent["specversion"], "1.0");
    /// assert_eq!(cloudevent["type"], "policy.activated");
    /// assert_eq!(cloudevent["subject"], "pol-42");
    /// assert_eq!(cloudevent["schemaversion"], "2");
    /// assert_eq!(cloudevent["aggregatesequence"], "3");
    /// assert_eq!(Envelope::from_cloudevent(cloudevent)?, envelope);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_cloudevent(&self) -> Value {
        let mut event = Map::new();
        let mut put = |name: &str, value: String| {
            event.insert(name.to_owned(), Value::String(value));
        };
        put(SPECVERSION, "1.0".to_owned());
        put(ID, self.id().to_string());
        put(SOURCE, self.source().to_string());
        put(TYPE, self.event_type().to_string());
        put(SUBJECT, self.aggregate_id().to_string());
        put(TIME, timestamp::format(self.occurred_at()));
        put(DATACONTENTTYPE, JSON.to_owned());
        put(SCHEMAVERSION, self.schema_version().to_string());
        put(AGGREGATETYPE, self.aggregate_type().to_string());
        put(AGGREGATESEQUENCE, self.sequence().to_string());
        if let Some(id) = self.correlation_id() {
            put(CORRELATIONID, id.to_string());
        }
        if let Some(id) = self.causation_id() {
            put(CAUSATIONID, id.to_string());
        }
        if let Some(trace) = self.trace() {
            put(TRACEPARENT, trace.traceparent.to_string());
            if let Some(state) = &trace.tracestate {
                put(TRACESTATE, state.to_string());
            }
        }
        event.insert(DATA.to_owned(), self.payload().clone());
        Value::Object(event)
    }

    /// Reads an envelope from a CloudEvents 1.0 JSON object (structured mode) with the
    /// attributes [`Envelope::to_cloudevent`] writes. Attributes it does not know are
    /// ignored; a missing `data` is a `null` payload.
    ///
    /// # Errors
    ///
    /// A [`CloudEventError`] that names the attribute that is missing or invalid.
    pub fn from_cloudevent(cloudevent: Value) -> Result<Self, CloudEventError> {
        let Value::Object(mut event) = cloudevent else {
            return Err(CloudEventError::NotAnObject);
        };
        if event.contains_key(DATA_BASE64) {
            return Err(CloudEventError::BinaryData);
        }
        let payload = event.remove(DATA).unwrap_or(Value::Null);
        let attributes = Attributes(&event);

        let specversion = attributes.string(SPECVERSION)?;
        if specversion != "1.0" {
            return Err(CloudEventError::UnsupportedSpecVersion {
                found: specversion.to_owned(),
            });
        }
        if let Some(content_type) = attributes.optional_string(DATACONTENTTYPE)?
            && !is_json(content_type)
        {
            return Err(CloudEventError::NotJson {
                datacontenttype: content_type.to_owned(),
            });
        }
        let trace = match attributes.optional_string(TRACEPARENT)? {
            Some(text) => Some(TraceContext {
                traceparent: TraceParent::parse(text)
                    .map_err(|source| CloudEventError::InvalidTraceParent { source })?,
                tracestate: attributes.optional(TRACESTATE, TraceState::parse)?,
            }),
            None => None,
        };
        let metadata = EventMetadata {
            correlation_id: attributes.optional(CORRELATIONID, |text| {
                EventId::parse_field("correlation id", text)
            })?,
            causation_id: attributes.optional(CAUSATIONID, |text| {
                EventId::parse_field("causation id", text)
            })?,
            trace,
        };
        let parts = EnvelopeParts {
            id: attributes.required(ID, EventId::parse)?,
            event_type: attributes.required(TYPE, EventType::parse)?,
            schema_version: attributes.number(SCHEMAVERSION, SchemaVersion::new)?,
            source: attributes.required(SOURCE, Source::parse)?,
            aggregate: AggregateRef::new(
                attributes.required(AGGREGATETYPE, AggregateType::parse)?,
                attributes.required(SUBJECT, AggregateId::parse)?,
            ),
            sequence: attributes.number(AGGREGATESEQUENCE, Sequence::new)?,
            occurred_at: attributes.required(TIME, timestamp::parse)?,
            metadata,
            payload,
        };
        Self::from_parts(parts).map_err(|source| invalid(TIME, source))
    }
}

/// Whether a media type is JSON: `application/json` or `*/*+json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == JSON || (essence.contains('/') && essence.ends_with("+json"))
}

fn invalid(attribute: &'static str, source: FieldError) -> CloudEventError {
    CloudEventError::InvalidAttribute { attribute, source }
}

/// Reads the attributes of a CloudEvent, with errors that name the attribute.
struct Attributes<'a>(&'a Map<String, Value>);

impl<'a> Attributes<'a> {
    /// A string attribute that may be missing (or `null`).
    fn optional_string(&self, attribute: &'static str) -> Result<Option<&'a str>, CloudEventError> {
        match self.0.get(attribute) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(CloudEventError::WrongJsonType {
                attribute,
                expected: "a string",
            }),
        }
    }

    /// A string attribute that must be there.
    fn string(&self, attribute: &'static str) -> Result<&'a str, CloudEventError> {
        self.optional_string(attribute)?
            .ok_or(CloudEventError::MissingAttribute { attribute })
    }

    /// A string attribute that may be missing, parsed.
    fn optional<T>(
        &self,
        attribute: &'static str,
        parse: impl FnOnce(&str) -> Result<T, FieldError>,
    ) -> Result<Option<T>, CloudEventError> {
        self.optional_string(attribute)?
            .map(|text| parse(text).map_err(|source| invalid(attribute, source)))
            .transpose()
    }

    /// A string attribute that must be there, parsed.
    fn required<T>(
        &self,
        attribute: &'static str,
        parse: impl FnOnce(&str) -> Result<T, FieldError>,
    ) -> Result<T, CloudEventError> {
        let text = self.string(attribute)?;
        parse(text).map_err(|source| invalid(attribute, source))
    }

    /// A whole number, written as a decimal string (as [`Envelope::to_cloudevent`] writes
    /// it) or as a JSON number, then checked by `new`.
    fn number<N, T>(
        &self,
        attribute: &'static str,
        new: impl FnOnce(N) -> Result<T, FieldError>,
    ) -> Result<T, CloudEventError>
    where
        N: TryFrom<u64> + FromStr,
    {
        let wrong_type = CloudEventError::WrongJsonType {
            attribute,
            expected: "a whole number, as a decimal string or a JSON number",
        };
        let number = match self.0.get(attribute) {
            None | Some(Value::Null) => {
                return Err(CloudEventError::MissingAttribute { attribute });
            }
            Some(Value::String(text)) if text.bytes().all(|b| b.is_ascii_digit()) => {
                text.parse().map_err(|_| wrong_type)?
            }
            Some(Value::Number(number)) => number
                .as_u64()
                .and_then(|n| N::try_from(n).ok())
                .ok_or(wrong_type)?,
            Some(_) => return Err(wrong_type),
        };
        new(number).map_err(|source| invalid(attribute, source))
    }
}

/// Why a CloudEvent could not be read as an envelope.
///
/// ### Handling
///
/// For every variant: the event was not written by [`Envelope::to_cloudevent`], or was
/// changed on the way. It is a poison message: dead-letter it (or answer 400 when it came
/// in a request); retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CloudEventError {
    /// The JSON value is not an object.
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error("a CloudEvent in JSON structured mode is a JSON object")]
    NotAnObject,

    /// A required attribute is missing (or `null`).
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error("the CloudEvent has no `{attribute}` attribute")]
    MissingAttribute {
        /// The attribute's name.
        attribute: &'static str,
    },

    /// An attribute has the wrong JSON type.
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error("the CloudEvent attribute `{attribute}` must be {expected}")]
    WrongJsonType {
        /// The attribute's name.
        attribute: &'static str,
        /// What it must be, in words.
        expected: &'static str,
    },

    /// The event follows another version of CloudEvents.
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error("CloudEvents specversion {found:?} is not supported; only \"1.0\" is")]
    UnsupportedSpecVersion {
        /// The `specversion` found.
        found: String,
    },

    /// The data is not JSON.
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error(
        "the CloudEvent's datacontenttype {datacontenttype:?} is not JSON; envelope payloads are JSON"
    )]
    NotJson {
        /// The `datacontenttype` found.
        datacontenttype: String,
    },

    /// The data is binary (`data_base64`).
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400.
    #[error("the CloudEvent carries binary data (data_base64); envelope payloads are JSON")]
    BinaryData,

    /// An attribute holds a value that is not a valid envelope field.
    ///
    /// ### Handling
    ///
    /// See the type: dead-letter or 400. The source says what is wrong with the value.
    #[error("the CloudEvent attribute `{attribute}` is invalid")]
    InvalidAttribute {
        /// The attribute's name.
        attribute: &'static str,
        /// What is wrong with its value.
        #[source]
        source: FieldError,
    },

    /// The `traceparent` attribute is invalid.
    ///
    /// ### Handling
    ///
    /// See the type. A producer that sends an invalid `traceparent` has a bug; this crate
    /// rejects the event rather than silently dropping its trace.
    #[error("the CloudEvent attribute `traceparent` is invalid")]
    InvalidTraceParent {
        /// What is wrong with it.
        #[source]
        source: TraceParentError,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID_TEXT: &str = "01936f8e-6c1a-7b3e-9f00-0123456789ab";
    const TRACEPARENT_TEXT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn minimal() -> Value {
        json!({
            "specversion": "1.0",
            "id": ID_TEXT,
            "source": "policy-service",
            "type": "policy.activated",
            "subject": "pol-42",
            "time": "2025-03-01T10:15:30Z",
            "schemaversion": "2",
            "aggregatetype": "policy",
            "aggregatesequence": "3",
            "data": { "policy_id": "pol-42" }
        })
    }

    fn with(name: &str, value: Value) -> Value {
        let mut event = minimal();
        event[name] = value;
        event
    }

    fn without(name: &str) -> Value {
        let mut event = minimal();
        event.as_object_mut().unwrap().remove(name);
        event
    }

    fn error(event: Value) -> String {
        Envelope::from_cloudevent(event).unwrap_err().to_string()
    }

    /// The error and its source, joined as a log line would show them.
    fn error_chain(event: Value) -> String {
        let err = Envelope::from_cloudevent(event).unwrap_err();
        let source = std::error::Error::source(&err).map(ToString::to_string);
        format!("{err}: {}", source.unwrap_or_default())
    }

    #[test]
    fn reads_a_minimal_event() {
        let envelope = Envelope::from_cloudevent(minimal()).unwrap();
        assert_eq!(envelope.id().to_string(), ID_TEXT);
        assert_eq!(envelope.schema_version().get(), 2);
        assert_eq!(envelope.sequence().get(), 3);
        assert_eq!(envelope.aggregate_id().as_str(), "pol-42");
        assert_eq!(envelope.correlation_id(), None);
        assert_eq!(envelope.trace(), None);
        assert_eq!(envelope.payload(), &json!({ "policy_id": "pol-42" }));
    }

    #[test]
    fn writes_every_attribute_it_reads() {
        let event = with("correlationid", json!(ID_TEXT));
        let mut event = with_trace(event);
        event["causationid"] = json!(ID_TEXT);
        event["datacontenttype"] = json!("application/json");
        let envelope = Envelope::from_cloudevent(event.clone()).unwrap();
        assert_eq!(envelope.to_cloudevent(), event);
    }

    fn with_trace(mut event: Value) -> Value {
        event["traceparent"] = json!(TRACEPARENT_TEXT);
        event["tracestate"] = json!("congo=t61rcWkgMzE");
        event
    }

    #[test]
    fn extension_names_are_lowercase_alphanumeric_and_short() {
        let envelope =
            Envelope::from_cloudevent(with_trace(with("causationid", json!(ID_TEXT)))).unwrap();
        let event = envelope.to_cloudevent();
        for name in event.as_object().unwrap().keys() {
            if name == "data" {
                continue;
            }
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
                "{name}"
            );
            assert!(name.len() <= 20, "{name}");
        }
    }

    #[test]
    fn accepts_numbers_as_json_numbers_too() {
        let event = with("schemaversion", json!(2));
        let event = {
            let mut event = event;
            event["aggregatesequence"] = json!(3);
            event
        };
        let envelope = Envelope::from_cloudevent(event).unwrap();
        assert_eq!(envelope.schema_version().get(), 2);
        assert_eq!(envelope.sequence().get(), 3);
    }

    #[test]
    fn a_missing_data_is_a_null_payload() {
        let envelope = Envelope::from_cloudevent(without("data")).unwrap();
        assert_eq!(envelope.payload(), &Value::Null);
    }

    #[test]
    fn accepts_json_media_types_with_parameters_and_suffixes() {
        for content_type in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/cloudevents+json",
        ] {
            assert!(
                Envelope::from_cloudevent(with("datacontenttype", json!(content_type))).is_ok(),
                "{content_type}"
            );
        }
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert_eq!(
            error(json!([1, 2])),
            "a CloudEvent in JSON structured mode is a JSON object"
        );
    }

    #[test]
    fn rejects_other_spec_versions() {
        assert_eq!(
            error(with("specversion", json!("0.3"))),
            "CloudEvents specversion \"0.3\" is not supported; only \"1.0\" is"
        );
    }

    #[test]
    fn rejects_data_that_is_not_json() {
        assert_eq!(
            error(with("datacontenttype", json!("text/xml"))),
            "the CloudEvent's datacontenttype \"text/xml\" is not JSON; envelope payloads are JSON"
        );
        let mut event = without("data");
        event["data_base64"] = json!("AAAA");
        assert_eq!(
            error(event),
            "the CloudEvent carries binary data (data_base64); envelope payloads are JSON"
        );
    }

    #[test]
    fn names_each_missing_required_attribute() {
        for name in [
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "schemaversion",
            "aggregatetype",
            "aggregatesequence",
        ] {
            assert_eq!(
                error(without(name)),
                format!("the CloudEvent has no `{name}` attribute")
            );
        }
    }

    #[test]
    fn rejects_attributes_of_the_wrong_json_type() {
        assert_eq!(
            error(with("id", json!(7))),
            "the CloudEvent attribute `id` must be a string"
        );
        let expected = "the CloudEvent attribute `schemaversion` must be a whole number, as a decimal string or a JSON number";
        assert_eq!(error(with("schemaversion", json!("two"))), expected);
        assert_eq!(error(with("schemaversion", json!("-1"))), expected);
        assert_eq!(error(with("schemaversion", json!(1.5))), expected);
        assert_eq!(error(with("schemaversion", json!(u64::MAX))), expected);
        assert_eq!(error(with("schemaversion", json!(true))), expected);
        assert_eq!(
            error(with("aggregatesequence", json!("18446744073709551616"))),
            "the CloudEvent attribute `aggregatesequence` must be a whole number, as a decimal string or a JSON number"
        );
    }

    #[test]
    fn rejects_invalid_values_and_says_why() {
        assert_eq!(
            error_chain(with("schemaversion", json!("0"))),
            "the CloudEvent attribute `schemaversion` is invalid: schema version must be at least 1"
        );
        assert_eq!(
            error_chain(with("aggregatesequence", json!(0))),
            "the CloudEvent attribute `aggregatesequence` is invalid: sequence must be at least 1"
        );
        assert_eq!(
            error_chain(with("type", json!("policy activated"))),
            "the CloudEvent attribute `type` is invalid: event type contains ' ' at index 6; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        );
        assert_eq!(
            error_chain(with("source", json!(""))),
            "the CloudEvent attribute `source` is invalid: source must not be empty"
        );
        assert_eq!(
            error_chain(with("subject", json!(""))),
            "the CloudEvent attribute `subject` is invalid: aggregate id must not be empty"
        );
        assert_eq!(
            error_chain(with("aggregatetype", json!("a\nb"))),
            "the CloudEvent attribute `aggregatetype` is invalid: aggregate type contains '\\n' at index 1; allowed are any character but control characters"
        );
        assert_eq!(
            error_chain(with(
                "causationid",
                json!("a4b2f1c8-6f1e-4b8e-9c1d-2d3e4f5a6b7c")
            )),
            "the CloudEvent attribute `causationid` is invalid: causation id is a version 4 UUID; event ids are UUIDv7 (time-ordered)"
        );
        assert!(
            error_chain(with("correlationid", json!("nope")))
                .starts_with("the CloudEvent attribute `correlationid` is invalid: correlation id is not a UUID: ")
        );
        assert!(error_chain(with("time", json!("yesterday"))).starts_with(
            "the CloudEvent attribute `time` is invalid: occurred at is not an RFC 3339 timestamp: "
        ));
        assert_eq!(
            error_chain(with("traceparent", json!("00-x"))),
            "the CloudEvent attribute `traceparent` is invalid: traceparent is 4 characters long; version 00 has exactly 55 and later versions at least 55"
        );
        let mut event = with_trace(minimal());
        event["tracestate"] = json!("");
        assert_eq!(
            error_chain(event),
            "the CloudEvent attribute `tracestate` is invalid: tracestate must not be empty"
        );
    }

    #[test]
    fn a_tracestate_without_a_traceparent_is_ignored() {
        let envelope = Envelope::from_cloudevent(with("tracestate", json!("a=b"))).unwrap();
        assert_eq!(envelope.trace(), None);
    }
}
