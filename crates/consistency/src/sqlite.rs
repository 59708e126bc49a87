//! [`SqliteDigests`] (feature `sqlite`): the bucket digests of a SQLite table, for a
//! [`View`](crate::View) over it: each row's [`bucket`] in an indexed column, one
//! [`Digest`] per bucket in a side table updated in each write's transaction, and the
//! migration that adds both to a file made before they existed.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{BUCKETS, BucketRange, Digest, Entry, bucket};

/// A table whose rows are a check's entries: a unique text key and an integer version
/// per row, plus the columns this module adds (`bucket`, and the change time when the
/// table is an owner's).
///
/// Rows are never deleted (a deleted item would be a tombstone row), so every row is a
/// live entry.
///
/// The names are put into SQL as they are: give constants of your own schema, never
/// text from outside.
///
/// ```
/// use dovetail_consistency::{BucketRange, sqlite::SqliteDigests};
///
/// const POLICIES: SqliteDigests = SqliteDigests {
///     table: "policies",
///     key: "policy_id",
///     digests: "policy_digests",
///     changed_at: Some("changed_at_ms"),
/// };
/// let mut db = rusqlite::Connection::open_in_memory()?;
/// db.execute_batch("CREATE TABLE policies (policy_id TEXT PRIMARY KEY, version INTEGER NOT NULL)")?;
/// POLICIES.migrate(&mut db)?;
/// let tx = db.transaction()?;
/// tx.execute("INSERT INTO policies (policy_id, version, bucket, changed_at_ms) VALUES ('pol-1', 1, ?1, 0)",
///            [dovetail_consistency::bucket("pol-1")])?;
/// POLICIES.record(&tx, "pol-1", None, 1)?; // in the write's own transaction
/// tx.commit()?;
/// assert_eq!(POLICIES.digest(&db, BucketRange::FULL)?.count, 1);
/// assert_eq!(POLICIES.entries(&db, BucketRange::FULL)?[0].key, "pol-1");
/// # Ok::<(), rusqlite::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SqliteDigests {
    /// The table of entries, such as `policies`.
    pub table: &'static str,
    /// Its key column (`TEXT PRIMARY KEY`).
    pub key: &'static str,
    /// The side table of per-bucket digests: `bucket INTEGER PRIMARY KEY, count
    /// INTEGER, sum INTEGER`, the `u64`s stored as the `i64` with the same bits.
    pub digests: &'static str,
    /// The column of when the owner last changed the row (milliseconds since the Unix
    /// epoch), on an owner's table; `None` on a replica's.
    pub changed_at: Option<&'static str>,
}

impl SqliteDigests {
    /// Brings a file made by an older build up to date, once: adds the `bucket` (and
    /// change time) columns when missing, fills the bucket of each row that has none,
    /// indexes `(bucket, key)`, and, when the digest table does not exist, creates it
    /// and fills it from the rows. All in one transaction, so a crash leaves the file as
    /// it was and the next open starts again.
    ///
    /// The digests are only as true as the writes that keep them: a build that predates
    /// them and writes the file after this one, or an edit by hand, changes rows and not
    /// digests. A check then reports drift that is not there, or misses drift that is
    /// (where the digests still agree, it does not read the rows). After rolling back to
    /// such a build and forward again, or after editing rows by hand, drop the digest
    /// table (`DROP TABLE <digests>`) and the next open rebuilds it from the rows.
    ///
    /// # Errors
    /// SQLite's, when the table is missing or the file cannot be written.
    pub fn migrate(&self, connection: &mut Connection) -> Result<(), rusqlite::Error> {
        let Self {
            table,
            key,
            digests,
            changed_at,
        } = *self;
        let run = |connection: &mut Connection| -> Result<(), rusqlite::Error> {
            let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let columns: Vec<String> = tx
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            let has = |column: &str| columns.iter().any(|c| c == column);
            if !has("bucket") {
                tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN bucket INTEGER"))?;
            }
            if let Some(changed_at) = changed_at.filter(|column| !has(column)) {
                tx.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {changed_at} INTEGER"
                ))?;
            }
            let unbucketed: Vec<String> = tx
                .prepare(&format!("SELECT {key} FROM {table} WHERE bucket IS NULL"))?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &unbucketed {
                tx.execute(
                    &format!("UPDATE {table} SET bucket = ?1 WHERE {key} = ?2"),
                    params![bucket(id), id],
                )?;
            }
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS {table}_by_bucket ON {table} (bucket, {key})"
            ))?;
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [digests],
                    |row| row.get(0),
                )
                .optional()?;
            if exists.is_none() {
                tx.execute_batch(&format!(
                    "CREATE TABLE {digests} (
                         bucket INTEGER PRIMARY KEY,
                         count  INTEGER NOT NULL,
                         sum    INTEGER NOT NULL
                     )"
                ))?;
                let mut sums = vec![Digest::EMPTY; BUCKETS as usize];
                {
                    let mut rows = tx.prepare(&format!("SELECT {key}, version FROM {table}"))?;
                    let rows = rows.query_map([], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })?;
                    for row in rows {
                        let (id, version) = row?;
                        sums[bucket(&id) as usize]
                            .add_entry(&Entry::live(id, from_sql_version(version)));
                    }
                }
                for (index, sum) in sums.iter().enumerate() {
                    if *sum != Digest::EMPTY {
                        tx.execute(
                            &format!(
                                "INSERT INTO {digests} (bucket, count, sum) VALUES (?1, ?2, ?3)"
                            ),
                            params![index, sum.count.cast_signed(), sum.sum.cast_signed()],
                        )?;
                    }
                }
            }
            tx.commit()
        };
        run(connection)
    }

    /// Records, in the write's transaction `tx`, that row `id` went from `old` (`None`
    /// for a new row) to `new`: takes the old version's entry out of its bucket's digest
    /// and puts the new one in. Call it only when the write changed the row.
    ///
    /// The sum wraps, so it is done here rather than in SQL (where an overflowing
    /// integer sum turns into a float): the row is read, changed and written back, under
    /// the write lock the transaction holds.
    ///
    /// # Errors
    /// SQLite's; the caller's transaction then rolls back with the write.
    pub fn record(
        &self,
        tx: &Connection,
        id: &str,
        old: Option<u64>,
        new: u64,
    ) -> Result<(), rusqlite::Error> {
        let digests = self.digests;
        let index = bucket(id);
        let mut sum = tx
            .prepare_cached(&format!(
                "SELECT count, sum FROM {digests} WHERE bucket = ?1"
            ))?
            .query_row([index], |row| Ok(from_sql_digest(row.get(0)?, row.get(1)?)))
            .optional()?
            .unwrap_or(Digest::EMPTY);
        if let Some(old) = old {
            sum.remove_entry(&Entry::live(id, old));
        }
        sum.add_entry(&Entry::live(id, new));
        tx.prepare_cached(&format!(
            "INSERT INTO {digests} (bucket, count, sum) VALUES (?1, ?2, ?3)
             ON CONFLICT (bucket) DO UPDATE SET count = excluded.count, sum = excluded.sum"
        ))?
        .execute(params![
            index,
            sum.count.cast_signed(),
            sum.sum.cast_signed()
        ])?;
        Ok(())
    }

    /// The digest of `range`: the bucket digests in it, summed (wrapping) here.
    ///
    /// # Errors
    /// SQLite's.
    pub fn digest(
        &self,
        connection: &Connection,
        range: BucketRange,
    ) -> Result<Digest, rusqlite::Error> {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT count, sum FROM {} WHERE bucket >= ?1 AND bucket < ?2",
            self.digests
        ))?;
        let mut rows = statement.query_map([range.start(), range.end()], |row| {
            Ok(from_sql_digest(row.get(0)?, row.get(1)?))
        })?;
        rows.try_fold(Digest::EMPTY, |total, digest| Ok(total + digest?))
    }

    /// The entries of `range` in (bucket, key) order, all live, with their change times
    /// on an owner's table.
    ///
    /// # Errors
    /// SQLite's.
    pub fn entries(
        &self,
        connection: &Connection,
        range: BucketRange,
    ) -> Result<Vec<Entry>, rusqlite::Error> {
        let Self {
            table,
            key,
            changed_at,
            ..
        } = *self;
        let changed_at = changed_at.unwrap_or("NULL");
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {key}, version, {changed_at} FROM {table}
             WHERE bucket >= ?1 AND bucket < ?2 ORDER BY bucket, {key}"
        ))?;
        let rows = statement.query_map([range.start(), range.end()], |row| {
            let entry = Entry::live(row.get::<_, String>(0)?, from_sql_version(row.get(1)?));
            Ok(match row.get::<_, Option<i64>>(2)? {
                Some(ms) => entry.changed_at(u64::try_from(ms).unwrap_or(0)),
                None => entry,
            })
        })?;
        rows.collect()
    }
}

/// The milliseconds since the Unix epoch, for a change time column.
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn from_sql_version(version: i64) -> u64 {
    u64::try_from(version).unwrap_or(0)
}

fn from_sql_digest(count: i64, sum: i64) -> Digest {
    Digest {
        count: count.cast_unsigned(),
        sum: sum.cast_unsigned(),
    }
}
