//! [`SqliteTableView`]: a consistency check's [`View`] of one SQLite table whose bucket
//! digests [`SqliteDigests`] keeps, read on a service's [`SharedConnection`].

use std::future::Future;

use dovetail_consistency::sqlite::SqliteDigests;
use dovetail_consistency::{BucketRange, Digest, Entry, View, ViewError};

use super::sqlite::SharedConnection;

/// The [`View`] of the table `digests` names, on `connection`: digests from its digest
/// table, entries from the table by its `(bucket, key)` index, each read on the blocking
/// pool as every read of the service's file.
#[derive(Debug, Clone)]
pub struct SqliteTableView {
    connection: SharedConnection,
    digests: SqliteDigests,
}

impl SqliteTableView {
    /// The view of `digests`' table on `connection`.
    pub fn new(connection: SharedConnection, digests: SqliteDigests) -> Self {
        Self {
            connection,
            digests,
        }
    }
}

impl View for SqliteTableView {
    fn digest(&self, range: BucketRange) -> impl Future<Output = Result<Digest, ViewError>> + Send {
        let (connection, digests) = (self.connection.clone(), self.digests);
        async move {
            connection
                .run(move |connection| Ok(digests.digest(connection, range)?))
                .await
                .map_err(|error| ViewError::new("SQLite", error))
        }
    }

    fn entries(
        &self,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, ViewError>> + Send {
        let (connection, digests) = (self.connection.clone(), self.digests);
        async move {
            connection
                .run(move |connection| Ok(digests.entries(connection, range)?))
                .await
                .map_err(|error| ViewError::new("SQLite", error))
        }
    }
}
