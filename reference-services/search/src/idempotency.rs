//! The idempotent consumer's records, in the store `[idempotency]` names: a SQLite file
//! (the default, this instance's records only) or a DynamoDB table that every instance of
//! the service shares, so a duplicate delivered to another instance stops there too.
//!
//! The store is picked at run time, so the layer holds it as an
//! `Arc<dyn DynIdempotencyStore>` ([`SearchIdempotency`]); the boxed call costs nothing
//! next to a SQLite transaction or a DynamoDB request.

use std::path::Path;
use std::sync::Arc;

use dovetail_events::idempotency::{
    DynIdempotencyStore, IdempotencyConfig, IdempotencyLayer, SqliteIdempotencyStore,
};
use dovetail_service_kit::events::Transport;

use crate::config::{IdempotencyBackend, SearchConfig};
use crate::{IDEMPOTENCY_NAMESPACE, SearchIdempotency};

/// Opens the store `config.idempotency` names (creating the SQLite file and its directory,
/// or the DynamoDB table with its TTL, when missing) and the layer over it.
///
/// # Errors
/// When a setting belongs to the other backend, DynamoDB is asked for without the AWS
/// transport or in a build without the `aws` feature, or the store cannot be opened; the
/// message names the setting to change.
#[cfg_attr(not(feature = "aws"), allow(clippy::unused_async, unused_variables))]
pub async fn open(
    config: &SearchConfig,
    transport: &Transport,
) -> anyhow::Result<SearchIdempotency> {
    let settings = &config.idempotency;
    let store: Arc<dyn DynIdempotencyStore> = match settings.backend {
        IdempotencyBackend::Sqlite => {
            if let Some(table) = &settings.table {
                anyhow::bail!(
                    "idempotency.table = {table:?} is a setting of idempotency.backend = dynamodb, \
                     but the backend is sqlite: set idempotency.backend = dynamodb, or remove \
                     idempotency.table"
                );
            }
            let path = config.idempotency_path();
            tracing::info!(path = %path.display(), "idempotency records in a SQLite file");
            Arc::new(open_sqlite(&path)?)
        }
        #[cfg(feature = "aws")]
        IdempotencyBackend::Dynamodb => {
            if let Some(path) = &settings.path {
                anyhow::bail!(
                    "idempotency.path = {} is a setting of idempotency.backend = sqlite, but the \
                     backend is dynamodb: set idempotency.table for a table of another name, or \
                     remove idempotency.path",
                    path.display()
                );
            }
            let Transport::Aws(clients) = transport else {
                anyhow::bail!(
                    "idempotency.backend = dynamodb needs AWS clients: set events.backend = aws \
                     too (the stack's --aws switch sets both), or idempotency.backend = sqlite"
                );
            };
            let table = config.idempotency_table();
            let store = open_dynamodb(clients, &table).await?;
            tracing::info!(%table, "idempotency records in a DynamoDB table");
            Arc::new(store)
        }
        #[cfg(not(feature = "aws"))]
        IdempotencyBackend::Dynamodb => anyhow::bail!(
            "idempotency.backend = dynamodb needs the `aws` feature of dovetail-search (built \
             without it): rebuild with it, or set idempotency.backend = sqlite"
        ),
    };
    Ok(IdempotencyLayer::new(
        store,
        IdempotencyConfig::new(IDEMPOTENCY_NAMESPACE),
    ))
}

/// Opens (creating it and its directory when missing) the SQLite file of the records at
/// `path`.
///
/// # Errors
/// When the directory cannot be created or the file opened.
pub fn open_sqlite(path: &Path) -> anyhow::Result<SqliteIdempotencyStore> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| {
            anyhow::anyhow!(
                "cannot create the directory of the idempotency records {} \
                 (idempotency.path): {error}",
                dir.display()
            )
        })?;
    }
    SqliteIdempotencyStore::open(path).map_err(|error| {
        anyhow::Error::new(error).context(format!(
            "cannot open the idempotency records {} (idempotency.path)",
            path.display()
        ))
    })
}

/// The records' DynamoDB table `table` on `clients`' account: created when missing
/// (partition key `pk`, on-demand, TTL on `expires_at`), safe from several instances
/// starting at once.
///
/// # Errors
/// When DynamoDB does not answer or refuses, or the table exists with another key.
#[cfg(feature = "aws")]
pub async fn open_dynamodb(
    clients: &dovetail_service_kit::aws::AwsClients,
    table: &str,
) -> anyhow::Result<dovetail_events::idempotency::DynamoDbIdempotencyStore> {
    use dovetail_events::idempotency::{DynamoDbIdempotencyConfig, DynamoDbIdempotencyStore};

    let store = DynamoDbIdempotencyStore::new(
        clients.dynamodb().clone(),
        DynamoDbIdempotencyConfig::new(table),
    );
    store.create_table_if_missing().await.map_err(|error| {
        anyhow::Error::new(error).context(format!(
            "cannot create or open the idempotency table {table} (idempotency.table) at {}",
            clients
                .endpoints()
                .dynamodb
                .as_deref()
                .unwrap_or("real AWS")
        ))
    })?;
    Ok(store)
}
