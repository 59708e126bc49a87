//! The rules both units of work check before republishing, in one place: which versions
//! an aggregate's current state may be sent again at, and the errors that say why not.

use dovetail_events::envelope::AggregateRef;

use crate::OutboxError;

/// `InvalidEvent`: `aggregate` cannot be republished, `how` says why.
pub(crate) fn refused(aggregate: &AggregateRef, how: &str) -> OutboxError {
    OutboxError::invalid_event(format!(
        "{}/{} {how}",
        aggregate.aggregate_type.as_str(),
        aggregate.id.as_str()
    ))
}

/// `republish` of `aggregate` at `version`, whose version the outbox keeps (`kept`, 0
/// when it has no events): only at `kept` itself. Above it is a sequence never stamped
/// (`InvalidEvent`), below it a state already replaced (`Conflict`).
pub(crate) fn check_kept(
    aggregate: &AggregateRef,
    version: u64,
    kept: u64,
) -> Result<(), OutboxError> {
    if kept == 0 {
        return Err(refused(
            aggregate,
            "has no events in this outbox, so nothing to republish (an aggregate the \
             service versions itself goes through republish_at)",
        ));
    }
    if version > kept {
        return Err(refused(
            aggregate,
            &format!(
                "is at version {kept}: {version} was never stamped, so it cannot be \
                 republished; republish at {kept}"
            ),
        ));
    }
    if version < kept {
        return Err(conflict(
            aggregate,
            format!("{version} (the republished snapshot's)"),
            kept,
        ));
    }
    Ok(())
}

/// `republish_at` of `aggregate` at `version`, the service's own: at least 1.
pub(crate) fn check_own(aggregate: &AggregateRef, version: u64) -> Result<(), OutboxError> {
    if version == 0 {
        return Err(refused(
            aggregate,
            "cannot be republished at version 0: an aggregate with no events has \
             nothing to republish",
        ));
    }
    Ok(())
}

/// `Conflict`: the outbox keeps `kept` for `aggregate`, above the `expected` republished.
pub(crate) fn conflict(aggregate: &AggregateRef, expected: String, kept: u64) -> OutboxError {
    OutboxError::Conflict {
        aggregate_type: aggregate.aggregate_type.as_str().to_owned(),
        aggregate_id: aggregate.id.as_str().to_owned(),
        expected,
        actual: kept,
    }
}
