//! Where policies live: one store per backend (SQLite by default, DynamoDB behind the
//! `aws` feature), each committing a policy's new state, its event and the request's
//! idempotency record in one transaction of the service's own database.

mod append;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod sqlite;

use dovetail_events::envelope::Source;
use dovetail_outbox::ExpectedVersion;
use dovetail_service_kit::config::{StorageBackend, StorageConfig};
#[cfg(feature = "aws")]
use dovetail_service_kit::events::Transport;
pub use dovetail_service_kit::store::{OpenedStore, RequestRecord, StoreError, WriteOutcome};

use crate::domain::{Policy, PolicyChange};

/// One change to commit: the policy after it, the event it produced, the version the
/// policy must still have, and (for a request with an `Idempotency-Key`) the answer to
/// record.
#[derive(Debug, Clone)]
pub struct PolicyWrite {
    /// The policy after the change.
    pub policy: Policy,
    /// The event to publish.
    pub change: PolicyChange,
    /// [`ExpectedVersion::New`] for a new policy, else the version the caller read.
    pub expected: ExpectedVersion,
    /// The request to remember, if it had an `Idempotency-Key`.
    pub request: Option<RequestRecord>,
}

/// The policy store the service was configured with.
#[derive(Debug, Clone)]
pub enum PolicyStore {
    /// A SQLite file.
    Sqlite(sqlite::SqlitePolicyStore),
    /// A DynamoDB table.
    #[cfg(feature = "aws")]
    DynamoDb(dynamodb::DynamoDbPolicyStore),
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            PolicyStore::Sqlite($store) => $call,
            #[cfg(feature = "aws")]
            PolicyStore::DynamoDb($store) => $call,
        }
    };
}

impl PolicyStore {
    /// Opens the store `storage` names for the events of `source`: its SQLite file, or
    /// its DynamoDB table through `transport`'s AWS clients; with its relay's store.
    ///
    /// # Errors
    /// When the database cannot be opened (the message says why), or DynamoDB is
    /// configured without the AWS transport or without the `aws` feature.
    #[cfg_attr(not(feature = "aws"), allow(unused_variables))]
    pub async fn open(
        storage: &StorageConfig,
        transport: &Transport,
        source: Source,
    ) -> anyhow::Result<OpenedStore<Self>> {
        match storage.backend {
            StorageBackend::Sqlite => {
                let path = storage.sqlite_path("policy");
                let opened = dovetail_service_kit::store::sqlite::open_service(
                    &path,
                    source,
                    sqlite::SqlitePolicyStore::open,
                )?;
                Ok(opened.map(Self::Sqlite))
            }
            #[cfg(feature = "aws")]
            StorageBackend::Dynamodb => {
                let table = storage.dynamodb_table("policy");
                let (store, relay_store) =
                    dynamodb::DynamoDbPolicyStore::open(transport.aws_clients()?, &table, source)
                        .await?;
                Ok(OpenedStore {
                    commits: store.commits(),
                    store: Self::DynamoDb(store),
                    relay_store: relay_store.into(),
                })
            }
            #[cfg(not(feature = "aws"))]
            StorageBackend::Dynamodb => anyhow::bail!(
                "storage.backend = dynamodb needs the `aws` feature of dovetail-policy (built \
                 without it)"
            ),
        }
    }

    /// Commits `write` atomically: state, event and idempotency record, or nothing.
    ///
    /// # Errors
    /// See [`StoreError`].
    pub async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        dispatch!(self, store => store.write(write).await)
    }

    /// The policy `policy_id`, if it exists.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        dispatch!(self, store => store.get(policy_id).await)
    }

    /// Up to `limit` policies of `customer_id` in id order (creation order), after the
    /// policy id `after`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn list_by_customer(
        &self,
        customer_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Policy>, StoreError> {
        dispatch!(self, store => store.list_by_customer(customer_id, after, limit).await)
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, store => store.ping().await)
    }
}
