//! Helpers shared by the integration tests: envelopes of a test event.

use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use serde::{Deserialize, Serialize};

/// A small event for tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyIssued {
    pub(crate) policy_id: String,
    pub(crate) note: String,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

/// Another event type, for filter tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClaimFiled {
    pub(crate) claim_id: String,
}

impl Event for ClaimFiled {
    const TYPE: &'static str = "claim.filed";
    const VERSION: u32 = 1;
}

/// The `sequence`-th event of policy `aggregate`, with a payload note of `note_len` bytes.
pub(crate) fn policy_event(aggregate: &str, sequence: u64, note_len: usize) -> Envelope {
    Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", aggregate).unwrap(),
        Sequence::new(sequence).unwrap(),
        &PolicyIssued {
            policy_id: aggregate.to_owned(),
            note: "n".repeat(note_len),
        },
        EventMetadata::default(),
    )
    .unwrap()
}

/// A claim event, for filter tests.
pub(crate) fn claim_event(claim: &str) -> Envelope {
    Envelope::new(
        Source::parse("claim-service").unwrap(),
        AggregateRef::parse("claim", claim).unwrap(),
        Sequence::FIRST,
        &ClaimFiled {
            claim_id: claim.to_owned(),
        },
        EventMetadata::default(),
    )
    .unwrap()
}
