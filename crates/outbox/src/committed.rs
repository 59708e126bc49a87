//! [`Committed`]: what a unit of work reports once its events are in the outbox, the same
//! type whichever database holds them.

use dovetail_events::envelope::{AggregateRef, Envelope, EventId};

use crate::Position;

/// What a unit of work committed: the events as they went into the outbox, and the new
/// version of each aggregate (which a service can return as an `ETag`). Both units of
/// work ([`sqlite::SqliteUnitOfWork`](crate::sqlite::SqliteUnitOfWork) and
/// [`dynamodb::DynamoDbUnitOfWork`](crate::dynamodb::DynamoDbUnitOfWork)) return it.
///
/// # Example
/// ```
/// use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
/// use dovetail_outbox::ExpectedVersion;
/// use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PolicyRenewed { policy_id: String, year: u16 }
/// impl Event for PolicyRenewed {
///     const TYPE: &'static str = "policy.renewed";
///     const VERSION: u32 = 1;
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let mut db = rusqlite::Connection::open_in_memory()?;
/// # SqliteOutbox::create_schema(&db)?;
/// let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service")?));
/// let policy = AggregateRef::parse("policy", "pol-7")?;
/// let mut uow = outbox.begin(&mut db)?;
/// for year in [2025, 2026] {
///     let renewed = PolicyRenewed { policy_id: "pol-7".into(), year };
///     uow.append(policy.clone(), ExpectedVersion::New, &renewed, EventMetadata::default())?;
/// }
/// let committed = uow.commit()?;
///
/// let sequences: Vec<u64> = committed.envelopes().iter().map(|e| e.sequence().get()).collect();
/// assert_eq!(sequences, [1, 2]);
/// let etag = format!("\"{}\"", committed.version(&policy).unwrap_or(0));
/// assert_eq!(etag, "\"2\"");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    envelopes: Vec<Envelope>,
    positions: Option<Vec<Position>>,
    versions: Vec<(AggregateRef, u64)>,
    /// The ids of the envelopes that are republished snapshots (DynamoDB keys their
    /// records apart from the first record at the same sequence).
    republished: Vec<EventId>,
}

impl Committed {
    /// What a unit of work whose backend numbers its records at commit (SQLite) reports.
    #[cfg(feature = "sqlite")]
    pub(crate) fn numbered(
        envelopes: Vec<Envelope>,
        positions: Vec<Position>,
        versions: Vec<(AggregateRef, u64)>,
    ) -> Self {
        debug_assert_eq!(envelopes.len(), positions.len());
        Self {
            envelopes,
            positions: Some(positions),
            versions,
            republished: Vec::new(),
        }
    }

    /// What a unit of work whose store hands out positions itself (DynamoDB) reports.
    #[cfg(feature = "dynamodb")]
    pub(crate) fn unnumbered(
        envelopes: Vec<Envelope>,
        versions: Vec<(AggregateRef, u64)>,
        republished: Vec<EventId>,
    ) -> Self {
        Self {
            envelopes,
            positions: None,
            versions,
            republished,
        }
    }

    /// Whether the event `id` of this commit is a republished snapshot (DynamoDB's).
    #[cfg(feature = "dynamodb")]
    pub(crate) fn is_republished(&self, id: EventId) -> bool {
        self.republished.contains(&id)
    }

    /// The events, in the order they were appended, with their ids and stamped sequences.
    pub fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    /// The events, owned.
    pub fn into_envelopes(self) -> Vec<Envelope> {
        self.envelopes
    }

    /// Each event's place in the outbox, in the order of [`envelopes`](Self::envelopes),
    /// where the database numbers records as it commits them: SQLite's rowids, valid on
    /// every store of the same file. `None` on DynamoDB, whose positions are handles a
    /// store hands out: ask that store (`DynamoDbOutboxStore::positions_of`).
    pub fn positions(&self) -> Option<&[Position]> {
        self.positions.as_deref()
    }

    /// The version `aggregate` has now (its last sequence), if the unit of work appended
    /// to it or republished it (SQLite's `republish`, which leaves the version as it
    /// was).
    pub fn version(&self, aggregate: &AggregateRef) -> Option<u64> {
        self.versions
            .iter()
            .find(|(known, _)| known == aggregate)
            .map(|&(_, version)| version)
    }

    /// Every aggregate the unit of work appended to (or republished), with its new
    /// version, in the order of their first event.
    pub fn versions(&self) -> impl Iterator<Item = (&AggregateRef, u64)> {
        self.versions
            .iter()
            .map(|(aggregate, version)| (aggregate, *version))
    }
}
