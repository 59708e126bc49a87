//! How a [`ClaimChange`]'s event goes into either backend's unit of work.

use dovetail_contracts::claim::AGGREGATE_TYPE;
use dovetail_events::envelope::AggregateRef;
use dovetail_outbox::{ExpectedVersion, OutboxError};
use dovetail_service_kit::store::AppendEvent;

use crate::domain::ClaimChange;

impl ClaimChange {
    /// Appends this change's event for its claim, expecting the claim at `expected`.
    pub(crate) fn append_to(
        &self,
        unit: &mut impl AppendEvent,
        expected: ExpectedVersion,
    ) -> Result<(), OutboxError> {
        let aggregate = AggregateRef::parse(AGGREGATE_TYPE, &self.claim().claim_id)
            .map_err(|error| OutboxError::InvalidEvent(error.to_string()))?;
        match self {
            Self::Filed(event) => unit.append_event(aggregate, expected, event),
            Self::ReviewStarted(event) => unit.append_event(aggregate, expected, event),
            Self::Approved(event) => unit.append_event(aggregate, expected, event),
            Self::Rejected(event) => unit.append_event(aggregate, expected, event),
            Self::Paid(event) => unit.append_event(aggregate, expected, event),
        }
    }
}
