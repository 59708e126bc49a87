//! Unit tests of the envelope itself: construction, the JSON form, decoding, size.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::macros::datetime;

use super::*;

const ID: &str = "01936f8e-6c1a-7b3e-9f00-0123456789ab";
const OTHER_ID: &str = "01936f8e-6b00-7000-8000-000000000001";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct PolicyActivated {
    policy_id: String,
}

impl Event for PolicyActivated {
    const TYPE: &'static str = "policy.activated";
    const VERSION: u32 = 1;
}

/// Version 3 of an event whose v1 had `amount`, v2 added `currency`, v3 renamed `amount`.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CoverageChanged {
    limit: u64,
    currency: String,
}

impl Event for CoverageChanged {
    const TYPE: &'static str = "policy.coverage-changed";
    const VERSION: u32 = 3;
}

fn policy_activated() -> Envelope {
    Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", "pol-42").unwrap(),
        Sequence::FIRST,
        &PolicyActivated {
            policy_id: "pol-42".into(),
        },
        EventMetadata::default(),
    )
    .unwrap()
}

/// An envelope with every field set and fixed, from its JSON form.
fn full_json() -> Value {
    json!({
        "id": ID,
        "type": "policy.coverage-changed",
        "schemaVersion": 1,
        "source": "policy-service",
        "aggregateType": "policy",
        "aggregateId": "pol-42",
        "sequence": 7,
        "occurredAt": "2025-03-01T10:15:30.123456Z",
        "correlationId": OTHER_ID,
        "causationId": OTHER_ID,
        "trace": { "traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE" },
        "payload": { "amount": 1000 }
    })
}

fn with(name: &str, value: Value) -> Value {
    let mut envelope = full_json();
    envelope[name] = value;
    envelope
}

fn without(name: &str) -> Value {
    let mut envelope = full_json();
    envelope.as_object_mut().unwrap().remove(name);
    envelope
}

fn json_error(value: Value) -> String {
    serde_json::from_value::<Envelope>(value)
        .unwrap_err()
        .to_string()
}

fn coverage_upcasters() -> Upcasters {
    let mut upcasters = Upcasters::new();
    upcasters
        .register::<CoverageChanged>(1, |mut payload| {
            payload
                .as_object_mut()
                .ok_or_else(|| UpcastError::new("not an object"))?
                .insert("currency".into(), json!("EUR"));
            Ok(payload)
        })
        .unwrap();
    upcasters
        .register::<CoverageChanged>(2, |mut payload| {
            let fields = payload
                .as_object_mut()
                .ok_or_else(|| UpcastError::new("not an object"))?;
            let amount = fields
                .remove("amount")
                .ok_or_else(|| UpcastError::new("no `amount` field"))?;
            fields.insert("limit".into(), amount);
            Ok(payload)
        })
        .unwrap();
    upcasters
}

fn envelope_from(value: Value) -> Envelope {
    serde_json::from_value(value).unwrap()
}

mod new {
    use super::*;

    #[test]
    fn fills_in_type_version_id_and_time() {
        let before = time::OffsetDateTime::now_utc();
        let envelope = policy_activated();
        assert_eq!(envelope.event_type().as_str(), "policy.activated");
        assert_eq!(envelope.schema_version(), SchemaVersion::FIRST);
        assert_eq!(envelope.id().as_uuid().get_version_num(), 7);
        assert!(envelope.occurred_at() >= before);
        assert_eq!(envelope.occurred_at().offset(), time::UtcOffset::UTC);
        assert_eq!(envelope.aggregate_type().as_str(), "policy");
        assert_eq!(envelope.aggregate_id().as_str(), "pol-42");
        assert_eq!(envelope.payload(), &json!({ "policy_id": "pol-42" }));
    }

    #[test]
    fn a_new_event_correlates_to_itself() {
        let envelope = policy_activated();
        assert_eq!(envelope.correlation_id(), Some(envelope.id()));
        assert_eq!(envelope.causation_id(), None);
        assert_eq!(envelope.trace(), None);
    }

    #[test]
    fn keeps_an_explicit_correlation() {
        let correlation = EventId::parse(OTHER_ID).unwrap();
        let envelope = Envelope::new(
            Source::parse("policy-service").unwrap(),
            AggregateRef::parse("policy", "pol-42").unwrap(),
            Sequence::FIRST,
            &PolicyActivated {
                policy_id: "pol-42".into(),
            },
            EventMetadata {
                correlation_id: Some(correlation),
                ..EventMetadata::default()
            },
        )
        .unwrap();
        assert_eq!(envelope.correlation_id(), Some(correlation));
    }

    #[test]
    fn reports_an_event_that_does_not_serialize() {
        // A map with non-string keys cannot be a JSON object.
        #[derive(Serialize, Deserialize)]
        struct Wrapper(std::collections::BTreeMap<Vec<u8>, u8>);
        impl Event for Wrapper {
            const TYPE: &'static str = "wrapper";
            const VERSION: u32 = 4;
        }
        let err = Envelope::new(
            Source::parse("s").unwrap(),
            AggregateRef::parse("a", "1").unwrap(),
            Sequence::FIRST,
            &Wrapper([(vec![1], 1)].into()),
            EventMetadata::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "event wrapper v4 does not serialize to JSON: key must be a string"
        );
    }
}

mod caused_by {
    use super::*;

    #[test]
    fn carries_correlation_and_trace_and_points_at_the_cause() {
        let cause = envelope_from(full_json());
        let metadata = EventMetadata::caused_by(&cause);
        assert_eq!(metadata.correlation_id, cause.correlation_id());
        assert_eq!(metadata.causation_id, Some(cause.id()));
        assert_eq!(metadata.trace.as_ref(), cause.trace());
        assert_eq!(
            metadata.trace.unwrap().traceparent.trace_id(),
            cause.trace().unwrap().traceparent.trace_id()
        );
    }

    #[test]
    fn a_cause_without_correlation_starts_one_with_its_own_id() {
        let cause = envelope_from(without("correlationId"));
        let metadata = EventMetadata::caused_by(&cause);
        assert_eq!(metadata.correlation_id, Some(cause.id()));
    }

    #[test]
    fn the_caused_event_keeps_the_correlation() {
        let cause = envelope_from(full_json());
        let effect = Envelope::new(
            Source::parse("claim-service").unwrap(),
            AggregateRef::parse("claim", "c-1").unwrap(),
            Sequence::FIRST,
            &PolicyActivated {
                policy_id: "pol-42".into(),
            },
            EventMetadata::caused_by(&cause),
        )
        .unwrap();
        assert_eq!(effect.correlation_id(), cause.correlation_id());
        assert_eq!(effect.causation_id(), Some(cause.id()));
        assert_eq!(effect.trace(), cause.trace());
    }
}

mod parts {
    use super::*;

    #[test]
    fn round_trip() {
        let envelope = envelope_from(full_json());
        let back = Envelope::from_parts(envelope.clone().into_parts()).unwrap();
        assert_eq!(back, envelope);
    }

    #[test]
    fn converts_the_time_to_utc() {
        let mut parts = envelope_from(full_json()).into_parts();
        parts.occurred_at = datetime!(2025-03-01 12:00 +02:00);
        let envelope = Envelope::from_parts(parts).unwrap();
        assert_eq!(envelope.occurred_at().offset(), time::UtcOffset::UTC);
        assert_eq!(envelope.occurred_at(), datetime!(2025-03-01 10:00 UTC));
    }

    #[test]
    fn rejects_a_time_rfc_3339_cannot_write() {
        let mut parts = envelope_from(full_json()).into_parts();
        parts.occurred_at = datetime!(-0001-06-01 0:00 UTC);
        assert_eq!(
            Envelope::from_parts(parts).unwrap_err().to_string(),
            "occurred at falls in the year -1 (UTC); RFC 3339 covers the years 0000 to 9999"
        );
    }
}

mod json_form {
    use super::*;

    #[test]
    fn has_stable_camel_case_names() {
        let envelope = envelope_from(full_json());
        assert_eq!(serde_json::to_value(&envelope).unwrap(), full_json());
    }

    #[test]
    fn leaves_out_absent_optional_fields() {
        let mut value = full_json();
        let fields = value.as_object_mut().unwrap();
        for name in ["correlationId", "causationId", "trace"] {
            fields.remove(name);
        }
        let envelope = envelope_from(value.clone());
        assert_eq!(serde_json::to_value(&envelope).unwrap(), value);
    }

    #[test]
    fn ignores_fields_it_does_not_know() {
        let envelope = envelope_from(with("addedLater", json!({ "x": 1 })));
        assert_eq!(envelope, envelope_from(full_json()));
    }

    #[test]
    fn writes_the_time_in_utc_whatever_offset_it_read() {
        let envelope = envelope_from(with("occurredAt", json!("2025-03-01T12:15:30+02:00")));
        assert_eq!(
            serde_json::to_value(&envelope).unwrap()["occurredAt"],
            "2025-03-01T10:15:30Z"
        );
    }

    #[test]
    fn bytes_and_length_agree() {
        let envelope = envelope_from(full_json());
        let bytes = envelope.to_json_bytes();
        assert_eq!(envelope.encoded_len(), bytes.len());
        assert_eq!(
            serde_json::from_slice::<Envelope>(&bytes).unwrap(),
            envelope
        );
    }

    #[test]
    fn names_each_missing_required_field() {
        for name in [
            "id",
            "type",
            "schemaVersion",
            "source",
            "aggregateType",
            "aggregateId",
            "sequence",
            "occurredAt",
            "payload",
        ] {
            assert!(
                json_error(without(name)).starts_with(&format!("missing field `{name}`")),
                "{name}: {}",
                json_error(without(name))
            );
        }
    }

    #[test]
    fn says_why_a_field_is_invalid() {
        let cases = [
            (
                with("id", json!("a4b2f1c8-6f1e-4b8e-9c1d-2d3e4f5a6b7c")),
                "event id is a version 4 UUID; event ids are UUIDv7 (time-ordered)",
            ),
            (
                with("type", json!("policy activated")),
                "event type contains ' ' at index 6; allowed are A-Z, a-z, 0-9, '.', '_' and '-'",
            ),
            (
                with("schemaVersion", json!(0)),
                "schema version must be at least 1",
            ),
            (with("source", json!("")), "source must not be empty"),
            (
                with("aggregateType", json!("x".repeat(257))),
                "aggregate type is 257 characters long; the limit is 256",
            ),
            (
                with("aggregateId", json!("")),
                "aggregate id must not be empty",
            ),
            (with("sequence", json!(0)), "sequence must be at least 1"),
            (
                with("occurredAt", json!("0000-01-01T00:30:00+01:00")),
                "occurred at falls in the year -1 (UTC); RFC 3339 covers the years 0000 to 9999",
            ),
            (
                with(
                    "trace",
                    json!({ "traceparent": TRACEPARENT.to_uppercase() }),
                ),
                "traceparent trace id is not 32 lowercase hex digits",
            ),
            (
                with(
                    "trace",
                    json!({ "traceparent": TRACEPARENT, "tracestate": "" }),
                ),
                "tracestate must not be empty",
            ),
        ];
        for (value, message) in cases {
            let err = json_error(value);
            assert!(
                err.starts_with(message),
                "expected {message:?}, got {err:?}"
            );
        }
    }

    #[test]
    fn rejects_wrong_json_types() {
        assert!(json_error(with("sequence", json!("7"))).starts_with("invalid type: string \"7\""));
        assert!(json_error(with("sequence", json!(-1))).starts_with("invalid value: integer `-1`"));
        assert!(json_error(with("occurredAt", json!(0))).starts_with("invalid type: integer `0`"));
        assert!(
            json_error(with("occurredAt", json!("yesterday")))
                .starts_with("occurred at is not an RFC 3339 timestamp: ")
        );
    }
}

mod decode {
    use super::*;

    fn coverage_at(version: u32, payload: Value) -> Envelope {
        let mut value = with("schemaVersion", json!(version));
        value["payload"] = payload;
        envelope_from(value)
    }

    #[test]
    fn decodes_the_current_version_without_upcasters() {
        let envelope = policy_activated();
        let event: PolicyActivated = envelope.decode(&Upcasters::new()).unwrap();
        assert_eq!(event.policy_id, "pol-42");
    }

    #[test]
    fn upcasts_v1_through_v2_to_v3() {
        let envelope = coverage_at(1, json!({ "amount": 1000 }));
        let event: CoverageChanged = envelope.decode(&coverage_upcasters()).unwrap();
        assert_eq!(
            event,
            CoverageChanged {
                limit: 1000,
                currency: "EUR".into()
            }
        );
        // The envelope itself is left as it was.
        assert_eq!(envelope.payload(), &json!({ "amount": 1000 }));
    }

    #[test]
    fn upcasts_v2_with_the_last_step_only() {
        let envelope = coverage_at(2, json!({ "amount": 5, "currency": "USD" }));
        let event: CoverageChanged = envelope.decode(&coverage_upcasters()).unwrap();
        assert_eq!(event.currency, "USD");
    }

    #[test]
    fn refuses_another_type() {
        let err = policy_activated()
            .decode::<CoverageChanged>(&Upcasters::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the envelope holds a policy.activated event, not a policy.coverage-changed"
        );
    }

    #[test]
    fn tells_the_caller_to_deploy_the_newer_consumer() {
        let envelope = coverage_at(4, json!({}));
        let err = envelope
            .decode::<CoverageChanged>(&coverage_upcasters())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "policy.coverage-changed v4 is newer than this consumer knows (v3); deploy the consumer that knows v4"
        );
    }

    #[test]
    fn names_the_missing_upcaster() {
        let envelope = coverage_at(1, json!({ "amount": 1 }));
        let err = envelope
            .decode::<CoverageChanged>(&Upcasters::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no upcaster registered for policy.coverage-changed from v1 (needed to reach v3)"
        );
    }

    #[test]
    fn names_the_failing_step_and_keeps_its_reason_as_the_source() {
        let envelope = coverage_at(2, json!({ "currency": "EUR" }));
        let err = envelope
            .decode::<CoverageChanged>(&coverage_upcasters())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "upcasting policy.coverage-changed from v2 to v3 failed"
        );
        assert_eq!(
            std::error::Error::source(&err).unwrap().to_string(),
            "no `amount` field"
        );
    }

    #[test]
    fn says_which_type_and_version_did_not_deserialize_and_why() {
        let envelope = coverage_at(3, json!({ "limit": "lots", "currency": "EUR" }));
        let err = envelope
            .decode::<CoverageChanged>(&Upcasters::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the payload of policy.coverage-changed v3 does not deserialize: invalid type: string \"lots\", expected u64"
        );

        let envelope = coverage_at(1, json!({ "amount": -1 }));
        let err = envelope
            .decode::<CoverageChanged>(&coverage_upcasters())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the payload of policy.coverage-changed v3 (upcast from v1) does not deserialize: invalid value: integer `-1`, expected u64"
        );
    }
}

mod size {
    use super::*;

    fn with_payload_of(bytes: usize) -> Envelope {
        let mut value = full_json();
        value["payload"] = json!("");
        let base = envelope_from(value.clone());
        let overhead = base.encoded_len() + base.message_attributes().encoded_len();
        value["payload"] = json!("x".repeat(bytes - overhead));
        envelope_from(value)
    }

    #[test]
    fn counts_body_and_attributes() {
        let envelope = envelope_from(full_json());
        let attributes = envelope.message_attributes().encoded_len();
        let exact = TransportLimit {
            name: "test",
            max_bytes: envelope.encoded_len() + attributes,
        };
        assert!(check_size(&envelope, exact).is_ok());
        let one_less = TransportLimit {
            max_bytes: exact.max_bytes - 1,
            ..exact
        };
        assert!(check_size(&envelope, one_less).is_err());
    }

    #[test]
    fn accepts_exactly_the_limit_and_refuses_one_byte_more() {
        assert!(check_size(&with_payload_of(262_144), TransportLimit::SNS).is_ok());
        let too_large = with_payload_of(262_145);
        let err = check_size(&too_large, TransportLimit::SNS).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the policy.coverage-changed envelope {ID} is 262145 bytes with its message attributes, over the SNS limit of 262144 bytes; store the payload elsewhere (e.g. S3) and send a reference to it"
            )
        );
        assert_eq!(err.actual_bytes, 262_145);
        assert_eq!(err.max_bytes, 262_144);
        assert!(check_size(&too_large, TransportLimit::SQS).is_err());
        assert!(check_size(&too_large, TransportLimit::EVENTBRIDGE).is_err());
        assert!(check_size(&too_large, TransportLimit::SQS_1_MIB).is_ok());
    }
}

mod attributes {
    use super::*;

    #[test]
    fn project_routing_fields_and_the_trace() {
        let envelope = envelope_from(full_json());
        let attributes = envelope.message_attributes();
        let pairs: Vec<_> = attributes.iter().collect();
        assert_eq!(
            pairs,
            [
                ("type", "policy.coverage-changed"),
                ("schemaversion", "1"),
                ("source", "policy-service"),
                ("aggregatetype", "policy"),
                ("traceparent", TRACEPARENT),
                ("tracestate", "congo=t61rcWkgMzE"),
            ]
        );
        assert!(attributes.len() <= MAX_MESSAGE_ATTRIBUTES);
    }

    #[test]
    fn leave_out_an_absent_trace() {
        let attributes = policy_activated().message_attributes();
        assert_eq!(attributes.len(), 4);
        assert_eq!(attributes.get(MessageAttributes::TRACEPARENT), None);
    }

    #[test]
    fn are_a_valid_set_for_the_consumer_side() {
        let attributes = envelope_from(full_json()).message_attributes();
        let received = MessageAttributes::from_pairs(attributes.iter()).unwrap();
        assert_eq!(received, attributes);
    }
}
