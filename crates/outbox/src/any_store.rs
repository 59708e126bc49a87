//! [`AnyOutboxStore`]: the outbox store of whichever backend a service was configured
//! with at startup, for a relay whose type must not depend on the configuration.

use std::time::Duration;

use crate::{Failure, OutboxBacklog, OutboxError, OutboxRecord, OutboxStore, Position, RelayLease};

/// The outbox store of the backend chosen at startup (SQLite with feature `sqlite`,
/// DynamoDB with feature `dynamodb`): one relay type, `Relay<AnyOutboxStore, P>`, for a
/// service that reads its backend from its configuration. Each call goes to the store
/// inside, which keeps the [`OutboxStore`] rules.
///
/// # Example
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use dovetail_events::publish::MemoryPublisher;
/// use dovetail_outbox::AnyOutboxStore;
/// use dovetail_outbox::relay::{Relay, RelayConfig};
/// use dovetail_outbox::sqlite::SqliteOutboxStore;
///
/// # let path = std::env::temp_dir().join(format!("any-store-doc-{}.db", std::process::id()));
/// // The backend a service's configuration named.
/// let store: AnyOutboxStore = SqliteOutboxStore::open(&path, "policy-service.relay")?.into();
/// let relay: Relay<AnyOutboxStore, MemoryPublisher> =
///     Relay::new(store, MemoryPublisher::new(), RelayConfig::default());
/// # }
/// # Ok::<(), dovetail_outbox::OutboxError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyOutboxStore {
    /// A service's SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(crate::sqlite::SqliteOutboxStore),
    /// A service's DynamoDB table.
    #[cfg(feature = "dynamodb")]
    DynamoDb(crate::dynamodb::DynamoDbOutboxStore),
}

#[cfg(feature = "sqlite")]
impl From<crate::sqlite::SqliteOutboxStore> for AnyOutboxStore {
    fn from(store: crate::sqlite::SqliteOutboxStore) -> Self {
        Self::Sqlite(store)
    }
}

#[cfg(feature = "dynamodb")]
impl From<crate::dynamodb::DynamoDbOutboxStore> for AnyOutboxStore {
    fn from(store: crate::dynamodb::DynamoDbOutboxStore) -> Self {
        Self::DynamoDb(store)
    }
}

/// Calls `$call` on the store inside `$self`, whichever it is.
macro_rules! each_store {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            #[cfg(feature = "sqlite")]
            AnyOutboxStore::Sqlite($store) => $call.await,
            #[cfg(feature = "dynamodb")]
            AnyOutboxStore::DynamoDb($store) => $call.await,
        }
    };
}

impl OutboxStore for AnyOutboxStore {
    async fn acquire_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<RelayLease>, OutboxError> {
        each_store!(self, store => store.acquire_lease(owner, ttl))
    }

    async fn release_lease(&self, lease: &RelayLease) -> Result<(), OutboxError> {
        each_store!(self, store => store.release_lease(lease))
    }

    async fn fetch_ready(&self, limit: usize) -> Result<Vec<OutboxRecord>, OutboxError> {
        each_store!(self, store => store.fetch_ready(limit))
    }

    async fn fetch_ready_except(
        &self,
        limit: usize,
        except: &[Position],
    ) -> Result<Vec<OutboxRecord>, OutboxError> {
        each_store!(self, store => store.fetch_ready_except(limit, except))
    }

    async fn mark_published(
        &self,
        lease: &RelayLease,
        positions: &[Position],
    ) -> Result<(), OutboxError> {
        each_store!(self, store => store.mark_published(lease, positions))
    }

    async fn mark_published_then_fetch(
        &self,
        lease: &RelayLease,
        published: &[Position],
        limit: usize,
        except: &[Position],
    ) -> Result<Result<Vec<OutboxRecord>, OutboxError>, OutboxError> {
        each_store!(self, store => store.mark_published_then_fetch(lease, published, limit, except))
    }

    async fn mark_failed(
        &self,
        lease: &RelayLease,
        failures: &[Failure],
    ) -> Result<(), OutboxError> {
        each_store!(self, store => store.mark_failed(lease, failures))
    }

    async fn unpark_all(&self) -> Result<u64, OutboxError> {
        each_store!(self, store => store.unpark_all())
    }

    async fn backlog(&self) -> Result<OutboxBacklog, OutboxError> {
        each_store!(self, store => store.backlog())
    }
}
