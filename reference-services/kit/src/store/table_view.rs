//! [`TableView`]: a consistency check's [`View`] of one table of a service's store,
//! whichever backend holds it.

use dovetail_consistency::{BucketRange, Digest, Entry, View, ViewError};

use super::SqliteTableView;

/// The [`View`] of one table (or set of items) of a service's store: on SQLite, a
/// [`SqliteTableView`]; on DynamoDB (feature `aws`), a
/// [`DynamoDbView`](dovetail_consistency::dynamodb::DynamoDbView). A service's
/// `consistency_view()` answers one, so a check does not care where the data lives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TableView {
    /// A table of the service's SQLite file.
    Sqlite(SqliteTableView),
    /// A set of items of the service's DynamoDB table.
    #[cfg(feature = "aws")]
    DynamoDb(dovetail_consistency::dynamodb::DynamoDbView),
}

impl View for TableView {
    async fn digest(&self, range: BucketRange) -> Result<Digest, ViewError> {
        match self {
            Self::Sqlite(view) => view.digest(range).await,
            #[cfg(feature = "aws")]
            Self::DynamoDb(view) => view.digest(range).await,
        }
    }

    async fn entries(&self, range: BucketRange) -> Result<Vec<Entry>, ViewError> {
        match self {
            Self::Sqlite(view) => view.entries(range).await,
            #[cfg(feature = "aws")]
            Self::DynamoDb(view) => view.entries(range).await,
        }
    }
}

impl From<SqliteTableView> for TableView {
    fn from(view: SqliteTableView) -> Self {
        Self::Sqlite(view)
    }
}

#[cfg(feature = "aws")]
impl From<dovetail_consistency::dynamodb::DynamoDbView> for TableView {
    fn from(view: dovetail_consistency::dynamodb::DynamoDbView) -> Self {
        Self::DynamoDb(view)
    }
}
