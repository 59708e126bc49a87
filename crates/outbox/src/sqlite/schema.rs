//! The outbox's SQLite tables, and the conversions every SQLite part of the crate shares:
//! times as Unix milliseconds, unsigned numbers as SQLite's `i64`, errors as
//! [`OutboxError::Storage`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::OutboxError;

/// The tables, created idempotently.
///
/// - `dovetail_outbox`: one row per committed, unpublished event. `position` (the rowid)
///   is commit order among the rows present: a new row always gets a higher one than every
///   row left. A position may come back after every newer row was published and deleted;
///   that is safe because only the lease holder deletes rows and every mark is fenced.
///   Neither `AUTOINCREMENT` nor a unique index on `event_id` is kept: each costs a page
///   write per commit and guards nothing the unit of work can do (event ids are fresh
///   UUIDv7s), and the relay benchmark's unit-of-work ratio is what they would cost.
/// - `dovetail_outbox_blocking`: the rows that may hold back their aggregate (parked, or
///   failed with a retry time), by aggregate and position, for `fetch_ready`'s
///   `NOT EXISTS`. Partial, so that a commit, whose rows never block, does not write it.
/// - `dovetail_outbox_aggregates`: each aggregate's version, the last sequence it stamped.
/// - `dovetail_outbox_lease`: the relay lease of each outbox, with its fencing token.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dovetail_outbox (
    position        INTEGER PRIMARY KEY,
    event_id        TEXT    NOT NULL,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    envelope        TEXT    NOT NULL,
    committed_at_ms INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    retry_at_ms     INTEGER,
    parked          INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX IF NOT EXISTS dovetail_outbox_blocking
    ON dovetail_outbox (aggregate_type, aggregate_id, position)
    WHERE parked <> 0 OR retry_at_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS dovetail_outbox_aggregates (
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dovetail_outbox_lease (
    name          TEXT    NOT NULL PRIMARY KEY,
    owner         TEXT,
    fencing_token INTEGER NOT NULL,
    held_until_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Maps the errors of SQLite (and of the blocking pool) to [`OutboxError::Storage`],
/// naming the operation that failed.
pub(crate) trait OrStorage<T> {
    /// The value, or [`OutboxError::Storage`] of `operation` with the error as its
    /// source.
    fn or_storage(self, operation: &str) -> Result<T, OutboxError>;
}

impl<T, E> OrStorage<T> for Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn or_storage(self, operation: &str) -> Result<T, OutboxError> {
        self.map_err(|error| OutboxError::storage(operation, error))
    }
}

/// `time` as Unix milliseconds; times before 1970 as 0, after year 292 million as max.
pub(crate) fn epoch_ms(time: SystemTime) -> i64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The current time as Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    epoch_ms(SystemTime::now())
}

/// Unix milliseconds as a time; negative values as the epoch.
pub(crate) fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(to_u64(ms))
}

/// An unsigned number (a position, a version, a token) as SQLite's `i64`, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An `i64` from SQLite as `u64`, negative values as 0.
pub(crate) fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_millisecond_precision() {
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(time_of(epoch_ms(time)), time);
        assert_eq!(epoch_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(time_of(-5), UNIX_EPOCH);
    }

    #[test]
    fn numbers_saturate_instead_of_wrapping() {
        assert_eq!(to_i64(u64::MAX), i64::MAX);
        assert_eq!(to_u64(-1), 0);
        assert_eq!(to_u64(to_i64(42)), 42);
    }

    #[test]
    fn storage_errors_name_the_operation() {
        let failed: Result<(), &str> = Err("database is locked");
        let error = failed.or_storage("fetch_ready").unwrap_err();
        assert!(matches!(
            &error,
            OutboxError::Storage { operation, source }
                if operation == "fetch_ready" && source.to_string() == "database is locked"
        ));
    }
}
