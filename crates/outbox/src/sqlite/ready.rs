//! The relay's reads and marks on the SQLite outbox, as plain functions on a connection,
//! so that a store call can chain them under one lock: ready records (in commit order,
//! held back behind a blocking record of their aggregate), the fence of a lease, and the
//! batch delete of published records.

use std::collections::HashSet;

use dovetail_events::envelope::Envelope;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::schema::{OrStorage, now_ms, to_i64, to_u64};
use crate::{OutboxError, OutboxRecord, Position, RelayLease};

/// The operation names in errors.
pub(super) const FETCHING: &str = "fetching ready records";
pub(super) const MARKING: &str = "marking records published";

/// `?3` is a JSON array of the positions to leave out (the records in flight): SQLite
/// skips them before the `NOT EXISTS` probe, instead of handing them over to be skipped.
pub(super) const SELECT_READY: &str = "
SELECT o.position, o.envelope, o.attempts
FROM dovetail_outbox o
WHERE o.position NOT IN (SELECT value FROM json_each(?3))
  AND o.parked = 0 AND (o.retry_at_ms IS NULL OR o.retry_at_ms <= ?1)
  AND NOT EXISTS (
      SELECT 1 FROM dovetail_outbox e
      WHERE e.aggregate_type = o.aggregate_type AND e.aggregate_id = o.aggregate_id
        AND e.position < o.position
        AND (e.parked <> 0 OR e.retry_at_ms IS NOT NULL)
        AND (e.parked <> 0 OR e.retry_at_ms > ?1))
ORDER BY o.position
LIMIT ?2";

const SELECT_FENCE: &str = "
SELECT 1 FROM dovetail_outbox_lease WHERE name = ?1 AND owner = ?2 AND fencing_token = ?3";

/// One statement for a whole batch: the positions come as a JSON array.
const DELETE_PUBLISHED: &str = "
DELETE FROM dovetail_outbox WHERE position IN (SELECT value FROM json_each(?1))";

/// The same for a batch whose positions are every position from `?1` to `?2`, the usual
/// case (positions of consecutive commits): one range of the table, no list to read.
const DELETE_PUBLISHED_RANGE: &str = "
DELETE FROM dovetail_outbox WHERE position BETWEEN ?1 AND ?2";

/// The positions of a batch of published records, as [`delete_published`] takes them.
#[derive(Debug, Clone)]
pub(super) enum Published {
    /// Every position from the first to the last, no other.
    Range(i64, i64),
    /// A JSON array of positions.
    List(String),
}

/// `positions` as [`delete_published`] takes them: a range when they are exactly the
/// integers from the lowest to the highest, in any order.
pub(super) fn published(positions: &[Position]) -> Result<Published, OutboxError> {
    let (Some(&low), Some(&high)) = (positions.iter().min(), positions.iter().max()) else {
        return Ok(Published::List("[]".to_owned()));
    };
    let distinct: HashSet<Position> = positions.iter().copied().collect();
    let span = high.checked_sub(low).and_then(|span| span.checked_add(1));
    if span.is_some_and(|span| u64::try_from(distinct.len()) == Ok(span)) {
        return Ok(Published::Range(to_i64(low), to_i64(high)));
    }
    Ok(Published::List(position_list(positions)?))
}

/// `positions` as a JSON array.
pub(super) fn position_list(positions: &[Position]) -> Result<String, OutboxError> {
    serde_json::to_string(positions).or_storage(MARKING)
}

/// Deletes the records at `positions`.
pub(super) fn delete_published(
    transaction: &Transaction<'_>,
    positions: &Published,
) -> rusqlite::Result<()> {
    match positions {
        Published::Range(low, high) => transaction
            .prepare_cached(DELETE_PUBLISHED_RANGE)?
            .execute(params![low, high])?,
        Published::List(list) => transaction
            .prepare_cached(DELETE_PUBLISHED)?
            .execute(params![list])?,
    };
    Ok(())
}

/// Runs `work` in a `BEGIN IMMEDIATE` transaction that first checks that `lease` is
/// current; a stale lease is [`OutboxError::LeaseLost`] and changes nothing.
pub(super) fn fenced<F>(
    connection: &mut Connection,
    lease_name: &str,
    lease: &RelayLease,
    operation: &str,
    work: F,
) -> Result<(), OutboxError>
where
    F: FnOnce(&Transaction<'_>) -> rusqlite::Result<()>,
{
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .or_storage(operation)?;
    let current = transaction
        .prepare_cached(SELECT_FENCE)
        .and_then(|mut statement| {
            statement
                .query_row(
                    params![lease_name, lease.owner, to_i64(lease.fencing_token)],
                    |_| Ok(()),
                )
                .optional()
        })
        .or_storage(operation)?;
    if current.is_none() {
        return Err(OutboxError::LeaseLost {
            lease: lease_name.to_owned(),
        });
    }
    work(&transaction).or_storage(operation)?;
    transaction.commit().or_storage(operation)
}

/// Up to `limit` ready records, leaving out those at `except` (in SQLite, before it probes
/// for a blocking record).
/// A record that is not a valid envelope is parked with the reason (it could never be
/// published), and the query runs again.
pub(super) fn fetch(
    connection: &mut Connection,
    limit: usize,
    except: &[Position],
) -> Result<Vec<OutboxRecord>, OutboxError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let rows_wanted = i64::try_from(limit).unwrap_or(i64::MAX);
    let leave_out = serde_json::to_string(except).or_storage(FETCHING)?;
    loop {
        let mut ready = Vec::with_capacity(limit);
        let mut corrupt = Vec::new();
        {
            let mut statement = connection
                .prepare_cached(SELECT_READY)
                .or_storage(FETCHING)?;
            let mut rows = statement
                .query(params![now_ms(), rows_wanted, leave_out])
                .or_storage(FETCHING)?;
            while let Some(row) = rows.next().or_storage(FETCHING)? {
                let position = to_u64(row.get(0).or_storage(FETCHING)?);
                // Decoded straight from SQLite's buffer, without a copy.
                let json = row.get_ref(1).or_storage(FETCHING)?;
                let decoded = json
                    .as_str()
                    .map_err(|error| error.to_string())
                    .and_then(|json| {
                        serde_json::from_str::<Envelope>(json).map_err(|error| error.to_string())
                    });
                match decoded {
                    Ok(envelope) => {
                        let attempts: i64 = row.get(2).or_storage(FETCHING)?;
                        let mut record = OutboxRecord::new(position, envelope);
                        record.attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                        ready.push(record);
                        if ready.len() == limit {
                            break;
                        }
                    }
                    Err(error) => corrupt.push((to_i64(position), error)),
                }
            }
        }
        if corrupt.is_empty() {
            return Ok(ready);
        }
        for (position, error) in corrupt {
            tracing::error!(position, %error, "parking an outbox record that is not a valid envelope");
            connection
                .execute(
                    "UPDATE dovetail_outbox SET parked = 1, last_error = ?2 WHERE position = ?1",
                    params![position, format!("not a valid envelope: {error}")],
                )
                .or_storage(FETCHING)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_positions_are_deleted_as_a_range_and_others_as_a_list() {
        assert!(matches!(published(&[7, 5, 6]), Ok(Published::Range(5, 7))));
        assert!(matches!(published(&[4]), Ok(Published::Range(4, 4))));
        // A gap, and a repeat that makes the count match the span: lists.
        assert!(matches!(published(&[5, 7]), Ok(Published::List(list)) if list == "[5,7]"));
        assert!(matches!(published(&[5, 5, 7]), Ok(Published::List(list)) if list == "[5,5,7]"));
        assert!(matches!(published(&[]), Ok(Published::List(list)) if list == "[]"));
    }

    #[test]
    fn a_range_deletes_exactly_the_published_records() {
        let mut connection = Connection::open_in_memory().unwrap();
        crate::sqlite::SqliteOutbox::create_schema(&connection).unwrap();
        for position in 1..=6 {
            connection
                .execute(
                    "INSERT INTO dovetail_outbox (position, event_id, aggregate_type,
                         aggregate_id, sequence, envelope, committed_at_ms)
                     VALUES (?1, 'e', 'policy', 'p', ?1, '{}', 0)",
                    params![position],
                )
                .unwrap();
        }
        let transaction = connection.transaction().unwrap();
        delete_published(&transaction, &published(&[3, 2, 4]).unwrap()).unwrap();
        delete_published(&transaction, &published(&[1, 6]).unwrap()).unwrap();
        transaction.commit().unwrap();
        let left: Vec<i64> = connection
            .prepare("SELECT position FROM dovetail_outbox")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(left, [5]);
    }
}
