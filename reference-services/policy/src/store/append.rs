//! How a [`PolicyChange`]'s event goes into either backend's unit of work.

use dovetail_contracts::policy::AGGREGATE_TYPE;
use dovetail_events::envelope::{AggregateRef, EventMetadata};
use dovetail_outbox::{AppendEvents, ExpectedVersion, OutboxError};

use crate::domain::PolicyChange;

impl PolicyChange {
    /// Appends this change's event for its policy, expecting the policy at `expected`.
    pub(crate) fn append_to(
        &self,
        unit: &mut impl AppendEvents,
        expected: ExpectedVersion,
    ) -> Result<(), OutboxError> {
        let policy_id = match self {
            Self::Drafted(event) => &event.policy.policy_id,
            Self::Issued(event) => &event.policy.policy_id,
            Self::Updated(event) => &event.policy.policy_id,
            Self::Cancelled(event) => &event.policy.policy_id,
        };
        let aggregate =
            AggregateRef::parse(AGGREGATE_TYPE, policy_id).map_err(OutboxError::invalid_event)?;
        match self {
            Self::Drafted(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Issued(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Updated(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
            Self::Cancelled(event) => {
                unit.append_event(aggregate, expected, event, EventMetadata::default())
            }
        }
    }
}
