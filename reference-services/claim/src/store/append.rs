//! How a [`ClaimChange`]'s event goes into either backend's unit of work.

use dovetail_contracts::claim::AGGREGATE_TYPE;
use dovetail_events::envelope::{AggregateRef, EventMetadata};
use dovetail_outbox::{AppendEvents, ExpectedVersion, OutboxError};

use crate::domain::ClaimChange;

impl ClaimChange {
    /// Appends this change's event for its claim, expecting the claim at `expected`.
    pub(crate) fn append_to(
        &self,
        unit: &mut impl AppendEvents,
        expected: ExpectedVersion,
    ) -> Result<(), OutboxError> {
        let aggregate = AggregateRef::parse(AGGREGATE_TYPE, &self.claim().claim_id)
            .map_err(OutboxError::invalid_event)?;
        match self {
            Self::Filed(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::ReviewStarted(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Approved(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Rejected(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Paid(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
        }
    }
}
