//! A consistency check between two stores: an owner's `products` table and a replica's
//! copy of it, each in its own SQLite file, each keeping per-bucket digests in its writes'
//! transactions. The replica misses an update, loses a row and holds a row the owner
//! never had; the check finds exactly those three, reading a few buckets instead of every
//! row.
//!
//! Run with: `cargo run -p example-consistency-two-stores`

use std::path::Path;
use std::sync::{Arc, Mutex};

use dovetail_consistency::sqlite::SqliteDigests;
use dovetail_consistency::{
    BucketRange, Check, CheckConfig, CheckReport, Digest, Entry, View, ViewError, bucket,
};
use rusqlite::{Connection, OptionalExtension, params};

/// The owner's table: its change times let the check leave writes in flight alone.
const OWNER: SqliteDigests = SqliteDigests {
    table: "products",
    key: "product_id",
    digests: "product_digests",
    changed_at: Some("changed_at_ms"),
};

/// The replica's copy: no change time (the check reads it from the owner).
const REPLICA: SqliteDigests = SqliteDigests {
    changed_at: None,
    ..OWNER
};

/// One of the two stores: a SQLite file with the table and its digests.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    digests: SqliteDigests,
}

impl Store {
    /// Opens the store at `path` (creating its table and digests).
    ///
    /// # Errors
    /// SQLite's.
    pub fn open(path: &Path, owner: bool) -> anyhow::Result<Self> {
        let mut connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS products (
                 product_id TEXT PRIMARY KEY, version INTEGER NOT NULL, name TEXT NOT NULL)",
        )?;
        let digests = if owner { OWNER } else { REPLICA };
        digests.migrate(&mut connection)?;
        Ok(Self {
            connection: Arc::new(Mutex::new(connection)),
            digests,
        })
    }

    /// Writes `product_id` at `version`, and its digest, in one transaction.
    ///
    /// # Errors
    /// SQLite's; nothing is written then.
    ///
    /// # Panics
    /// If another thread panicked while holding the connection.
    pub fn put(&self, product_id: &str, version: u64, name: &str) -> anyhow::Result<()> {
        let mut connection = self
            .connection
            .lock()
            .expect("the connection is not poisoned");
        let tx = connection.transaction()?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT version FROM products WHERE product_id = ?1",
                [product_id],
                |row| row.get(0),
            )
            .optional()?;
        let changed_at = self
            .digests
            .changed_at
            .map(|_| dovetail_consistency::sqlite::now_ms());
        tx.execute(
            "INSERT INTO products (product_id, version, name, bucket) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (product_id) DO UPDATE SET version = ?2, name = ?3",
            params![
                product_id,
                i64::try_from(version)?,
                name,
                bucket(product_id)
            ],
        )?;
        if let Some(at) = changed_at {
            tx.execute(
                "UPDATE products SET changed_at_ms = ?1 WHERE product_id = ?2",
                params![at, product_id],
            )?;
        }
        let old = old.map(u64::try_from).transpose()?;
        self.digests.record(&tx, product_id, old, version)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs `read` on the connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&SqliteDigests, &Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, ViewError> {
        let (connection, digests) = (Arc::clone(&self.connection), self.digests);
        tokio::task::spawn_blocking(move || {
            let connection = connection.lock().expect("the connection is not poisoned");
            read(&digests, &connection)
        })
        .await
        .map_err(|error| ViewError::new("sqlite", error))?
        .map_err(|error| ViewError::new("sqlite", error))
    }
}

/// The `View` of a store: what the check reads.
impl View for Store {
    async fn digest(&self, range: BucketRange) -> Result<Digest, ViewError> {
        self.read(move |digests, connection| digests.digest(connection, range))
            .await
    }

    async fn entries(&self, range: BucketRange) -> Result<Vec<Entry>, ViewError> {
        self.read(move |digests, connection| digests.entries(connection, range))
            .await
    }
}

/// Fills both stores with `items` products, makes three kinds of drift in the replica,
/// and checks it against the owner.
///
/// # Errors
/// When a file cannot be written or the check cannot read a store.
pub async fn run(dir: &Path, items: usize) -> anyhow::Result<CheckReport> {
    let owner = Store::open(&dir.join("owner.db"), true)?;
    let replica = Store::open(&dir.join("replica.db"), false)?;
    for i in 0..items {
        let id = format!("prod-{i}");
        owner.put(&id, 1, "chair")?;
        replica.put(&id, 1, "chair")?;
    }
    owner.put("prod-7", 2, "armchair")?; // an update the replica missed
    owner.put("prod-lost", 1, "table")?; // a product the replica lost
    replica.put("prod-stray", 1, "lamp")?; // one the owner never had
    let config = CheckConfig {
        // Everything here was written just now: nothing is a write in flight.
        expected_lag: std::time::Duration::ZERO,
        ..CheckConfig::default()
    };
    Ok(Check::new(&owner, &replica, config).run().await?)
}

#[cfg(test)]
mod tests {
    use dovetail_consistency::Drift;

    #[tokio::test]
    async fn the_check_finds_exactly_the_three_differences_and_reads_little() {
        let dir = std::env::temp_dir().join(format!("example-consistency-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = super::run(&dir, 2_000).await.unwrap();
        let mut found: Vec<(String, Drift)> = report
            .differences
            .iter()
            .map(|d| (d.key.clone(), d.drift))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            [
                (
                    "prod-7".to_owned(),
                    Drift::ReplicaBehind {
                        source_version: 2,
                        replica_version: 1
                    }
                ),
                (
                    "prod-lost".to_owned(),
                    Drift::MissingInReplica { source_version: 1 }
                ),
                (
                    "prod-stray".to_owned(),
                    Drift::ExtraInReplica { replica_version: 1 }
                ),
            ]
        );
        assert!(
            report.source_cost.entries_read < 50,
            "{:?}",
            report.source_cost
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
