//! [`DynamoDbUnitOfWork`]: a service's writes and the events about them in one
//! `TransactWriteItems`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    ATTEMPTS, COMMITTED_AT, DynamoDbOutboxConfig, ENVELOPE, EVENT_ID, LAST_ERROR, PARKED, PENDING,
    RETRY_AT, STATE, VERSION, budget, envelope_sort_key, epoch_ms, number, number_of,
    shard_partition, storage,
};
use crate::{Committed, ExpectedVersion, OutboxError};

mod republish;

use crate::republish::refused;
use republish::Republish;

/// How often a commit re-reads the versions of `Any` aggregates when another writer
/// changed one between the read and the transaction.
const ANY_ATTEMPTS: u32 = 5;

/// How often a commit sends its transaction again when DynamoDB cancelled it for a
/// conflict with another transaction on one of its items (`TransactionConflict`: two
/// writes of one hot item, such as a consistency digest, at once).
const CONFLICT_ATTEMPTS: u32 = 6;

const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailed";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// A service's writes and the events about them, committed together in one DynamoDB
/// `TransactWriteItems`, or not at all.
///
/// Begun by [`DynamoDbOutbox::unit_of_work`](super::DynamoDbOutbox::unit_of_work). Add the
/// business actions with [`write`](Self::write) (any `Put`, `Update`, `Delete` or
/// `ConditionCheck`, with their own conditions), events with [`append`](Self::append),
/// then [`commit`](Self::commit). Nothing is sent before `commit`; dropping the unit of
/// work sends nothing.
///
/// The transaction holds, in this order: the business actions, one `Update` of each
/// aggregate's version item (conditional on the expected version; a `ConditionCheck` of
/// it for an aggregate [republished](Self::republish)), and one `Put` per event. A
/// transaction DynamoDB cancels for a conflict with another one on the same item
/// (`TransactionConflict`) is sent again, a few times, after a short pause. It must fit DynamoDB's budget of 100 actions and 4 MB: `commit` counts it first
/// and refuses with [`OutboxError::TooLarge`] without sending anything.
///
/// # Example
/// ```no_run
/// use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
/// use dovetail_events::envelope::{AggregateRef, Event, EventMetadata};
/// use dovetail_outbox::dynamodb::DynamoDbOutbox;
/// use dovetail_outbox::{ExpectedVersion, OutboxError};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct ClaimApproved { claim_id: String }
/// impl Event for ClaimApproved {
///     const TYPE: &'static str = "claim.approved";
///     const VERSION: u32 = 1;
/// }
///
/// # async fn example(outbox: DynamoDbOutbox) -> Result<(), Box<dyn std::error::Error>> {
/// let claim = AggregateRef::parse("claim", "c-1")?;
/// let approve = Update::builder()
///     .table_name(&outbox.config().table)
///     .key("pk", AttributeValue::S("claim#c-1".into()))
///     .key("sk", AttributeValue::S("claim".into()))
///     .update_expression("SET #status = :approved")
///     .expression_attribute_names("#status", "status")
///     .expression_attribute_values(":approved", AttributeValue::S("approved".into()))
///     .build()?;
/// let mut uow = outbox.unit_of_work();
/// uow.write(TransactWriteItem::builder().update(approve).build())
///     .append(
///         claim.clone(),
///         ExpectedVersion::Exactly(3), // from the request's If-Match
///         &ClaimApproved { claim_id: "c-1".into() },
///         EventMetadata::default(),
///     )?;
/// match uow.commit().await {
///     Ok(committed) => println!("ETag: \"{}\"", committed.version(&claim).unwrap_or(0)),
///     Err(OutboxError::Conflict { actual, .. }) => println!("412: the claim is at {actual}"),
///     Err(error) => return Err(error.into()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a unit of work sends nothing unless it is committed"]
pub struct DynamoDbUnitOfWork {
    client: Client,
    config: Arc<DynamoDbOutboxConfig>,
    commits: Arc<Notify>,
    /// The business actions, in the order they were given.
    writes: Vec<TransactWriteItem>,
    /// The aggregates appended to, in the order of their first event.
    aggregates: Vec<Appending>,
    /// Where each aggregate is in `aggregates`.
    index: HashMap<AggregateRef, usize>,
    /// The events in the order they were appended, each with its aggregate's index; their
    /// sequences are stamped at commit.
    events: Vec<(usize, Envelope)>,
    /// The transaction last built, kept so that committing again resends exactly it.
    prepared: Option<Prepared>,
    /// How many transactions were built (each gets its own request token).
    prepares: u32,
    /// The request token's base when there are no events.
    token_base: Uuid,
}

/// What a unit of work appends to one aggregate.
#[derive(Debug)]
struct Appending {
    aggregate: AggregateRef,
    /// The distinct expectations other than `Any`, in the order they were given.
    expected: Vec<ExpectedVersion>,
    /// How many events.
    count: u64,
    /// Set when its one event is a republish ([`DynamoDbUnitOfWork::republish`]): the
    /// sequence it is stamped with, and how the commit checks the version item.
    republished: Option<Republish>,
}

/// A transaction ready to send, and what it commits.
#[derive(Debug, Clone)]
struct Prepared {
    actions: Vec<TransactWriteItem>,
    token: String,
    committed: Committed,
    /// For each aggregate, the expectation its condition checks (`Any` when read first).
    expectations: Vec<ExpectedVersion>,
}

impl DynamoDbUnitOfWork {
    pub(super) fn new(
        client: Client,
        config: Arc<DynamoDbOutboxConfig>,
        commits: Arc<Notify>,
    ) -> Self {
        Self {
            client,
            config,
            commits,
            writes: Vec::new(),
            aggregates: Vec::new(),
            index: HashMap::new(),
            events: Vec::new(),
            prepared: None,
            prepares: 0,
            token_base: Uuid::now_v7(),
        }
    }

    /// Adds a business action (`Put`, `Update`, `Delete`, `ConditionCheck` on any table)
    /// to the transaction. Its condition, if it has one, decides for the whole unit of
    /// work: when it fails, nothing is committed, events included.
    pub fn write(&mut self, action: TransactWriteItem) -> &mut Self {
        self.writes.push(action);
        self.prepared = None;
        self
    }

    /// Adds `event` about `aggregate`, to be committed with the unit of work.
    ///
    /// The event is enveloped now (a new event id, the current time, `metadata`) and gets
    /// its sequence at commit: its aggregate's version plus one, then plus two for the
    /// next event of the same aggregate in this unit of work, and so on.
    ///
    /// `expected` is the version the service read the aggregate at:
    /// [`ExpectedVersion::New`] for an aggregate being created,
    /// [`ExpectedVersion::Exactly`] with the version it loaded, [`ExpectedVersion::Any`]
    /// for events that do not depend on the aggregate's state (the commit reads the
    /// version then, and tries again a few times if another writer changes it meanwhile).
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when `event` does not serialize to JSON, or the
    /// aggregate is [republished](Self::republish) in this unit of work. The unit of work
    /// stays usable, without that event.
    pub fn append<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        expected: ExpectedVersion,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<&mut Self, OutboxError> {
        let envelope = Envelope::new(
            self.config.source.clone(),
            aggregate.clone(),
            Sequence::FIRST,
            event,
            metadata,
        )
        .map_err(OutboxError::invalid_event)?;
        let index = if let Some(&index) = self.index.get(&aggregate) {
            if self.aggregates[index].republished.is_some() {
                return Err(refused(
                    &aggregate,
                    "is republished in this unit of work; append its next events in another one",
                ));
            }
            index
        } else {
            self.aggregates.push(Appending {
                aggregate: aggregate.clone(),
                expected: Vec::new(),
                count: 0,
                republished: None,
            });
            self.index.insert(aggregate, self.aggregates.len() - 1);
            self.aggregates.len() - 1
        };
        let appending = &mut self.aggregates[index];
        if expected != ExpectedVersion::Any
            && !appending
                .expected
                .iter()
                .any(|&known| number_of_expected(known) == number_of_expected(expected))
        {
            appending.expected.push(expected);
        }
        appending.count += 1;
        self.events.push((index, envelope));
        self.prepared = None;
        Ok(self)
    }

    /// How many actions the transaction will have: business writes, one per aggregate,
    /// one per event.
    pub fn action_count(&self) -> usize {
        self.writes.len() + self.aggregates.len() + self.events.len()
    }

    /// Checks the budget, reads the versions of `Any` aggregates, stamps the sequences,
    /// and commits everything in one `TransactWriteItems`; then signals the relay
    /// ([`DynamoDbOutbox::commits`](super::DynamoDbOutbox::commits)).
    ///
    /// The request carries a `ClientRequestToken` derived from the first event's id, so
    /// the SDK's own retries cannot commit twice. After an [`OutboxError::Storage`]
    /// error, calling `commit` again resends the very same transaction with the same
    /// token: if the first one did commit after all (a timeout after DynamoDB applied
    /// it), DynamoDB answers with success and applies nothing again (within its
    /// ten-minute idempotency window). Calling it again after success answers the same
    /// [`Committed`] the same way.
    ///
    /// # Errors
    /// - [`OutboxError::TooLarge`] when the transaction would exceed 100 actions or
    ///   4 MB; nothing is sent. Split the unit of work.
    /// - [`OutboxError::Conflict`] when an aggregate's version is not the expected one
    ///   (with the version found); nothing is committed.
    /// - [`OutboxError::BusinessConditionFailed`] when the condition of a business action
    ///   fails (with the actions' indexes); nothing is committed.
    /// - [`OutboxError::Storage`] when DynamoDB fails or refuses; nothing is committed.
    pub async fn commit(&mut self) -> Result<Committed, OutboxError> {
        if self.action_count() == 0 {
            return Ok(Committed::default());
        }
        // Counted before anything is read or sent; the size once the items are built.
        budget::check_count(self.action_count())?;
        let (mut any_moved, mut conflicts) = (0, 0);
        loop {
            let prepared = match self.prepared.take() {
                Some(prepared) => prepared,
                None => self.prepare().await?,
            };
            match self.send(&prepared).await {
                Ok(()) => {
                    if !prepared.committed.envelopes().is_empty() {
                        self.commits.notify_waiters();
                        self.commits.notify_one();
                    }
                    let committed = prepared.committed.clone();
                    self.prepared = Some(prepared);
                    return Ok(committed);
                }
                Err(Sent::Conflicted) => {
                    // Another transaction held one of the items; nothing was committed.
                    // Built again (with a new request token) after a short pause.
                    conflicts += 1;
                    if conflicts >= CONFLICT_ATTEMPTS {
                        return Err(OutboxError::storage(
                            "committing a unit of work",
                            format!(
                                "DynamoDB cancelled it {CONFLICT_ATTEMPTS} times for conflicts \
                                 with other transactions on the same items \
                                 (TransactionConflict); nothing was committed, retry it"
                            ),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(10 << conflicts)).await;
                }
                Err(Sent::Cancelled(reasons)) => {
                    if self.refused_by_any(&prepared, &reasons)? {
                        // An `Any` aggregate moved: read again and retry.
                        any_moved += 1;
                        if any_moved >= ANY_ATTEMPTS {
                            return Err(OutboxError::storage(
                                "committing a unit of work",
                                format!(
                                    "the version of an aggregate appended with \
                                     ExpectedVersion::Any kept changing; gave up after \
                                     {ANY_ATTEMPTS} attempts (retry the unit of work)"
                                ),
                            ));
                        }
                        continue;
                    }
                    return Err(self.explain(&prepared, &reasons));
                }
                Err(Sent::Failed(error)) => {
                    // Kept: committing again resends it with the same token.
                    self.prepared = Some(prepared);
                    return Err(error);
                }
            }
        }
    }

    /// Builds the transaction: reads versions where needed, stamps the sequences.
    async fn prepare(&mut self) -> Result<Prepared, OutboxError> {
        let mut versions = Vec::with_capacity(self.aggregates.len());
        let mut expectations = Vec::with_capacity(self.aggregates.len());
        for appending in &self.aggregates {
            if let Some(republish) = appending.republished {
                // Checked by the transaction's ConditionCheck, not read.
                expectations.push(ExpectedVersion::Exactly(republish.version));
                versions.push(republish.version);
                continue;
            }
            let (expected, before) = match appending.expected.as_slice() {
                [] => (
                    ExpectedVersion::Any,
                    self.read_version(&appending.aggregate).await?,
                ),
                [only] => (*only, number_of_expected(*only).unwrap_or(0)),
                [..] => {
                    // Appends that expected different versions cannot all be right.
                    let actual = self.read_version(&appending.aggregate).await?;
                    let wrong = appending
                        .expected
                        .iter()
                        .find(|&&known| number_of_expected(known) != Some(actual))
                        .copied()
                        .unwrap_or(ExpectedVersion::Any);
                    return Err(conflict(&appending.aggregate, wrong, actual));
                }
            };
            expectations.push(expected);
            versions.push(before);
        }

        let committed_at = number(epoch_ms(SystemTime::now()));
        let mut actions = self.writes.clone();
        let mut next_sequence = Vec::with_capacity(versions.len());
        let mut new_versions = Vec::with_capacity(versions.len());
        let mut republished = Vec::new();
        for (appending, &before) in self.aggregates.iter().zip(&versions) {
            if let Some(republish) = appending.republished {
                actions.push(self.version_check(&appending.aggregate, republish)?);
                next_sequence.push(republish.version);
                new_versions.push((appending.aggregate.clone(), republish.version));
                continue;
            }
            actions.push(self.version_update(&appending.aggregate, before, appending.count)?);
            next_sequence.push(before + 1);
            new_versions.push((appending.aggregate.clone(), before + appending.count));
        }
        let mut envelopes = Vec::with_capacity(self.events.len());
        for (index, envelope) in &self.events {
            let is_republish = self.aggregates[*index].republished.is_some();
            let envelope = if is_republish {
                // Stamped when it was republished.
                republished.push(envelope.id());
                envelope.clone()
            } else {
                let sequence =
                    Sequence::new(next_sequence[*index]).map_err(OutboxError::invalid_event)?;
                next_sequence[*index] += 1;
                stamp(envelope.clone(), sequence)?
            };
            actions.push(self.outbox_put(&envelope, is_republish, &committed_at)?);
            envelopes.push(envelope);
        }
        budget::check(&actions)?;

        let base = self
            .events
            .first()
            .map_or(self.token_base, |(_, envelope)| envelope.id().as_uuid());
        let token = format!("{}-{}", base.simple(), self.prepares);
        self.prepares += 1;
        Ok(Prepared {
            actions,
            token,
            committed: Committed::unnumbered(envelopes, new_versions, republished),
            expectations,
        })
    }

    /// The aggregate's version, read strongly consistently; 0 when it has none.
    async fn read_version(&self, aggregate: &AggregateRef) -> Result<u64, OutboxError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(self.config.version_key(aggregate)))
            .consistent_read(true)
            .projection_expression("#version")
            .expression_attribute_names("#version", VERSION)
            .send()
            .await
            .map_err(|error| storage("reading an aggregate's version", error))?;
        Ok(output
            .item()
            .and_then(|item| number_of(item, VERSION))
            .unwrap_or(0))
    }

    /// The update of an aggregate's version item from `before` to `before + count`,
    /// conditional on it being at `before` (absent for 0).
    fn version_update(
        &self,
        aggregate: &AggregateRef,
        before: u64,
        count: u64,
    ) -> Result<TransactWriteItem, OutboxError> {
        let mut update = Update::builder()
            .table_name(&self.config.table)
            .set_key(Some(self.config.version_key(aggregate)))
            .update_expression("SET #version = :version")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":version", number(before + count))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        update = if before == 0 {
            update
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", &self.config.partition_key)
        } else {
            update
                .condition_expression("#version = :before")
                .expression_attribute_values(":before", number(before))
        };
        let update = update
            .build()
            .map_err(|error| storage("building a version update", error))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The check of a republished aggregate's version item: at the republished version
    /// (`republish`), or absent or not above it (`republish_at`).
    fn version_check(
        &self,
        aggregate: &AggregateRef,
        republish: Republish,
    ) -> Result<TransactWriteItem, OutboxError> {
        let check = ConditionCheck::builder()
            .table_name(&self.config.table)
            .set_key(Some(self.config.version_key(aggregate)))
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":version", number(republish.version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let check = if republish.exact {
            check.condition_expression("#version = :version")
        } else {
            check
                .condition_expression("attribute_not_exists(#pk) OR #version <= :version")
                .expression_attribute_names("#pk", &self.config.partition_key)
        };
        let check = check
            .build()
            .map_err(|error| storage("building a version check", error))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The `Put` of an event's outbox item, keyed apart when it is `republished`.
    fn outbox_put(
        &self,
        envelope: &Envelope,
        republished: bool,
        committed_at: &AttributeValue,
    ) -> Result<TransactWriteItem, OutboxError> {
        let aggregate_type = envelope.aggregate_type().as_str();
        let aggregate_id = envelope.aggregate_id().as_str();
        let shard = self.config.shard_of(aggregate_type, aggregate_id);
        let json = serde_json::to_string(envelope).map_err(OutboxError::invalid_event)?;
        let mut item = self.config.key(
            shard_partition(shard),
            envelope_sort_key(envelope, republished),
        );
        item.extend([
            (ENVELOPE.to_owned(), AttributeValue::S(json)),
            (
                EVENT_ID.to_owned(),
                AttributeValue::S(envelope.id().to_string()),
            ),
            (COMMITTED_AT.to_owned(), committed_at.clone()),
            (STATE.to_owned(), AttributeValue::S(PENDING.to_owned())),
            (ATTEMPTS.to_owned(), number(0)),
            (RETRY_AT.to_owned(), AttributeValue::Null(true)),
            (PARKED.to_owned(), AttributeValue::Bool(false)),
            (LAST_ERROR.to_owned(), AttributeValue::Null(true)),
        ]);
        let put = Put::builder()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", &self.config.partition_key)
            .build()
            .map_err(|error| storage("building an outbox item", error))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn send(&self, prepared: &Prepared) -> Result<(), Sent> {
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(prepared.actions.clone()))
            .client_request_token(&prepared.token)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|reason| reason.code() == Some(CONDITIONAL_CHECK_FAILED)) =>
                {
                    Err(Sent::Cancelled(cancelled.cancellation_reasons().to_vec()))
                }
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled))
                    if cancelled
                        .cancellation_reasons()
                        .iter()
                        .any(|reason| reason.code() == Some(TRANSACTION_CONFLICT)) =>
                {
                    Err(Sent::Conflicted)
                }
                Some(TransactWriteItemsError::IdempotentParameterMismatchException(_)) => {
                    Err(Sent::Failed(OutboxError::storage(
                        "committing a unit of work",
                        "DynamoDB saw this request token with other \
                         items (a bug: the unit of work changed between attempts); begin a new \
                         unit of work"
                            .to_owned(),
                    )))
                }
                _ => Err(Sent::Failed(storage(
                    "committing a unit of work (nothing was committed unless a retry of this \
                     commit says so; retry it)",
                    error,
                ))),
            },
        }
    }

    /// Whether the cancellation is only `Any` aggregates whose version moved (worth a
    /// retry); a conflict of an aggregate with a stated expectation is an error.
    fn refused_by_any(
        &self,
        prepared: &Prepared,
        reasons: &[CancellationReason],
    ) -> Result<bool, OutboxError> {
        let first = self.writes.len();
        let mut any_moved = false;
        for (offset, appending) in self.aggregates.iter().enumerate() {
            let Some(reason) = reasons.get(first + offset) else {
                continue;
            };
            if reason.code() != Some(CONDITIONAL_CHECK_FAILED) {
                continue;
            }
            let expected = prepared.expectations[offset];
            if expected == ExpectedVersion::Any {
                any_moved = true;
            } else {
                let actual = reason
                    .item()
                    .and_then(|item| number_of(item, VERSION))
                    .unwrap_or(0);
                return Err(conflict(&appending.aggregate, expected, actual));
            }
        }
        let business_refused = reasons[..first.min(reasons.len())]
            .iter()
            .any(|reason| reason.code() == Some(CONDITIONAL_CHECK_FAILED));
        Ok(any_moved && !business_refused)
    }

    /// The error for a cancellation that is not a version conflict: the business writes'
    /// conditions when any failed, else what else refused.
    fn explain(&self, prepared: &Prepared, reasons: &[CancellationReason]) -> OutboxError {
        let business: Vec<(usize, &CancellationReason)> = reasons
            .iter()
            .enumerate()
            .take(self.writes.len())
            .filter(|(_, reason)| reason.code() == Some(CONDITIONAL_CHECK_FAILED))
            .collect();
        if !business.is_empty() {
            let detail = business
                .iter()
                .map(|(index, reason)| {
                    format!(
                        "{index}: {}",
                        reason.message().unwrap_or("ConditionalCheckFailed")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return OutboxError::BusinessConditionFailed {
                writes: business.iter().map(|(index, _)| *index).collect(),
                detail,
            };
        }
        let first_event = self.writes.len() + self.aggregates.len();
        let refused: Vec<String> = reasons
            .iter()
            .enumerate()
            .filter(|(_, reason)| reason.code() == Some(CONDITIONAL_CHECK_FAILED))
            .map(|(index, reason)| {
                let what = if index < self.writes.len() {
                    format!("business write {index}")
                } else if index < first_event {
                    format!("version item at action {index}")
                } else {
                    let event = prepared
                        .committed
                        .envelopes()
                        .get(index - first_event)
                        .map(|envelope| envelope.id().to_string())
                        .unwrap_or_default();
                    format!(
                        "outbox item of event {event} (already exists: was a version item deleted?)"
                    )
                };
                match reason.message() {
                    Some(message) => format!("{what} ({message})"),
                    None => what,
                }
            })
            .collect();
        OutboxError::storage(
            "committing a unit of work",
            format!(
                "the condition of {} failed, so nothing was committed; \
             reload what the condition checks and decide again",
                refused.join(", ")
            ),
        )
    }
}

/// How a send went wrong.
enum Sent {
    /// The transaction was cancelled because conditions failed; one reason per action.
    Cancelled(Vec<CancellationReason>),
    /// The transaction was cancelled for a conflict with another transaction on one of
    /// its items, and no condition failed: worth sending again.
    Conflicted,
    /// Anything else.
    Failed(OutboxError),
}

/// The version an expectation requires, `None` for `Any`; `New` is version 0.
fn number_of_expected(expected: ExpectedVersion) -> Option<u64> {
    match expected {
        ExpectedVersion::New => Some(0),
        ExpectedVersion::Exactly(version) => Some(version),
        ExpectedVersion::Any => None,
    }
}

fn conflict(aggregate: &AggregateRef, expected: ExpectedVersion, actual: u64) -> OutboxError {
    OutboxError::Conflict {
        aggregate_type: aggregate.aggregate_type.as_str().to_owned(),
        aggregate_id: aggregate.id.as_str().to_owned(),
        expected: match expected {
            ExpectedVersion::New => "new (no events)".to_owned(),
            ExpectedVersion::Exactly(version) => version.to_string(),
            ExpectedVersion::Any => "any".to_owned(),
        },
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
