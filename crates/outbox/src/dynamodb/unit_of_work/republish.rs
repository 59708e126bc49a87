//! Republishing a snapshot through a [`DynamoDbUnitOfWork`]: the checks when it is
//! added, and what the commit checks in the transaction.

use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence};

use super::{Appending, DynamoDbUnitOfWork};
use crate::OutboxError;
use crate::republish::refused;

/// A republish's sequence and the check of the aggregate's version item at commit.
#[derive(Debug, Clone, Copy)]
pub(super) struct Republish {
    pub(super) version: u64,
    /// `republish`: the version item is at `version` exactly; `republish_at`: it is
    /// absent or not above `version`.
    pub(super) exact: bool,
}

impl DynamoDbUnitOfWork {
    /// Republishes `event`, the current snapshot of `aggregate`, at sequence `version`:
    /// the aggregate's version as the outbox keeps it. For repair: a consistency check
    /// found replicas that drifted, and the owner sends its current state again through
    /// the outbox, so the ordinary consumers fix their copies.
    ///
    /// The same as SQLite's `SqliteUnitOfWork::republish`: the version is **not** raised
    /// (the next [`append`](Self::append) gets `version + 1`); the envelope is new (a new
    /// event id, the current time, `metadata`: set its `causation_id` to the check run's
    /// id); consumers see a second event at a sequence they may have seen, which a
    /// replica at or past `version` ignores and one behind it applies.
    ///
    /// # Its record
    /// An outbox record is keyed by its sequence, and the first record at `version` may
    /// still be there (pending, or published and waiting for its TTL), so a republished
    /// record has a key of its own: the first record's, then `#r` and its event id. It
    /// sorts right after the first record at `version` and before the aggregate's next
    /// sequence, so [`DynamoDbOutboxStore`](crate::dynamodb::DynamoDbOutboxStore) hands the
    /// aggregate's records to the relay in that order (behind a failing or parked
    /// earlier record, as every record), and the Streams relay holds it back while the
    /// first record at `version` is pending.
    ///
    /// # What is checked
    /// Now, with a strongly consistent read of the aggregate's version item, so that a
    /// refusal leaves the unit of work usable: the aggregate has events (a version of at
    /// least 1; else [`OutboxError::InvalidEvent`]), `version` is not above it (never
    /// stamped, a bug of the caller: `InvalidEvent`) nor below it (a write came after the
    /// snapshot was read: [`OutboxError::Conflict`]; reload and republish, or nothing,
    /// since that write's event repairs too); and the aggregate has no other event in
    /// this unit of work. Again at commit, by a `ConditionCheck` of the version item at
    /// `version` in the transaction (one action per republished aggregate instead of the
    /// version's update): a write between the two makes the commit fail with
    /// [`OutboxError::Conflict`], and nothing is committed.
    ///
    /// # Errors
    /// As above; `InvalidEvent` when `event` does not serialize; [`OutboxError::Storage`]
    /// when the version cannot be read. The unit of work stays usable, without that
    /// event.
    pub async fn republish<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<&mut Self, OutboxError> {
        self.refuse_if_appended(&aggregate)?;
        let kept = self.read_version(&aggregate).await?;
        crate::republish::check_kept(&aggregate, version, kept)?;
        self.push_republished(
            aggregate,
            Republish {
                version,
                exact: true,
            },
            event,
            metadata,
        )
    }

    /// [`republish`](Self::republish) for an aggregate whose version the service keeps in
    /// an item of its own: `version` is that item's version, which the caller reads (or
    /// checks with a `ConditionCheck` in this unit of work, through
    /// [`write`](Self::write)). The version is not raised.
    ///
    /// The outbox cannot see the service's version, so republishing above it (a
    /// sequence never stamped) or below it is the caller's to rule out. It checks what it
    /// can: `version` is at least 1, the aggregate has no other event in this unit of
    /// work, and, at commit, `version` is not below a version the outbox kept for the
    /// aggregate ([`OutboxError::Conflict`] then, nothing committed).
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when `version` is 0, the aggregate has another event
    /// in this unit of work, or `event` does not serialize. The unit of work stays usable,
    /// without that event.
    pub fn republish_at<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<&mut Self, OutboxError> {
        self.refuse_if_appended(&aggregate)?;
        crate::republish::check_own(&aggregate, version)?;
        self.push_republished(
            aggregate,
            Republish {
                version,
                exact: false,
            },
            event,
            metadata,
        )
    }

    fn push_republished<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        republish: Republish,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<&mut Self, OutboxError> {
        let sequence = Sequence::new(republish.version).map_err(OutboxError::invalid_event)?;
        let envelope = Envelope::new(
            self.config.source.clone(),
            aggregate.clone(),
            sequence,
            event,
            metadata,
        )
        .map_err(OutboxError::invalid_event)?;
        self.aggregates.push(Appending {
            aggregate: aggregate.clone(),
            expected: Vec::new(),
            count: 1,
            republished: Some(republish),
        });
        let index = self.aggregates.len() - 1;
        self.index.insert(aggregate, index);
        self.events.push((index, envelope));
        self.prepared = None;
        Ok(self)
    }

    /// Refuses a republish of an aggregate that has events in this unit of work already.
    fn refuse_if_appended(&self, aggregate: &AggregateRef) -> Result<(), OutboxError> {
        let Some(&index) = self.index.get(aggregate) else {
            return Ok(());
        };
        let how = if self.aggregates[index].republished.is_some() {
            "is republished in this unit of work already; one republish sends its snapshot"
        } else {
            "has events in this unit of work; republish it in a unit of work of its own"
        };
        Err(refused(aggregate, how))
    }
}
