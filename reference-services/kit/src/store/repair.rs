//! What an owner's repair of its replicas reports, on either backend: each key a
//! consistency check found drifted gets the aggregate's current snapshot republished
//! through the outbox, so the replicas' ordinary consumers fix their copies. Nothing
//! writes a replica; the owner only sends its state again.
//!
//! The shape is the same for every service ([`RepairReport`], at most [`REPAIR_BATCH`]
//! keys a call, [`RepairReport::into_outcome`] for a consistency runner); which event a
//! service republishes for an aggregate is the service's. [`republish_rows`] runs a repair
//! on a SQLite file, `republish_items` (feature `aws`) on a DynamoDB
//! table.

use std::future::Future;
use std::pin::Pin;

use dovetail_consistency::{BoxError, RepairOutcome, RunId};
use dovetail_events::envelope::{EventId, EventMetadata};
use dovetail_outbox::OutboxError;
use dovetail_outbox::sqlite::{SqliteOutbox, SqliteUnitOfWork};
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;

use super::StoreError;

/// The most aggregates one repair call republishes: the first this many distinct keys it
/// is given. The rest come back in [`RepairReport::deferred`], for the next call. On
/// SQLite one call is one transaction, holding the write lock while it reads and
/// republishes, and its records reach the relay together; the cap keeps both short so
/// repairing a badly drifted replica does not stall the service's own writes or flood
/// the relay. The caller paces the calls. (On DynamoDB, a call's aggregates go in
/// transactions of 25: each republish is two of the 100 actions a transaction may hold.)
pub const REPAIR_BATCH: usize = 100;

/// What one repair call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The aggregates republished, in the order of the keys given.
    pub republished: Vec<Republished>,
    /// The keys not republished, each with why; the others went ahead regardless.
    pub skipped: Vec<Skipped>,
    /// The keys beyond [`REPAIR_BATCH`], untouched: pass them to the next call.
    pub deferred: Vec<String>,
}

/// One aggregate whose snapshot was republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    /// The aggregate's id, the key as given.
    pub key: String,
    /// The version republished: the aggregate's current one, not raised by the repair.
    pub version: u64,
    /// The type of the event republished (such as `claim.approved`).
    pub event_type: &'static str,
    /// The republished event's id (new; the event at this version first published had
    /// another).
    pub event_id: EventId,
}

/// A key the repair did not republish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The key as given.
    pub key: String,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a key was not republished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// This service has no such aggregate: a replica holding it got an event of another
    /// service (a subscription to the wrong topic, say). Republishing cannot fix that;
    /// the replica's copy is the replica's operators' to remove.
    NotFound,
    /// The outbox refused to republish it (the message says why, such as a row whose
    /// version is not the outbox's, or on DynamoDB a write that came between the read and
    /// the republish, whose own event repairs it); run the check again before retrying.
    Refused(String),
}

impl SkipReason {
    /// The outbox's refusal `error`, with the messages of its sources, which say what it
    /// refused and why.
    pub fn refused(error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Refused(message)
    }
}

impl RepairReport {
    /// An empty report for `keys`, and the keys to repair in this call: the first
    /// [`REPAIR_BATCH`] distinct ones, in order; the distinct rest are the report's
    /// [`deferred`](Self::deferred).
    ///
    /// ```
    /// use dovetail_service_kit::store::{REPAIR_BATCH, RepairReport};
    ///
    /// let mut keys: Vec<String> = (0..=REPAIR_BATCH).map(|i| format!("k-{i}")).collect();
    /// keys.insert(1, "k-0".into()); // a duplicate takes no place in the batch
    /// let (report, batch) = RepairReport::start(keys);
    /// assert_eq!(batch.len(), REPAIR_BATCH);
    /// assert_eq!(report.deferred, [format!("k-{REPAIR_BATCH}")]);
    /// ```
    pub fn start(keys: Vec<String>) -> (Self, Vec<String>) {
        let (mut batch, mut deferred): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for key in keys {
            if batch.contains(&key) || deferred.contains(&key) {
                continue;
            }
            if batch.len() < REPAIR_BATCH {
                batch.push(key);
            } else {
                deferred.push(key);
            }
        }
        let report = Self {
            deferred,
            ..Self::default()
        };
        (report, batch)
    }

    /// The report as a consistency runner's
    /// [`RepairOutcome`](dovetail_consistency::RepairOutcome), a skipped key's reason
    /// said in words; `aggregate` names what the keys are (`claim`), `service` the owner
    /// (`the claim service`).
    ///
    /// ```
    /// use dovetail_service_kit::store::{RepairReport, SkipReason, Skipped};
    ///
    /// let report = RepairReport {
    ///     skipped: vec![Skipped { key: "clm-9".into(), reason: SkipReason::NotFound }],
    ///     ..RepairReport::default()
    /// };
    /// let outcome = report.into_outcome("the claim service", "claim");
    /// assert_eq!(
    ///     outcome.skipped,
    ///     [("clm-9".to_owned(), "the claim service has no such claim: remove it at the replica".to_owned())]
    /// );
    /// ```
    pub fn into_outcome(self, service: &str, aggregate: &str) -> RepairOutcome {
        RepairOutcome {
            republished: self.republished.into_iter().map(|r| r.key).collect(),
            skipped: self
                .skipped
                .into_iter()
                .map(|skipped| {
                    let reason = match skipped.reason {
                        SkipReason::NotFound => {
                            format!("{service} has no such {aggregate}: remove it at the replica")
                        }
                        SkipReason::Refused(why) => format!("the outbox refused: {why}"),
                    };
                    (skipped.key, reason)
                })
                .collect(),
            deferred: self.deferred,
        }
    }
}

/// The future a [`Repair`](dovetail_consistency::Repair) implementation answers.
pub type RunnerRepair<'a> =
    Pin<Box<dyn Future<Output = Result<RepairOutcome, BoxError>> + Send + 'a>>;

/// An owner's [`Repair`](dovetail_consistency::Repair) for a consistency runner, from its
/// store's repair: `repair` gets the run's id as the causation id of what it republishes,
/// and its report becomes the runner's outcome
/// ([`into_outcome`](RepairReport::into_outcome), with `service` and `aggregate`).
///
/// ```
/// use dovetail_consistency::{BoxError, Repair, RepairOutcome, RunId};
/// use dovetail_service_kit::store::{RepairReport, RunnerRepair, runner_repair};
///
/// struct Owner;
///
/// impl Repair for Owner {
///     fn repair(&self, _keys: Vec<String>, run: RunId) -> RunnerRepair<'_> {
///         runner_repair(run, "the claim service", "claim", |_cause| async {
///             Ok(RepairReport::default())
///         })
///     }
/// }
/// ```
pub fn runner_repair<'a, F, Fut>(
    run: RunId,
    service: &'a str,
    aggregate: &'a str,
    repair: F,
) -> RunnerRepair<'a>
where
    F: FnOnce(EventId) -> Fut + Send + 'a,
    Fut: Future<Output = Result<RepairReport, StoreError>> + Send + 'a,
{
    Box::pin(async move {
        let cause = EventId::from_uuid(run.as_uuid())?;
        let report = repair(cause).await?;
        Ok(report.into_outcome(service, aggregate))
    })
}

/// Where a SQLite store keeps an aggregate's snapshots: the table, its key column, and
/// the columns `version` (integer) and `snapshot` (the JSON) every service's table has.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRows {
    /// The table, such as `claims`.
    pub table: &'static str,
    /// Its key column, such as `claim_id`.
    pub key: &'static str,
}

/// Republishes the current snapshot of each of the first [`REPAIR_BATCH`] distinct
/// `keys` of `rows` in one unit of work of `outbox` on `connection`, each with `run` as
/// its causation id: `republish` adds the service's event for the snapshot at its
/// version (with the metadata given) and answers its type.
///
/// Each row is read in the unit of work's transaction, which holds the write lock until
/// commit: no write comes between the version read and the republish. A key with no row
/// is [`SkipReason::NotFound`]; one the outbox refuses (an invalid event, a version that
/// is not the outbox's) is [`SkipReason::Refused`], and the others go ahead.
///
/// # Errors
/// [`StoreError::Backend`] when SQLite fails or a snapshot does not parse; nothing is
/// republished then.
pub fn republish_rows<S, F>(
    connection: &mut Connection,
    outbox: &SqliteOutbox,
    rows: SnapshotRows,
    keys: Vec<String>,
    run: EventId,
    mut republish: F,
) -> Result<RepairReport, StoreError>
where
    S: DeserializeOwned,
    F: FnMut(&mut SqliteUnitOfWork<'_>, S, u64, EventMetadata) -> Result<&'static str, OutboxError>,
{
    let (mut report, batch) = RepairReport::start(keys);
    let select = format!(
        "SELECT version, snapshot FROM {} WHERE {} = ?1",
        rows.table, rows.key
    );
    let mut unit = outbox.begin(connection)?;
    let mut pending = Vec::new();
    for key in batch {
        let row: Option<(i64, String)> = unit
            .transaction()
            .prepare_cached(&select)?
            .query_row([&key], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((version, json)) = row else {
            report.skipped.push(Skipped {
                key,
                reason: SkipReason::NotFound,
            });
            continue;
        };
        let snapshot: S = serde_json::from_str(&json).map_err(|error| {
            StoreError::backend(format!("reading {key} from {}", rows.table), error)
        })?;
        // The row's version, which the check saw, and which the outbox must hold.
        let version = u64::try_from(version).unwrap_or(0);
        match republish(&mut unit, snapshot, version, metadata(run)) {
            Ok(event_type) => pending.push((key, version, event_type)),
            Err(error @ (OutboxError::InvalidEvent { .. } | OutboxError::Conflict { .. })) => {
                report.skipped.push(Skipped {
                    key,
                    reason: SkipReason::refused(&error),
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    let committed = unit.commit()?;
    // One envelope per republished aggregate, in the order of the republishes.
    report.republished = pending
        .into_iter()
        .zip(committed.envelopes())
        .map(|((key, version, event_type), envelope)| Republished {
            key,
            version,
            event_type,
            event_id: envelope.id(),
        })
        .collect();
    Ok(report)
}

/// The metadata of an event republished by the check run `run`: its causation id.
pub(super) fn metadata(run: EventId) -> EventMetadata {
    EventMetadata {
        causation_id: Some(run),
        ..EventMetadata::default()
    }
}

#[cfg(test)]
mod tests {
    use super::{REPAIR_BATCH, RepairReport, SkipReason};

    #[test]
    fn a_batch_keeps_the_first_distinct_keys_in_order_and_defers_the_distinct_rest() {
        let mut keys: Vec<String> = (0..REPAIR_BATCH + 2).map(|i| format!("k-{i:03}")).collect();
        keys.insert(3, "k-001".into());
        keys.push(format!("k-{:03}", REPAIR_BATCH + 1));
        let (report, batch) = RepairReport::start(keys);
        let expected: Vec<String> = (0..REPAIR_BATCH).map(|i| format!("k-{i:03}")).collect();
        assert_eq!(batch, expected);
        assert_eq!(
            report.deferred,
            [
                format!("k-{REPAIR_BATCH:03}"),
                format!("k-{:03}", REPAIR_BATCH + 1)
            ]
        );
    }

    #[test]
    fn a_refusal_keeps_the_messages_of_its_sources() {
        #[derive(Debug, thiserror::Error)]
        #[error("republish refused")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("never stamped"));
        assert_eq!(
            SkipReason::refused(&error),
            SkipReason::Refused("republish refused: never stamped".into())
        );
    }
}
