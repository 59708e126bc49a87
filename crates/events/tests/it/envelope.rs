//! Properties of the envelope: its JSON and CloudEvents forms round-trip, upcasting a v1
//! event through v1 → v2 → v3 equals building the v3 event, and `traceparent` parsing
//! round-trips every valid value and rejects malformed ones.

use dovetail_events::envelope::{
    AggregateRef, Envelope, EnvelopeParts, Event, EventId, EventMetadata, EventType,
    MAX_MESSAGE_ATTRIBUTES, SchemaVersion, Sequence, Source, TraceContext, TraceParent, TraceState,
    UpcastError, Upcasters,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Strategies

fn event_id() -> impl Strategy<Value = EventId> {
    any::<u128>().prop_map(|bits| {
        // Set the version nibble to 7 and the variant bits to 0b10 (RFC 9562).
        let bits = (bits & !(0xf << 76)) | (0x7 << 76);
        let bits = (bits & !(0b11 << 62)) | (0b10 << 62);
        EventId::from_uuid(Uuid::from_u128(bits)).unwrap()
    })
}

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,128}"
}

/// Free text without control characters, 1 to 256 characters.
fn aggregate_text() -> impl Strategy<Value = String> {
    "[^\\p{Cc}]{1,256}"
}

/// An instant between the years 0001 and 9998, seen from any offset, so that it stays
/// within 0000 to 9999 once converted to UTC.
fn occurred_at() -> impl Strategy<Value = OffsetDateTime> {
    const YEAR_1: i64 = -62_135_596_800;
    const YEAR_9999: i64 = 253_370_764_800;
    (YEAR_1..YEAR_9999, 0..1_000_000_000u32, -86_399..=86_399i32).prop_map(
        |(seconds, nanos, offset)| {
            OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(UtcOffset::from_whole_seconds(offset).unwrap())
        },
    )
}

fn trace_parent() -> impl Strategy<Value = TraceParent> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<u8>())
        .prop_filter("W3C reserves all-zero ids", |(trace, parent, _)| {
            *trace != [0; 16] && *parent != [0; 8]
        })
        .prop_map(|(trace, parent, flags)| TraceParent::new(trace, parent, flags).unwrap())
}

fn trace_context() -> impl Strategy<Value = TraceContext> {
    (
        trace_parent(),
        proptest::option::of("[ -~]{1,512}".prop_map(|s| TraceState::parse(&s).unwrap())),
    )
        .prop_map(|(traceparent, tracestate)| TraceContext {
            traceparent,
            tracestate,
        })
}

/// Any JSON value, floats included.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinities", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn metadata()(
        correlation_id in proptest::option::of(event_id()),
        causation_id in proptest::option::of(event_id()),
        trace in proptest::option::of(trace_context()),
    ) -> EventMetadata {
        EventMetadata { correlation_id, causation_id, trace }
    }
}

prop_compose! {
    fn envelope()(
        id in event_id(),
        event_type in name(),
        schema_version in 1..=u32::MAX,
        source in name(),
        aggregate_type in aggregate_text(),
        aggregate_id in aggregate_text(),
        sequence in 1..=u64::MAX,
        occurred_at in occurred_at(),
        metadata in metadata(),
        payload in json_value(),
    ) -> Envelope {
        Envelope::from_parts(EnvelopeParts {
            id,
            event_type: EventType::parse(&event_type).unwrap(),
            schema_version: SchemaVersion::new(schema_version).unwrap(),
            source: Source::parse(&source).unwrap(),
            aggregate: AggregateRef::parse(&aggregate_type, &aggregate_id).unwrap(),
            sequence: Sequence::new(sequence).unwrap(),
            occurred_at,
            metadata,
            payload,
        })
        .unwrap()
    }
}

// ---------------------------------------------------------------------------------------
// Round trips

proptest! {
    #[test]
    fn json_round_trip(envelope in envelope()) {
        let bytes = envelope.to_json_bytes();
        let back: Envelope = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(&back, &envelope);
        prop_assert_eq!(envelope.encoded_len(), bytes.len());
    }

    #[test]
    fn cloudevent_round_trip(envelope in envelope()) {
        // Through text, as a CloudEvent travels.
        let text = serde_json::to_string(&envelope.to_cloudevent()).unwrap();
        let cloudevent: Value = serde_json::from_str(&text).unwrap();
        let back = Envelope::from_cloudevent(cloudevent).unwrap();
        prop_assert_eq!(back, envelope);
    }

    #[test]
    fn parts_round_trip(envelope in envelope()) {
        let back = Envelope::from_parts(envelope.clone().into_parts()).unwrap();
        prop_assert_eq!(back, envelope);
    }

    #[test]
    fn attributes_stay_within_the_sqs_limit_and_match_the_envelope(envelope in envelope()) {
        let attributes = envelope.message_attributes();
        prop_assert!(attributes.len() <= MAX_MESSAGE_ATTRIBUTES);
        prop_assert_eq!(attributes.get("type"), Some(envelope.event_type().as_str()));
        let version = envelope.schema_version().to_string();
        prop_assert_eq!(attributes.get("schemaversion"), Some(version.as_str()));
        prop_assert_eq!(attributes.get("source"), Some(envelope.source().as_str()));
        prop_assert_eq!(attributes.get("aggregatetype"), Some(envelope.aggregate_type().as_str()));
        let traceparent = envelope.trace().map(|trace| trace.traceparent.to_string());
        prop_assert_eq!(attributes.get("traceparent"), traceparent.as_deref());
    }
}

// ---------------------------------------------------------------------------------------
// Upcasting

/// Three versions of one event: v1 had `amount`; v2 added `currency`; v3 renamed `amount`
/// to `limit` and added `limit_changed`, true when the limit is not zero.
mod coverage_changed {
    use super::*;

    pub(super) const TYPE: &str = "policy.coverage-changed";

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(super) struct V1 {
        pub(super) policy_id: String,
        pub(super) amount: u64,
    }
    impl Event for V1 {
        const TYPE: &'static str = TYPE;
        const VERSION: u32 = 1;
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(super) struct V2 {
        pub(super) policy_id: String,
        pub(super) amount: u64,
        pub(super) currency: String,
    }
    impl Event for V2 {
        const TYPE: &'static str = TYPE;
        const VERSION: u32 = 2;
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(super) struct V3 {
        pub(super) policy_id: String,
        pub(super) limit: u64,
        pub(super) currency: String,
        pub(super) limit_changed: bool,
    }
    impl Event for V3 {
        const TYPE: &'static str = TYPE;
        const VERSION: u32 = 3;
    }

    /// What v1 data means at v3.
    pub(super) fn v3_of(v1: &V1) -> V3 {
        V3 {
            policy_id: v1.policy_id.clone(),
            limit: v1.amount,
            currency: "EUR".to_owned(),
            limit_changed: v1.amount != 0,
        }
    }

    fn fields(payload: &mut Value) -> Result<&mut serde_json::Map<String, Value>, UpcastError> {
        payload
            .as_object_mut()
            .ok_or_else(|| UpcastError::new("the payload is not an object"))
    }

    pub(super) fn upcasters() -> Upcasters {
        let mut upcasters = Upcasters::new();
        upcasters
            .register::<V3>(1, |mut payload| {
                fields(&mut payload)?.insert("currency".into(), json!("EUR"));
                Ok(payload)
            })
            .unwrap();
        upcasters
            .register::<V3>(2, |mut payload| {
                let fields = fields(&mut payload)?;
                let amount = fields
                    .remove("amount")
                    .ok_or_else(|| UpcastError::new("no `amount` field"))?;
                let changed = amount.as_u64() != Some(0);
                fields.insert("limit".into(), amount);
                fields.insert("limit_changed".into(), json!(changed));
                Ok(payload)
            })
            .unwrap();
        upcasters
    }
}

fn new_envelope<E: Event>(event: &E, metadata: EventMetadata) -> Envelope {
    Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", "pol-1").unwrap(),
        Sequence::FIRST,
        event,
        metadata,
    )
    .unwrap()
}

proptest! {
    #[test]
    fn a_v1_event_upcast_to_v3_equals_the_v3_event_built_directly(
        policy_id in ".{0,40}",
        amount in any::<u64>(),
        metadata in metadata(),
    ) {
        use coverage_changed::{V1, V3, upcasters, v3_of};

        let v1 = V1 { policy_id, amount };
        let expected = v3_of(&v1);
        let upcasters = upcasters();

        let old = new_envelope(&v1, metadata.clone());
        let decoded: V3 = old.decode(&upcasters).unwrap();
        prop_assert_eq!(&decoded, &expected);

        // The same through the wire, and the same as an envelope written at v3.
        let received: Envelope = serde_json::from_slice(&old.to_json_bytes()).unwrap();
        prop_assert_eq!(&received.decode::<V3>(&upcasters).unwrap(), &expected);
        let current = new_envelope(&expected, metadata);
        prop_assert_eq!(current.decode::<V3>(&upcasters).unwrap(), expected);
    }

    #[test]
    fn a_v2_event_takes_only_the_last_step(
        policy_id in ".{0,40}",
        amount in any::<u64>(),
        currency in "[A-Z]{3}",
    ) {
        use coverage_changed::{V2, V3, upcasters};

        let v2 = V2 { policy_id: policy_id.clone(), amount, currency: currency.clone() };
        let decoded: V3 = new_envelope(&v2, EventMetadata::default()).decode(&upcasters()).unwrap();
        prop_assert_eq!(decoded, V3 { policy_id, limit: amount, currency, limit_changed: amount != 0 });
    }
}

// ---------------------------------------------------------------------------------------
// traceparent

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn traceparent_text(trace: &[u8], parent: &[u8], flags: u8) -> String {
    format!("00-{}-{}-{flags:02x}", hex(trace), hex(parent))
}

/// A valid version-00 `traceparent` as text.
fn valid_traceparent_text() -> impl Strategy<Value = String> {
    trace_parent().prop_map(|parent| {
        traceparent_text(&parent.trace_id(), &parent.parent_id(), parent.flags())
    })
}

const DASHES: [usize; 3] = [2, 35, 52];

proptest! {
    #[test]
    fn traceparent_format_parse_round_trip(parent in trace_parent()) {
        let text = parent.to_string();
        prop_assert_eq!(text.len(), 55);
        prop_assert_eq!(TraceParent::parse(&text).unwrap(), parent);
    }

    #[test]
    fn traceparent_parse_format_round_trip(text in valid_traceparent_text()) {
        prop_assert_eq!(TraceParent::parse(&text).unwrap().to_string(), text);
    }

    #[test]
    fn later_versions_are_read_as_version_00(
        text in valid_traceparent_text(),
        version in 1..=0xfe_u8,
        rest in proptest::option::of("[a-z0-9-]{0,20}"),
    ) {
        let later = format!(
            "{version:02x}{}{}",
            &text[2..],
            rest.map(|rest| format!("-{rest}")).unwrap_or_default()
        );
        prop_assert_eq!(TraceParent::parse(&later).unwrap().to_string(), text);
    }

    #[test]
    fn a_single_wrong_character_is_rejected(
        text in valid_traceparent_text(),
        index in 0..55usize,
        replacement in any::<char>(),
    ) {
        let wrong_here = if DASHES.contains(&index) {
            replacement != '-'
        } else {
            !matches!(replacement, '0'..='9' | 'a'..='f')
        };
        prop_assume!(wrong_here);
        let mut chars: Vec<char> = text.chars().collect();
        chars[index] = replacement;
        let mutated: String = chars.into_iter().collect();
        prop_assert!(TraceParent::parse(&mutated).is_err(), "{mutated}");
    }

    #[test]
    fn a_wrong_length_is_rejected(text in valid_traceparent_text(), cut in 0..55usize, extra in "[0-9a-f-]{1,10}") {
        prop_assert!(TraceParent::parse(&text[..cut]).is_err());
        let longer = format!("{text}{extra}");
        prop_assert!(TraceParent::parse(&longer).is_err(), "{longer}");
    }

    #[test]
    fn all_zero_ids_are_rejected(parent in trace_parent()) {
        let zero_trace = traceparent_text(&[0; 16], &parent.parent_id(), parent.flags());
        prop_assert!(TraceParent::parse(&zero_trace).is_err());
        let zero_parent = traceparent_text(&parent.trace_id(), &[0; 8], parent.flags());
        prop_assert!(TraceParent::parse(&zero_parent).is_err());
    }

    #[test]
    fn version_ff_is_rejected(text in valid_traceparent_text()) {
        let version_ff = format!("ff{}", &text[2..]);
        prop_assert!(TraceParent::parse(&version_ff).is_err());
    }

    #[test]
    fn any_text_parses_to_a_value_that_round_trips_or_is_rejected(text in "\\PC{0,80}") {
        if let Ok(parent) = TraceParent::parse(&text) {
            prop_assert_eq!(TraceParent::parse(&parent.to_string()).unwrap(), parent);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Names

proptest! {
    #[test]
    fn an_event_type_is_accepted_exactly_when_it_follows_the_rule(text in "[A-Za-z0-9._ /é-]{0,130}") {
        let follows_rule = (1..=128).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        prop_assert_eq!(EventType::parse(&text).is_ok(), follows_rule);
        prop_assert_eq!(Source::parse(&text).is_ok(), follows_rule);
    }
}
