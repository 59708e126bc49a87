//! [`SqliteUnitOfWork`]: a service's writes and the events about them in one SQLite
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;

use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::Notify;

use super::schema::{OrStorage, now_ms, to_i64, to_u64};
use crate::republish::refused;
use crate::{Committed, ExpectedVersion, OutboxError};

/// Adds `n` to an aggregate's version whatever it is, creating it at `n`.
const BUMP_ANY: &str = "
INSERT INTO dovetail_outbox_aggregates (aggregate_type, aggregate_id, version)
VALUES (?1, ?2, ?3)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = version + excluded.version
RETURNING version";

/// Creates an aggregate at version `n`; a row at version 0 counts as new too.
const BUMP_NEW: &str = "
INSERT INTO dovetail_outbox_aggregates (aggregate_type, aggregate_id, version)
VALUES (?1, ?2, ?3)
ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET version = version + excluded.version
    WHERE version = 0
RETURNING version";

/// Adds `n` to an aggregate's version only if it is exactly `?4`.
const BUMP_EXACTLY: &str = "
UPDATE dovetail_outbox_aggregates SET version = version + ?3
WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND version = ?4
RETURNING version";

const SELECT_VERSION: &str = "
SELECT version FROM dovetail_outbox_aggregates WHERE aggregate_type = ?1 AND aggregate_id = ?2";

const INSERT_EVENT: &str = "
INSERT INTO dovetail_outbox
    (event_id, aggregate_type, aggregate_id, sequence, envelope, committed_at_ms)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A service's writes and the events about them, in one transaction of the service's own
/// connection: both are committed by [`commit`](Self::commit), or neither is.
///
/// Begun by [`SqliteOutbox::begin`](super::SqliteOutbox::begin). Write the business rows
/// through [`transaction`](Self::transaction), add events with
/// [`append`](Self::append), then [`commit`](Self::commit). Dropping a unit of work
/// without committing it (an early `?`, a panic) rolls everything back, as does
/// [`rollback`](Self::rollback).
///
/// # Example
/// ```
/// use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
/// use dovetail_outbox::{ExpectedVersion, OutboxError};
/// use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};
/// use rusqlite::Connection;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct ClaimApproved { claim_id: String }
/// impl Event for ClaimApproved {
///     const TYPE: &'static str = "claim.approved";
///     const VERSION: u32 = 1;
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut db = Connection::open_in_memory()?;
/// db.execute_batch("CREATE TABLE claims (id TEXT PRIMARY KEY, status TEXT)")?;
/// SqliteOutbox::create_schema(&db)?;
/// let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("claim-service")?));
/// let claim = AggregateRef::parse("claim", "c-1")?;
///
/// // The request said If-Match: "3", but the claim has no events yet.
/// let mut uow = outbox.begin(&mut db)?;
/// uow.transaction().execute("INSERT INTO claims VALUES ('c-1', 'approved')", [])?;
/// uow.append(
///     claim.clone(),
///     ExpectedVersion::Exactly(3),
///     &ClaimApproved { claim_id: "c-1".into() },
///     EventMetadata::default(),
/// )?;
/// let conflict = uow.commit().unwrap_err();
/// assert!(matches!(conflict, OutboxError::Conflict { actual: 0, .. }));
///
/// // Nothing was kept, the claim row included.
/// let rows: i64 = db.query_row("SELECT COUNT(*) FROM claims", [], |row| row.get(0))?;
/// assert_eq!(rows, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a unit of work rolls back unless it is committed"]
pub struct SqliteUnitOfWork<'c> {
    transaction: Transaction<'c>,
    source: Source,
    commits: Arc<Notify>,
    /// The aggregates appended to, in the order of their first event.
    aggregates: Vec<Appending>,
    /// Where each aggregate is in `aggregates`.
    index: HashMap<AggregateRef, usize>,
    /// The events in the order they were appended, each with its aggregate's index; their
    /// sequences are stamped at commit.
    events: Vec<(usize, Envelope)>,
}

/// What a unit of work appends to one aggregate.
#[derive(Debug)]
struct Appending {
    aggregate: AggregateRef,
    /// The distinct expectations other than `Any`, in the order they were given.
    expected: Vec<ExpectedVersion>,
    /// How many events.
    count: u64,
    /// The first event's sequence when the service keeps the aggregate's version in its
    /// own row ([`UnitOfWork::append_at`]); `None` when the outbox keeps it.
    own_first: Option<u64>,
    /// The version its one event was republished at ([`SqliteUnitOfWork::republish`]),
    /// checked already; such an aggregate has no other event in the unit of work.
    republished: Option<u64>,
}

impl<'c> SqliteUnitOfWork<'c> {
    pub(super) fn new(transaction: Transaction<'c>, source: Source, commits: Arc<Notify>) -> Self {
        Self {
            transaction,
            source,
            commits,
            aggregates: Vec::new(),
            index: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// The transaction, for the service's own reads and writes. They commit with the
    /// events, or roll back with them.
    ///
    /// Committing or rolling back through SQL (`COMMIT`, `ROLLBACK`) would break the unit
    /// of work: use [`commit`](Self::commit) and [`rollback`](Self::rollback).
    pub fn transaction(&self) -> &Transaction<'c> {
        &self.transaction
    }

    /// Adds `event` about `aggregate`, to be committed with the unit of work.
    ///
    /// The event is enveloped now (a new event id, the current time, `metadata`) and gets
    /// its sequence at commit: its aggregate's version plus one, then plus two for the
    /// next event of the same aggregate in this unit of work, and so on. Events keep the
    /// order of the `append` calls, in the outbox and on the broker.
    ///
    /// `expected` is the version the service read the aggregate at, before this unit of
    /// work: [`ExpectedVersion::New`] for an aggregate being created,
    /// [`ExpectedVersion::Exactly`] with the version it loaded (from an `If-Match`
    /// header, say), [`ExpectedVersion::Any`] for events that do not depend on the
    /// aggregate's state. Several appends to one aggregate state the same expectation (or
    /// `Any`); it is checked at commit.
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when `event` does not serialize to JSON, or the
    /// aggregate has events through [`append_at`](Self::append_at) in this unit of work.
    /// The unit of work stays usable, without that event.
    pub fn append<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        expected: ExpectedVersion,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        // The sequence is a placeholder until commit, when the versions are read.
        let envelope = self.envelope(&aggregate, Sequence::FIRST, event, metadata)?;
        self.refuse_if_republished(&aggregate)?;
        if let Some(&known) = self.index.get(&aggregate)
            && self.aggregates[known].own_first.is_some()
        {
            return Err(OutboxError::invalid_event(format!(
                "{}/{} is versioned by the service (append_at) in this unit of work; \
                 append_at its next events too",
                aggregate.aggregate_type.as_str(),
                aggregate.id.as_str()
            )));
        }
        let index = self.index_of(aggregate);
        let appending = &mut self.aggregates[index];
        if let Some(version) = expected_number(expected)
            && !appending
                .expected
                .iter()
                .any(|&known| expected_number(known) == Some(version))
        {
            appending.expected.push(expected);
        }
        appending.count += 1;
        self.events.push((index, envelope));
        Ok(())
    }

    /// Adds `event` about `aggregate` at sequence `version`, for an aggregate whose version
    /// the service keeps in a row of its own, written in this unit of work: the outbox
    /// then keeps no version of its own for it, and writes one page less per commit (the
    /// aggregate's row in `dovetail_outbox_aggregates`).
    ///
    /// `version` is the aggregate's version *after* this event, as the service's row says
    /// it now is, in [`transaction`](Self::transaction): say `UPDATE policies SET ...,
    /// version = ?new WHERE id = ? AND version = ?new - 1` that changed one row, or the
    /// `INSERT` of a new aggregate at version 1. The next event of the same aggregate in
    /// this unit of work is `version + 1`, and so on.
    ///
    /// # The contract
    /// The service's row is then what [`ExpectedVersion`] is for [`append`](Self::append):
    /// - **Concurrency:** the service's conditional write is the check. A write that
    ///   changed no row must not be followed by `append_at` (answer 409/412 and roll
    ///   back instead).
    /// - **Continuity:** the version is raised by exactly the number of events appended,
    ///   in the same transaction, so sequences have no gaps.
    /// - **Never reused:** the service never deletes the row, or keeps a tombstone with
    ///   its version, for as long as consumers may have seen its events: an aggregate
    ///   recreated at version 1 would look to them like a replay.
    /// - **One keeper per aggregate:** an aggregate's events go through `append_at`
    ///   always, or [`append`](Self::append) always. Commit refuses an `append_at` at or
    ///   below a version the outbox kept for the aggregate, so a switch from `append` to
    ///   `append_at` can never reuse a sequence; the other way round, the outbox cannot see
    ///   the service's version, and would start again at 1.
    ///
    /// The outbox checks what it can see: `version` is at least 1, an aggregate's events
    /// in one unit of work are consecutive and all go through `append_at`, and the commit
    /// refuses ([`OutboxError::Conflict`]) a version at or below the one the outbox kept.
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when `event` does not serialize to JSON, `version` is
    /// 0, the aggregate already has events through [`append`](Self::append) in this unit
    /// of work, or `version` does not follow its previous `append_at` here. The unit of
    /// work stays usable, without that event.
    pub fn append_at<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        let sequence = Sequence::new(version).map_err(OutboxError::invalid_event)?;
        self.refuse_if_republished(&aggregate)?;
        let known = self
            .index
            .get(&aggregate)
            .map(|&index| &self.aggregates[index]);
        let refusal = match known.map(|appending| (appending.own_first, appending.count)) {
            Some((None, _)) => Some(
                "has events through append in this unit of work; append its next events too"
                    .to_owned(),
            ),
            Some((Some(first), count)) if first.saturating_add(count) != version => Some(format!(
                "is at version {} in this unit of work, so its next event is {}, not {version}",
                first + count - 1,
                first + count
            )),
            _ => None,
        };
        if let Some(refusal) = refusal {
            return Err(OutboxError::invalid_event(format!(
                "{}/{} {refusal}",
                aggregate.aggregate_type.as_str(),
                aggregate.id.as_str()
            )));
        }
        let envelope = self.envelope(&aggregate, sequence, event, metadata)?;
        let index = self.index_of(aggregate);
        let appending = &mut self.aggregates[index];
        appending.own_first.get_or_insert(version);
        appending.count += 1;
        self.events.push((index, envelope));
        Ok(())
    }

    /// Republishes `event`, the current snapshot of `aggregate`, at sequence `version`:
    /// the aggregate's version as the outbox kept it (the aggregate's events go through
    /// [`append`](Self::append)). For repair: a consistency check found replicas that
    /// drifted, and the owner sends its current state again through the outbox, so the
    /// ordinary consumers fix their copies; nobody writes a replica directly.
    ///
    /// The version is **not** raised: the aggregate stays at `version`, and its next
    /// [`append`](Self::append) gets `version + 1`. The envelope is new: a new event id
    /// (a UUIDv7, as every event's), the current time as its `occurred_at`, and
    /// `metadata` as given; set its `causation_id` to the id of the check run that asked
    /// for the repair, so the republished event says why it exists.
    ///
    /// # What consumers see
    /// A second event at a sequence they may have already (the aggregate's first event at
    /// `version` was published before), with a different event id:
    /// - a replica already at `version` ignores it (highest version wins; an equal
    ///   version is no newer), and one ahead of it (a later event overtook) too;
    /// - a replica behind `version`, or without the aggregate, applies it and is repaired;
    /// - a consumer deduplicating by event id processes it once, as a new event: a
    ///   handler with side effects beyond the replica (a notification) runs again, so
    ///   such handlers should check the sequence, or ignore the republished event type.
    ///
    /// # Ordering with the relay
    /// The relay publishes each aggregate's records in commit order (their position); it
    /// orders nothing across aggregates. A republished record is just the aggregate's
    /// newest record: it is published after every record of the aggregate committed
    /// before it (and waits behind one of them that is failing or parked), and before the
    /// aggregate's records of later units of work, which carry higher sequences. Nothing
    /// in the relay looks at sequences, so the repeated one needs no special case. (On
    /// DynamoDB, whose outbox items are keyed and ordered by sequence, a republished
    /// record gets a key of its own: see `DynamoDbUnitOfWork::republish`.)
    ///
    /// # What is checked
    /// When it is called, in [`transaction`](Self::transaction), which holds the write
    /// lock until commit, so no other writer can change the version in between:
    /// - `version` must be the version the outbox kept, exactly. Above it is refused as
    ///   [`OutboxError::InvalidEvent`]: that sequence was never stamped, a bug of the
    ///   caller rather than a race, since versions only rise. Below it is refused as
    ///   [`OutboxError::Conflict`]: a write came after the snapshot was read; reload it
    ///   and republish the new one, or nothing, since that write's event repairs too.
    /// - The aggregate has events (a version of at least 1); the outbox kept none for an
    ///   aggregate with no events, or for one the service versions itself: use
    ///   [`republish_at`](Self::republish_at) for those.
    /// - The aggregate has no other event in this unit of work: one republish, alone, so
    ///   that it is the snapshot at the version it says. Two republishes of it would only
    ///   send the same state twice.
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] and [`OutboxError::Conflict`] as above, and
    /// `InvalidEvent` when `event` does not serialize to JSON; [`OutboxError::Storage`]
    /// when the version cannot be read. The unit of work stays usable, without that event.
    ///
    /// # Example
    /// ```
    /// use dovetail_events::envelope::{AggregateRef, Event, EventId, EventMetadata, Source};
    /// use dovetail_outbox::ExpectedVersion;
    /// use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};
    ///
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PolicySnapshot { policy_id: String, premium: String }
    /// impl Event for PolicySnapshot {
    ///     const TYPE: &'static str = "policy.snapshot";
    ///     const VERSION: u32 = 1;
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut db = rusqlite::Connection::open_in_memory()?;
    /// # SqliteOutbox::create_schema(&db)?;
    /// let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service")?));
    /// let policy = AggregateRef::parse("policy", "pol-7")?;
    /// let snapshot = PolicySnapshot { policy_id: "pol-7".into(), premium: "120.00".into() };
    /// let mut uow = outbox.begin(&mut db)?;
    /// uow.append(policy.clone(), ExpectedVersion::New, &snapshot, EventMetadata::default())?;
    /// let first = uow.commit()?.into_envelopes().remove(0);
    ///
    /// // A consistency check (run `check_run`) found a replica without pol-7.
    /// let check_run = EventId::generate();
    /// let metadata = EventMetadata { causation_id: Some(check_run), ..EventMetadata::default() };
    /// let mut uow = outbox.begin(&mut db)?;
    /// uow.republish(policy.clone(), 1, &snapshot, metadata)?;
    /// let committed = uow.commit()?;
    ///
    /// let again = &committed.envelopes()[0];
    /// assert_eq!(again.sequence(), first.sequence());
    /// assert_ne!(again.id(), first.id());
    /// assert_eq!(again.causation_id(), Some(check_run));
    /// assert_eq!(committed.version(&policy), Some(1), "the version is not raised");
    /// # Ok(())
    /// # }
    /// ```
    pub fn republish<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        self.refuse_if_appended(&aggregate)?;
        let kept = self.kept_version(&aggregate)?.unwrap_or(0);
        crate::republish::check_kept(&aggregate, version, kept)?;
        self.push_republished(aggregate, version, event, metadata)
    }

    /// [`republish`](Self::republish) for an aggregate whose version the service keeps in
    /// a row of its own ([`append_at`](Self::append_at)): `version` is that row's
    /// version, read in [`transaction`](Self::transaction). The version is not raised,
    /// and consumers and the relay see what `republish` describes.
    ///
    /// The outbox keeps no version for such an aggregate, so it cannot see whether
    /// `version` is the service's current one: republishing above it (a sequence never
    /// stamped, which would make replicas skip the next real event) or below it is the
    /// caller's to rule out, by reading the row in the same transaction. The outbox checks
    /// what it can see: `version` is at least 1, it is not below a version the outbox
    /// kept for the aggregate (from `append`s before the service took its version over),
    /// and the aggregate has no other event in this unit of work.
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when `version` is 0, the aggregate has another event
    /// in this unit of work, or `event` does not serialize to JSON;
    /// [`OutboxError::Conflict`] when `version` is below the version the outbox kept;
    /// [`OutboxError::Storage`] when that version cannot be read. The unit of work stays
    /// usable, without that event.
    pub fn republish_at<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        self.refuse_if_appended(&aggregate)?;
        crate::republish::check_own(&aggregate, version)?;
        if let Some(kept) = self.kept_version(&aggregate)?
            && kept > version
        {
            return Err(crate::republish::conflict(
                &aggregate,
                format!("{version} (the service's own version)"),
                kept,
            ));
        }
        self.push_republished(aggregate, version, event, metadata)
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

    /// Refuses an append to an aggregate republished in this unit of work.
    fn refuse_if_republished(&self, aggregate: &AggregateRef) -> Result<(), OutboxError> {
        match self.index.get(aggregate) {
            Some(&index) if self.aggregates[index].republished.is_some() => Err(refused(
                aggregate,
                "is republished in this unit of work; append its next events in another one",
            )),
            _ => Ok(()),
        }
    }

    /// The version the outbox kept for `aggregate`, if any, as this transaction sees it.
    fn kept_version(&self, aggregate: &AggregateRef) -> Result<Option<u64>, OutboxError> {
        let kept = query_version(
            &self.transaction,
            SELECT_VERSION,
            params![aggregate.aggregate_type.as_str(), aggregate.id.as_str()],
        )
        .or_storage("reading an aggregate's version")?;
        Ok(kept.map(to_u64))
    }

    /// Envelopes a checked republish at `version` and adds it.
    fn push_republished<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        version: u64,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        let sequence = Sequence::new(version).map_err(OutboxError::invalid_event)?;
        let envelope = self.envelope(&aggregate, sequence, event, metadata)?;
        let index = self.index_of(aggregate);
        self.aggregates[index].republished = Some(version);
        self.events.push((index, envelope));
        Ok(())
    }

    /// `event` about `aggregate` at `sequence`, enveloped with this outbox's source.
    fn envelope<E: Event>(
        &self,
        aggregate: &AggregateRef,
        sequence: Sequence,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<Envelope, OutboxError> {
        Envelope::new(
            self.source.clone(),
            aggregate.clone(),
            sequence,
            event,
            metadata,
        )
        .map_err(OutboxError::invalid_event)
    }

    /// Where `aggregate` is in `aggregates`, adding it with no events if it is not there.
    fn index_of(&mut self, aggregate: AggregateRef) -> usize {
        if let Some(&index) = self.index.get(&aggregate) {
            return index;
        }
        self.aggregates.push(Appending {
            aggregate: aggregate.clone(),
            expected: Vec::new(),
            count: 0,
            own_first: None,
            republished: None,
        });
        self.index.insert(aggregate, self.aggregates.len() - 1);
        self.aggregates.len() - 1
    }

    /// Checks every aggregate's expected version, stamps the sequences, writes the events
    /// and the new versions, commits the transaction, and signals the relay
    /// ([`SqliteOutbox::commits`](super::SqliteOutbox::commits)).
    ///
    /// When it returns `Ok`, the business writes and the events are committed (as durably
    /// as the connection's settings make any commit); when it returns an error, none of
    /// them is.
    ///
    /// # Errors
    /// - [`OutboxError::Conflict`] when an aggregate's version is not the expected one;
    ///   nothing is committed.
    /// - [`OutboxError::Storage`] when a statement or the commit fails; nothing is
    ///   committed.
    pub fn commit(self) -> Result<Committed, OutboxError> {
        let Self {
            transaction,
            commits,
            aggregates,
            events,
            ..
        } = self;
        let mut next_sequence = Vec::with_capacity(aggregates.len());
        let mut versions = Vec::with_capacity(aggregates.len());
        for appending in aggregates {
            // A republished event keeps the sequence it was checked at; the version stays.
            if let Some(version) = appending.republished {
                next_sequence.push(None);
                versions.push((appending.aggregate, version));
                continue;
            }
            let version = match appending.own_first {
                Some(first) => check_own_version(&transaction, &appending, first)?,
                None => bump_version(&transaction, &appending)?,
            };
            next_sequence.push(Some(version.saturating_sub(appending.count) + 1));
            versions.push((appending.aggregate, version));
        }

        let committed_at_ms = now_ms();
        let mut envelopes = Vec::with_capacity(events.len());
        let mut positions = Vec::with_capacity(events.len());
        {
            let mut insert = transaction
                .prepare_cached(INSERT_EVENT)
                .or_storage("writing an event to the outbox")?;
            for (index, envelope) in events {
                let (envelope, sequence) = match &mut next_sequence[index] {
                    Some(next) => {
                        let sequence = Sequence::new(*next).map_err(OutboxError::invalid_event)?;
                        *next += 1;
                        (stamp(envelope, sequence)?, sequence)
                    }
                    None => {
                        let sequence = envelope.sequence();
                        (envelope, sequence)
                    }
                };
                let json = serde_json::to_string(&envelope).map_err(OutboxError::invalid_event)?;
                insert
                    .execute(params![
                        envelope.id().to_string(),
                        envelope.aggregate_type().as_str(),
                        envelope.aggregate_id().as_str(),
                        to_i64(sequence.get()),
                        json,
                        committed_at_ms,
                    ])
                    .or_storage("writing an event to the outbox")?;
                positions.push(to_u64(transaction.last_insert_rowid()));
                envelopes.push(envelope);
            }
        }
        transaction
            .commit()
            .or_storage("committing a unit of work")?;
        if !envelopes.is_empty() {
            // Wake every relay waiting now, and leave a permit for one that is busy.
            commits.notify_waiters();
            commits.notify_one();
        }
        Ok(Committed::numbered(envelopes, positions, versions))
    }

    /// Rolls the business writes and the events back; the same as dropping the unit of
    /// work, but says so and reports a failed rollback.
    ///
    /// # Errors
    /// [`OutboxError::Storage`] when SQLite fails to roll back (the transaction is then
    /// rolled back when the connection closes, at the latest).
    pub fn rollback(self) -> Result<(), OutboxError> {
        self.transaction
            .rollback()
            .or_storage("rolling a unit of work back")
    }
}

/// The version an expectation requires, `None` for `Any`; `New` is version 0.
fn expected_number(expected: ExpectedVersion) -> Option<u64> {
    match expected {
        ExpectedVersion::New => Some(0),
        ExpectedVersion::Exactly(version) => Some(version),
        ExpectedVersion::Any => None,
    }
}

/// How a conflict names what was expected.
fn describe(expected: ExpectedVersion) -> String {
    match expected {
        ExpectedVersion::New => "new (no events)".to_owned(),
        ExpectedVersion::Exactly(version) => version.to_string(),
        ExpectedVersion::Any => "any".to_owned(),
    }
}

/// Checks `appending`'s expectations and raises its aggregate's version by its number of
/// events, in one statement when the version matches; returns the new version.
fn bump_version(transaction: &Transaction<'_>, appending: &Appending) -> Result<u64, OutboxError> {
    const OPERATION: &str = "updating an aggregate's version";
    let aggregate_type = appending.aggregate.aggregate_type.as_str();
    let aggregate_id = appending.aggregate.id.as_str();
    let count = to_i64(appending.count);
    let first = appending
        .expected
        .first()
        .copied()
        .unwrap_or(ExpectedVersion::Any);
    let bumped = match expected_number(first) {
        None => query_version(
            transaction,
            BUMP_ANY,
            params![aggregate_type, aggregate_id, count],
        ),
        Some(0) => query_version(
            transaction,
            BUMP_NEW,
            params![aggregate_type, aggregate_id, count],
        ),
        Some(version) => query_version(
            transaction,
            BUMP_EXACTLY,
            params![aggregate_type, aggregate_id, count, to_i64(version)],
        ),
    }
    .or_storage(OPERATION)?;
    let Some(bumped) = bumped else {
        let actual = query_version(
            transaction,
            SELECT_VERSION,
            params![aggregate_type, aggregate_id],
        )
        .or_storage(OPERATION)?;
        return Err(conflict(appending, first, to_u64(actual.unwrap_or(0))));
    };
    let version = to_u64(bumped);
    let before = version.saturating_sub(appending.count);
    // Several appends that expected different versions cannot all be right.
    if let Some(&wrong) = appending
        .expected
        .iter()
        .find(|&&expected| expected_number(expected) != Some(before))
    {
        return Err(conflict(appending, wrong, before));
    }
    Ok(version)
}

/// For an aggregate the service versions ([`UnitOfWork::append_at`]): refuses a first
/// sequence at or below a version the outbox kept for it (the aggregate went through
/// [`UnitOfWork::append`] before), which would reuse sequences; returns the new version.
/// A read only: the service's own row is the version.
fn check_own_version(
    transaction: &Transaction<'_>,
    appending: &Appending,
    first: u64,
) -> Result<u64, OutboxError> {
    let kept = query_version(
        transaction,
        SELECT_VERSION,
        params![
            appending.aggregate.aggregate_type.as_str(),
            appending.aggregate.id.as_str()
        ],
    )
    .or_storage("reading an aggregate's version")?;
    if let Some(kept) = kept.map(to_u64)
        && kept >= first
    {
        return Err(OutboxError::Conflict {
            aggregate_type: appending.aggregate.aggregate_type.as_str().to_owned(),
            aggregate_id: appending.aggregate.id.as_str().to_owned(),
            expected: format!("{} (the service's own version)", first - 1),
            actual: kept,
        });
    }
    Ok(first + appending.count - 1)
}

/// Runs a cached statement that answers with a version, or with no row.
fn query_version(
    transaction: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Option<i64>> {
    transaction
        .prepare_cached(sql)?
        .query_row(params, |row| row.get(0))
        .optional()
}

fn conflict(appending: &Appending, expected: ExpectedVersion, actual: u64) -> OutboxError {
    OutboxError::Conflict {
        aggregate_type: appending.aggregate.aggregate_type.as_str().to_owned(),
        aggregate_id: appending.aggregate.id.as_str().to_owned(),
        expected: describe(expected),
        actual,
    }
}

/// `envelope` with its stamped `sequence`.
fn stamp(envelope: Envelope, sequence: Sequence) -> Result<Envelope, OutboxError> {
    let mut parts = envelope.into_parts();
    parts.sequence = sequence;
    // Cannot fail: the parts come from a valid envelope.
    Envelope::from_parts(parts).map_err(OutboxError::invalid_event)
}
