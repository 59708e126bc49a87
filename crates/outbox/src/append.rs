//! [`AppendEvents`]: the one append port every unit of work implements, so a service
//! appends its events the same way whichever database it keeps them in.

use dovetail_events::envelope::{AggregateRef, Event, EventMetadata};

use crate::{ExpectedVersion, OutboxError};

/// A unit of work that events can be appended to: the SQLite one
/// ([`sqlite::SqliteUnitOfWork`](crate::sqlite::SqliteUnitOfWork)) and the DynamoDB one
/// ([`dynamodb::DynamoDbUnitOfWork`](crate::dynamodb::DynamoDbUnitOfWork)). Code that
/// turns a domain change into events takes `&mut impl AppendEvents` and works on both.
///
/// # Example
/// ```
/// use dovetail_events::envelope::{AggregateRef, Event, EventMetadata};
/// use dovetail_outbox::{AppendEvents, ExpectedVersion, OutboxError};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct PolicyIssued { policy_id: String }
/// impl Event for PolicyIssued {
///     const TYPE: &'static str = "policy.issued";
///     const VERSION: u32 = 1;
/// }
///
/// fn issue(unit: &mut impl AppendEvents, policy_id: &str) -> Result<(), OutboxError> {
///     let aggregate = AggregateRef::parse("policy", policy_id)
///         .map_err(OutboxError::invalid_event)?;
///     unit.append_event(
///         aggregate,
///         ExpectedVersion::New,
///         &PolicyIssued { policy_id: policy_id.to_owned() },
///         EventMetadata::default(),
///     )
/// }
/// ```
pub trait AppendEvents {
    /// Appends `event` for `aggregate`, which must be at `expected` when the unit of
    /// work commits; the event gets the aggregate's next sequence.
    ///
    /// # Errors
    /// [`OutboxError::InvalidEvent`] when the event cannot be encoded or is too large for
    /// the outbox; [`OutboxError::Conflict`] when the unit of work already knows the
    /// aggregate is elsewhere; the backend's own errors.
    fn append_event<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        expected: ExpectedVersion,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError>;
}

#[cfg(feature = "sqlite")]
impl AppendEvents for crate::sqlite::SqliteUnitOfWork<'_> {
    fn append_event<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        expected: ExpectedVersion,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        self.append(aggregate, expected, event, metadata)
    }
}

#[cfg(feature = "dynamodb")]
impl AppendEvents for crate::dynamodb::DynamoDbUnitOfWork {
    fn append_event<E: Event>(
        &mut self,
        aggregate: AggregateRef,
        expected: ExpectedVersion,
        event: &E,
        metadata: EventMetadata,
    ) -> Result<(), OutboxError> {
        self.append(aggregate, expected, event, metadata)
            .map(|_| ())
    }
}
