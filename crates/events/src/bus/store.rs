//! The bus's SQLite tables and every operation on them, each one transaction.
//!
//! Publishing fans a message out into one row per matching subscription (as SNS does into
//! SQS queues). A row is receivable when it is visible, not dead-lettered, and no earlier
//! row of its subscription and message group is still pending: each group is delivered
//! strictly in order, one message at a time, and groups run in parallel.
//!
//! Two kinds of transaction, two durabilities ([`Durability`]): what accepts or changes
//! messages for good (a publish, a redrive, new topics and subscriptions) reaches the disk
//! before it returns; what a consumer does (receives, settlements) is written to the WAL
//! without waiting for the disk. A power loss can undo the consumers' last transactions,
//! which at-least-once delivery allows (a handled message comes back), never a publish.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::BusError;
use super::filter::SubscriptionFilter;
use crate::envelope::Envelope;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dovetail_bus_topics (
    name TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS dovetail_bus_subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL REFERENCES dovetail_bus_topics(name),
    filter TEXT NOT NULL,
    max_receives INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dovetail_bus_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    message_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at_ms INTEGER,
    visible_at_ms INTEGER NOT NULL,
    dead_reason TEXT,
    UNIQUE (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS dovetail_bus_messages_by_group
    ON dovetail_bus_messages (subscription, group_id, seq);
DROP INDEX IF EXISTS dovetail_bus_messages_by_visibility;
CREATE INDEX IF NOT EXISTS dovetail_bus_messages_live
    ON dovetail_bus_messages (subscription) WHERE dead_reason IS NULL;
";

/// How far a transaction goes before it returns: the connection's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced to the disk at commit (`synchronous = FULL`): survives a power loss.
    Synced,
    /// In the WAL at commit, synced with a later synced commit or checkpoint
    /// (`synchronous = NORMAL`): survives a crash of the process, not always a power loss.
    Written,
}

/// The bus's connection, and the durability its next commit gets.
#[derive(Debug)]
pub(crate) struct Db {
    connection: Connection,
    durability: Option<Durability>,
}

impl Db {
    pub(crate) fn new(connection: Connection) -> Self {
        Self {
            connection,
            durability: None,
        }
    }

    /// The connection, its commits made as durable as `durability` says.
    pub(crate) fn with(&mut self, durability: Durability) -> Result<&mut Connection, BusError> {
        if self.durability != Some(durability) {
            let level = match durability {
                Durability::Synced => "FULL",
                Durability::Written => "NORMAL",
            };
            self.connection.pragma_update(None, "synchronous", level)?;
            self.durability = Some(durability);
        }
        Ok(&mut self.connection)
    }

    /// The connection as it is, for reads.
    pub(crate) fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

/// What settles a received message: which row, at which receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) seq: i64,
    pub(crate) receive_count: u32,
    pub(crate) message_id: String,
}

/// One received message and the receipt that settles it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) receipt: Receipt,
    pub(crate) group_id: String,
    pub(crate) body: String,
    pub(crate) attributes: BTreeMap<String, String>,
    pub(crate) sent_at: SystemTime,
    pub(crate) first_received_at: SystemTime,
}

/// A subscription's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionRow {
    pub(crate) topic: String,
    pub(crate) filter: SubscriptionFilter,
    pub(crate) max_receives: u32,
}

/// A dead-lettered message, as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id (the event id for events).
    pub message_id: String,
    /// The body.
    pub body: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// How many times it was received.
    pub receive_count: u32,
}

pub(crate) fn open(connection: &Connection) -> Result<(), BusError> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.execute_batch(SCHEMA)?;
    Ok(())
}

pub(crate) fn create_topic(connection: &Connection, name: &str) -> Result<(), BusError> {
    connection.execute(
        "INSERT OR IGNORE INTO dovetail_bus_topics (name) VALUES (?1)",
        params![name],
    )?;
    Ok(())
}

pub(crate) fn subscribe(
    connection: &mut Connection,
    name: &str,
    wanted: &SubscriptionRow,
) -> Result<(), BusError> {
    let tx = connection.transaction()?;
    if !topic_exists(&tx, &wanted.topic)? {
        return Err(BusError::UnknownTopic(wanted.topic.clone()));
    }
    if let Some(existing) = subscription(&tx, name)? {
        if existing == *wanted {
            return Ok(());
        }
        return Err(BusError::SubscriptionConflict {
            name: name.to_owned(),
            existing: format!(
                "topic `{}`, filter {}, max receives {}",
                existing.topic,
                existing.filter.to_json(),
                existing.max_receives
            ),
        });
    }
    tx.execute(
        "INSERT INTO dovetail_bus_subscriptions (name, topic, filter, max_receives)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            name,
            wanted.topic,
            wanted.filter.to_json().to_string(),
            wanted.max_receives
        ],
    )?;
    tx.commit()?;
    Ok(())
}

pub(crate) fn subscription(
    connection: &Connection,
    name: &str,
) -> Result<Option<SubscriptionRow>, BusError> {
    let row = connection
        .prepare_cached(
            "SELECT topic, filter, max_receives FROM dovetail_bus_subscriptions WHERE name = ?1",
        )?
        .query_row(params![name], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
            ))
        })
        .optional()?;
    row.map(|(topic, filter, max_receives)| {
        let reading = || format!("reading the filter of subscription `{name}`");
        let json = serde_json::from_str(&filter).map_err(|e| BusError::storage(reading(), e))?;
        let filter =
            SubscriptionFilter::from_json(&json).map_err(|e| BusError::storage(reading(), e))?;
        Ok(SubscriptionRow {
            topic,
            filter,
            max_receives,
        })
    })
    .transpose()
}

fn topic_exists(connection: &Connection, topic: &str) -> Result<bool, BusError> {
    Ok(connection
        .prepare_cached("SELECT 1 FROM dovetail_bus_topics WHERE name = ?1")?
        .query_row(params![topic], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Fans `envelopes` out to every matching subscription of `topic`, in one transaction.
/// A message already pending in a subscription (same event id) is not added twice.
pub(crate) fn publish(
    connection: &mut Connection,
    topic: &str,
    envelopes: &[&Envelope],
) -> Result<(), BusError> {
    let tx = connection.transaction()?;
    if !topic_exists(&tx, topic)? {
        return Err(BusError::UnknownTopic(topic.to_owned()));
    }
    let subscriptions: Vec<(String, SubscriptionFilter)> = {
        let mut statement =
            tx.prepare_cached("SELECT name FROM dovetail_bus_subscriptions WHERE topic = ?1")?;
        let names = statement
            .query_map(params![topic], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        names
            .into_iter()
            .map(|name| {
                let row = subscription(&tx, &name)?
                    .ok_or_else(|| BusError::UnknownSubscription(name.clone()))?;
                Ok((name, row.filter))
            })
            .collect::<Result<_, BusError>>()?
    };
    let now = now_ms();
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO dovetail_bus_messages
                 (subscription, message_id, group_id, body, attributes, sent_at_ms, visible_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?;
        for envelope in envelopes {
            let attributes = envelope.message_attributes();
            let body = String::from_utf8(envelope.to_json_bytes())
                .map_err(|e| BusError::storage("storing an envelope's JSON", e))?;
            let attributes_json =
                serde_json::to_string(&attributes.iter().collect::<BTreeMap<&str, &str>>())
                    .map_err(|e| BusError::storage("storing an envelope's attributes", e))?;
            let group = format!(
                "{}/{}",
                envelope.aggregate_type().as_str(),
                envelope.aggregate_id().as_str()
            );
            for (subscription, filter) in &subscriptions {
                if filter.accepts_attributes(&attributes) {
                    insert.execute(params![
                        subscription,
                        envelope.id().to_string(),
                        group,
                        body,
                        attributes_json,
                        now
                    ])?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Settles `settles`, then receives up to `max` messages of `subscription`, in one
/// transaction: a consumer's whole round trip. Answers, for each settlement in order,
/// whether it applied (`false`: its receipt was stale), and the messages received.
///
/// The settlements come first, so a message acknowledged here lets the next one of its
/// group be received in the same transaction.
pub(crate) fn settle_and_receive(
    connection: &mut Connection,
    subscription_name: &str,
    settles: &[(Receipt, Settle)],
    max: usize,
    visibility: Duration,
) -> Result<(Vec<bool>, Vec<Received>), BusError> {
    let tx = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let settled = settles
        .iter()
        .map(|(receipt, settle)| settle_in(&tx, receipt, settle))
        .collect::<Result<Vec<bool>, BusError>>()?;
    let received = if max == 0 {
        Vec::new()
    } else {
        receive_in(&tx, subscription_name, max, visibility)?
    };
    tx.commit()?;
    Ok((settled, received))
}

/// The next receivable messages of a subscription in publish order: visible, not
/// dead-lettered, and first of their group. Walks the subscription's live messages in
/// `seq` order through `dovetail_bus_messages_live`, so it stops after `?3` finds and
/// never sorts (a test checks the plan).
pub(crate) const SELECT_RECEIVABLE: &str = "
SELECT m.seq, m.receive_count, m.message_id, m.group_id, m.body, m.attributes,
       m.sent_at_ms, m.first_received_at_ms
FROM dovetail_bus_messages m INDEXED BY dovetail_bus_messages_live
WHERE m.subscription = ?1 AND m.dead_reason IS NULL AND m.visible_at_ms <= ?2
  AND NOT EXISTS (
      SELECT 1 FROM dovetail_bus_messages e
      WHERE e.subscription = m.subscription AND e.group_id = m.group_id
        AND e.seq < m.seq AND e.dead_reason IS NULL)
ORDER BY m.seq
LIMIT ?3";

/// Receives up to `max` messages of `subscription`, at most one per message group, and
/// hides them for `visibility`. Messages received more than the subscription's
/// `max_receives` times are dead-lettered instead of delivered.
fn receive_in(
    tx: &rusqlite::Transaction<'_>,
    subscription_name: &str,
    max: usize,
    visibility: Duration,
) -> Result<Vec<Received>, BusError> {
    let settings = subscription(tx, subscription_name)?
        .ok_or_else(|| BusError::UnknownSubscription(subscription_name.to_owned()))?;
    let now = now_ms();
    let visible_until = now.saturating_add(millis(visibility));
    let mut received = Vec::new();
    let mut select = tx.prepare_cached(SELECT_RECEIVABLE)?;
    let mut hide = tx.prepare_cached(
        "UPDATE dovetail_bus_messages
         SET receive_count = ?2, visible_at_ms = ?3,
             first_received_at_ms = COALESCE(first_received_at_ms, ?4)
         WHERE seq = ?1",
    )?;
    // A dead-lettered message no longer blocks its group, so the search repeats until it
    // finds `max` live messages or none are left.
    loop {
        let wanted = max - received.len();
        if wanted == 0 {
            break;
        }
        let candidates: Vec<Received> = select
            .query_map(params![subscription_name, now, wanted], |row| {
                let attributes: String = row.get(5)?;
                let sent_at_ms: i64 = row.get(6)?;
                let first: Option<i64> = row.get(7)?;
                Ok(Received {
                    receipt: Receipt {
                        seq: row.get(0)?,
                        receive_count: row.get::<_, u32>(1)? + 1,
                        message_id: row.get(2)?,
                    },
                    group_id: row.get(3)?,
                    body: row.get(4)?,
                    attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                    sent_at: time_of(sent_at_ms),
                    first_received_at: time_of(first.unwrap_or(now)),
                })
            })?
            .collect::<Result<_, _>>()?;
        if candidates.is_empty() {
            break;
        }
        for candidate in candidates {
            let receipt = &candidate.receipt;
            if receipt.receive_count > settings.max_receives {
                tx.prepare_cached(
                    "UPDATE dovetail_bus_messages SET dead_reason = ?2 WHERE seq = ?1",
                )?
                .execute(params![
                    receipt.seq,
                    format!(
                        "received {} times without success (the subscription allows {})",
                        receipt.receive_count - 1,
                        settings.max_receives
                    )
                ])?;
                continue;
            }
            hide.execute(params![
                receipt.seq,
                receipt.receive_count,
                visible_until,
                now
            ])?;
            received.push(candidate);
        }
    }
    Ok(received)
}

/// What to do with a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Handled: delete it.
    Ack,
    /// Hide it again for this long, then redeliver (a retry, or a heartbeat).
    HideFor(Duration),
    /// Move it to the dead letters with this reason.
    DeadLetter(String),
}

/// Settles a received message; fails with [`BusError::StaleReceipt`] when it was received
/// again since (its receive count moved on) or already settled.
pub(crate) fn settle(
    connection: &Connection,
    receipt: &Receipt,
    settle: &Settle,
) -> Result<(), BusError> {
    if settle_in(connection, receipt, settle)? {
        Ok(())
    } else {
        Err(BusError::StaleReceipt {
            message_id: receipt.message_id.clone(),
        })
    }
}

/// Settles one received message; `false` when its receipt is stale.
fn settle_in(
    connection: &Connection,
    receipt: &Receipt,
    settle: &Settle,
) -> Result<bool, BusError> {
    let changed = match settle {
        Settle::Ack => connection
            .prepare_cached(
                "DELETE FROM dovetail_bus_messages WHERE seq = ?1 AND receive_count = ?2",
            )?
            .execute(params![receipt.seq, receipt.receive_count])?,
        Settle::HideFor(delay) => connection
            .prepare_cached(
                "UPDATE dovetail_bus_messages SET visible_at_ms = ?3
                 WHERE seq = ?1 AND receive_count = ?2 AND dead_reason IS NULL",
            )?
            .execute(params![
                receipt.seq,
                receipt.receive_count,
                now_ms().saturating_add(millis(*delay))
            ])?,
        Settle::DeadLetter(reason) => connection
            .prepare_cached(
                "UPDATE dovetail_bus_messages SET dead_reason = ?3
                 WHERE seq = ?1 AND receive_count = ?2 AND dead_reason IS NULL",
            )?
            .execute(params![receipt.seq, receipt.receive_count, reason])?,
    };
    Ok(changed == 1)
}

pub(crate) fn dead_letters(
    connection: &Connection,
    subscription: &str,
) -> Result<Vec<DeadLetter>, BusError> {
    let mut statement = connection.prepare(
        "SELECT message_id, body, dead_reason, receive_count FROM dovetail_bus_messages
         WHERE subscription = ?1 AND dead_reason IS NOT NULL ORDER BY seq",
    )?;
    let rows = statement
        .query_map(params![subscription], |row| {
            Ok(DeadLetter {
                message_id: row.get(0)?,
                body: row.get(1)?,
                reason: row.get(2)?,
                receive_count: row.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Moves every dead letter of `subscription` back to pending, with its receive count reset.
pub(crate) fn redrive(connection: &Connection, subscription: &str) -> Result<usize, BusError> {
    Ok(connection.execute(
        "UPDATE dovetail_bus_messages
         SET dead_reason = NULL, receive_count = 0, visible_at_ms = ?2
         WHERE subscription = ?1 AND dead_reason IS NOT NULL",
        params![subscription, now_ms()],
    )?)
}

/// Pending (not dead-lettered) messages of `subscription`, the age of the oldest, and
/// its dead letters.
pub(crate) fn backlog(
    connection: &Connection,
    subscription: &str,
) -> Result<(u64, Option<Duration>, u64), BusError> {
    let (pending, oldest, dead): (u64, Option<i64>, u64) = connection.query_row(
        "SELECT COALESCE(SUM(dead_reason IS NULL), 0),
                MIN(CASE WHEN dead_reason IS NULL THEN sent_at_ms END),
                COALESCE(SUM(dead_reason IS NOT NULL), 0)
         FROM dovetail_bus_messages WHERE subscription = ?1",
        params![subscription],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let age = oldest.map(|sent| Duration::from_millis(u64::try_from(now_ms() - sent).unwrap_or(0)));
    Ok((pending, age, dead))
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn time_of(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiving_walks_the_live_messages_in_order_without_sorting() {
        let connection = Connection::open_in_memory().unwrap();
        open(&connection).unwrap();
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {SELECT_RECEIVABLE}"))
            .unwrap();
        let plan: Vec<String> = statement
            .query_map(params!["s", 0, 10], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX dovetail_bus_messages_live")),
            "{plan:#?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:#?}"
        );
    }

    #[test]
    fn a_commit_is_synced_only_when_it_must_be() {
        let mut db = Db::new(Connection::open_in_memory().unwrap());
        let level = |db: &mut Db| -> i64 {
            db.connection()
                .query_row("PRAGMA synchronous", [], |row| row.get(0))
                .unwrap()
        };
        db.with(Durability::Written).unwrap();
        assert_eq!(level(&mut db), 1, "NORMAL");
        db.with(Durability::Synced).unwrap();
        assert_eq!(level(&mut db), 2, "FULL");
    }
}
