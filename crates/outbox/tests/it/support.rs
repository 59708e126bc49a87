//! Shared test fixtures: an event type, envelopes of it, and fresh database files.

use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use serde::{Deserialize, Serialize};

/// The event every test appends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyChanged {
    pub(crate) policy_id: String,
    pub(crate) note: String,
}

impl Event for PolicyChanged {
    const TYPE: &'static str = "policy.changed";
    const VERSION: u32 = 1;
}

pub(crate) fn source() -> Source {
    Source::parse("policy-service").unwrap()
}

pub(crate) fn policy(id: &str) -> AggregateRef {
    AggregateRef::parse("policy", id).unwrap()
}

pub(crate) fn changed(id: &str, note: &str) -> PolicyChanged {
    PolicyChanged {
        policy_id: id.to_owned(),
        note: note.to_owned(),
    }
}

/// An envelope about policy `id` at `sequence`, as a unit of work would stamp it.
pub(crate) fn envelope(id: &str, sequence: u64) -> Envelope {
    Envelope::new(
        source(),
        policy(id),
        Sequence::new(sequence).unwrap(),
        &changed(id, "made by hand"),
        EventMetadata::default(),
    )
    .unwrap()
}

/// A path for a database file in a directory of its own.
#[cfg(feature = "sqlite")]
pub(crate) fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-outbox-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("service.db")
}
