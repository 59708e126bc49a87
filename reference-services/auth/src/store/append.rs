//! How a [`UserChange`]'s event goes into the outbox's unit of work.

use dovetail_contracts::user::AGGREGATE_TYPE;
use dovetail_events::envelope::{AggregateRef, EventMetadata};
use dovetail_outbox::{AppendEvents, ExpectedVersion, OutboxError};

use crate::domain::UserChange;

impl UserChange {
    /// Appends this change's event for its user, expecting the user at `expected`.
    pub(crate) fn append_to(
        &self,
        unit: &mut impl AppendEvents,
        expected: ExpectedVersion,
    ) -> Result<(), OutboxError> {
        let aggregate = AggregateRef::parse(AGGREGATE_TYPE, &self.snapshot().user_id)
            .map_err(OutboxError::invalid_event)?;
        match self {
            Self::Registered(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Disabled(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::RoleChanged(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
        }
    }
}
