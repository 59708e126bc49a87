//! Stream records as the relay sees them: which are new outbox records, and the envelope,
//! shard and sort key of each.

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record};
use dovetail_events::envelope::Envelope;

use crate::dynamodb::{DynamoDbOutboxConfig, ENVELOPE, PENDING, STATE, record_sort_key};

/// A new outbox record, read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Candidate {
    /// The record's outbox shard (from `pk = outbox#<shard>`).
    pub(super) shard: u16,
    /// Its sort key.
    pub(super) sort_key: String,
    /// Its event.
    pub(super) envelope: Envelope,
}

impl Candidate {
    /// The sort key of the previous record of the same aggregate; `None` for its first.
    ///
    /// For a republished record (its sort key longer than the first record's at its
    /// sequence), that first record: it waits behind it. A record waits behind the first
    /// record of the sequence before it only, not behind republishes of that sequence,
    /// whose keys it cannot know; a republished record still pending may then be
    /// overtaken by the aggregate's next event, which is harmless: the republish carries
    /// an older state, which consumers ignore.
    pub(super) fn predecessor(&self) -> Option<String> {
        let sequence = self.envelope.sequence().get();
        let first = record_sort_key(
            self.envelope.aggregate_type().as_str(),
            self.envelope.aggregate_id().as_str(),
            sequence,
        );
        if self.sort_key != first {
            return Some(first);
        }
        (sequence > 1).then(|| {
            record_sort_key(
                self.envelope.aggregate_type().as_str(),
                self.envelope.aggregate_id().as_str(),
                sequence - 1,
            )
        })
    }

    /// The aggregate, as a pair of strings.
    pub(super) fn aggregate(&self) -> (&str, &str) {
        (
            self.envelope.aggregate_type().as_str(),
            self.envelope.aggregate_id().as_str(),
        )
    }
}

/// What a stream record is to the relay.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    /// A new pending outbox record: to publish.
    Candidate(Box<Candidate>),
    /// Anything else: another kind of item, a modification or removal, a record inserted
    /// already published.
    Other,
    /// An outbox record whose envelope does not parse (written by something else): why.
    Corrupt(String),
}

/// Decodes `record` of a table laid out as `config` says.
pub(super) fn decode(record: &Record, config: &DynamoDbOutboxConfig) -> Decoded {
    if record.event_name() != Some(&OperationType::Insert) {
        return Decoded::Other;
    }
    let Some(image) = record.dynamodb().and_then(|change| change.new_image()) else {
        return Decoded::Other;
    };
    let text = |name: &str| match image.get(name) {
        Some(AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    };
    let Some(shard) = text(&config.partition_key)
        .and_then(|pk| pk.strip_prefix("outbox#"))
        .and_then(|shard| shard.parse::<u16>().ok())
    else {
        return Decoded::Other;
    };
    if text(STATE) != Some(PENDING) {
        return Decoded::Other;
    }
    let Some(sort_key) = text(&config.sort_key) else {
        return Decoded::Corrupt("an outbox record without a sort key".to_owned());
    };
    let Some(json) = text(ENVELOPE) else {
        return Decoded::Corrupt(format!("the outbox record {sort_key} has no envelope"));
    };
    match serde_json::from_str::<Envelope>(json) {
        Ok(envelope) => Decoded::Candidate(Box::new(Candidate {
            shard,
            sort_key: sort_key.to_owned(),
            envelope,
        })),
        Err(error) => Decoded::Corrupt(format!(
            "the envelope of the outbox record {sort_key} does not parse: {error}"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use aws_sdk_dynamodbstreams::types::StreamRecord;
    use dovetail_events::envelope::{AggregateRef, EventMetadata, Sequence, Source};

    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Noted {
        note: String,
    }

    impl dovetail_events::envelope::Event for Noted {
        const TYPE: &'static str = "policy.noted";
        const VERSION: u32 = 1;
    }

    fn config() -> DynamoDbOutboxConfig {
        DynamoDbOutboxConfig::new("t", Source::parse("svc").unwrap())
    }

    fn envelope(sequence: u64) -> Envelope {
        Envelope::new(
            Source::parse("svc").unwrap(),
            AggregateRef::parse("policy", "p-1").unwrap(),
            Sequence::new(sequence).unwrap(),
            &Noted { note: "n".into() },
            EventMetadata::default(),
        )
        .unwrap()
    }

    fn record(event: OperationType, attributes: &[(&str, &str)]) -> Record {
        let mut change = StreamRecord::builder().sequence_number("000000000000000000000000000042");
        for (name, value) in attributes {
            change = change.new_image(*name, AttributeValue::S((*value).to_owned()));
        }
        Record::builder()
            .event_name(event)
            .dynamodb(change.build())
            .build()
    }

    #[test]
    fn a_republished_record_waits_behind_the_first_record_at_its_sequence() {
        let envelope = envelope(3);
        let republished = Candidate {
            shard: 0,
            sort_key: crate::dynamodb::republished_sort_key("policy", "p-1", 3, envelope.id()),
            envelope,
        };
        assert_eq!(
            republished.predecessor(),
            Some(record_sort_key("policy", "p-1", 3))
        );
    }

    #[test]
    fn only_inserted_pending_outbox_records_are_candidates() {
        let json = serde_json::to_string(&envelope(3)).unwrap();
        let sort_key = record_sort_key("policy", "p-1", 3);
        let outbox = |state: &'static str| {
            vec![
                ("pk", "outbox#2"),
                ("sk", sort_key.as_str()),
                ("state", state),
                ("envelope", json.as_str()),
            ]
        };

        let Decoded::Candidate(candidate) = decode(
            &record(OperationType::Insert, &outbox("pending")),
            &config(),
        ) else {
            panic!("an inserted pending record is a candidate");
        };
        assert_eq!(
            (candidate.shard, candidate.sort_key.as_str()),
            (2, sort_key.as_str())
        );
        assert_eq!(candidate.envelope.sequence().get(), 3);
        assert_eq!(
            candidate.predecessor(),
            Some(record_sort_key("policy", "p-1", 2))
        );
        assert_eq!(candidate.aggregate(), ("policy", "p-1"));

        for (event, attributes) in [
            (OperationType::Modify, outbox("pending")),
            (OperationType::Insert, outbox("published")),
            (
                OperationType::Insert,
                vec![("pk", "outbox-lease"), ("sk", "relay")],
            ),
            (
                OperationType::Insert,
                vec![("pk", "aggregate#policy#p-1"), ("sk", "version")],
            ),
        ] {
            assert_eq!(
                decode(&record(event, &attributes), &config()),
                Decoded::Other
            );
        }

        let broken = [
            ("pk", "outbox#0"),
            ("sk", "policy#p-1#1"),
            ("state", "pending"),
            ("envelope", "{"),
        ];
        assert!(matches!(
            decode(&record(OperationType::Insert, &broken), &config()),
            Decoded::Corrupt(why) if why.contains("does not parse")
        ));
    }

    #[test]
    fn a_first_event_has_no_predecessor() {
        let candidate = Candidate {
            shard: 0,
            sort_key: record_sort_key("policy", "p-1", 1),
            envelope: envelope(1),
        };
        assert_eq!(candidate.predecessor(), None);
    }
}
