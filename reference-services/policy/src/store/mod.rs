//! Where policies live: one store per backend (SQLite by default, DynamoDB behind the
//! `aws` feature), each committing a policy's new state, its event and the request's
//! idempotency record in one transaction of the service's own database.

mod append;
#[cfg(feature = "aws")]
pub mod dynamodb;
mod repair;
mod repairer;
pub mod sqlite;
mod view;

use dovetail_events::envelope::{EventId, Source};
use dovetail_outbox::ExpectedVersion;
use dovetail_service_kit::config::StorageConfig;
use dovetail_service_kit::events::Transport;
use dovetail_service_kit::store::{Backend, ServiceStore, open_store};
pub use dovetail_service_kit::store::{OpenedStore, RequestRecord, StoreError, WriteOutcome};
use dovetail_service_kit::{StartError, on_backend};

use crate::domain::{Policy, PolicyChange};
pub use dovetail_service_kit::store::{
    REPAIR_BATCH, RepairReport, Republished, SkipReason, Skipped,
};
pub use view::PolicyConsistencyView;

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

/// The policy store the service was configured with: SQLite, or DynamoDB.
#[derive(Debug, Clone)]
pub struct PolicyStore(Backend<sqlite::SqlitePolicyStore, DynamoDbStore>);

#[cfg(feature = "aws")]
type DynamoDbStore = dynamodb::DynamoDbPolicyStore;
#[cfg(not(feature = "aws"))]
type DynamoDbStore = ();

impl ServiceStore for PolicyStore {
    const NAME: &'static str = "policy";
    type Sqlite = sqlite::SqlitePolicyStore;
    type DynamoDb = DynamoDbStore;

    fn open_sqlite(
        path: &std::path::Path,
        outbox: dovetail_outbox::sqlite::SqliteOutbox,
    ) -> Result<Self::Sqlite, StoreError> {
        sqlite::SqlitePolicyStore::open(path, outbox)
    }

    #[cfg(feature = "aws")]
    async fn open_dynamodb(
        clients: &dovetail_service_kit::aws::AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self::DynamoDb>, StoreError> {
        dynamodb::DynamoDbPolicyStore::open(clients, table, source).await
    }

    fn from_backend(backend: Backend<Self::Sqlite, Self::DynamoDb>) -> Self {
        Self(backend)
    }
}

impl PolicyStore {
    /// Opens the store `storage` names for the events of `source`: its SQLite file, or
    /// its DynamoDB table through `transport`'s AWS clients; with its relay's store.
    ///
    /// # Errors
    /// When the database cannot be opened (the message says why), or DynamoDB is
    /// configured without the AWS transport or without the `aws` feature.
    pub async fn open(
        storage: &StorageConfig,
        transport: &Transport,
        source: Source,
    ) -> Result<OpenedStore<Self>, StartError> {
        open_store(storage, transport, source).await
    }

    /// Commits `write` atomically: state, event and idempotency record, or nothing.
    ///
    /// # Errors
    /// See [`StoreError`].
    pub async fn write(&self, write: PolicyWrite) -> Result<WriteOutcome, StoreError> {
        on_backend!(&self.0, store => store.write(write).await)
    }

    /// The policy `policy_id`, if it exists.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn get(&self, policy_id: &str) -> Result<Option<Policy>, StoreError> {
        on_backend!(&self.0, store => store.get(policy_id).await)
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
        on_backend!(&self.0, store => store.list_by_customer(customer_id, after, limit).await)
    }

    /// The [`View`](dovetail_consistency::View) of the policies for consistency checks
    /// of their replicas (the claim service's, ...), on either backend; `None` only for
    /// a DynamoDB store in a build without the `aws` feature, which cannot exist.
    pub fn consistency_view(&self) -> Option<PolicyConsistencyView> {
        match &self.0 {
            Backend::Sqlite(store) => Some(store.consistency_view()),
            #[cfg(feature = "aws")]
            Backend::DynamoDb(store) => Some(store.consistency_view()),
            #[allow(unreachable_patterns)] // only the DynamoDB store without `aws`
            _ => None,
        }
    }

    /// Repairs the replicas a consistency check found drifted on `keys` (the policy ids
    /// of its [`differences`](dovetail_consistency::CheckReport::differences)): republishes
    /// each policy's current snapshot through the outbox, as a `policy.updated` event at
    /// the policy's current version (not raised), with `run`, the check run's id, as its
    /// causation id. The replicas' consumers apply it where they are behind or lack the
    /// policy and ignore it where they are not, so repairing a policy that had not
    /// drifted is harmless. Nothing writes a replica.
    ///
    /// At most [`REPAIR_BATCH`] distinct keys per call, in one transaction; the rest come
    /// back in [`RepairReport::deferred`]. A key this service has no policy for, or one
    /// the outbox refuses, is reported in [`RepairReport::skipped`] and the others go
    /// ahead.
    ///
    /// Why `policy.updated`: every policy event carries the whole snapshot and every
    /// consumer reads only that, so any type would repair; the type of the policy's last
    /// change would fit best, but the store does not keep it (the outbox deletes records
    /// once published), and a status cannot tell it (an active policy was issued, or
    /// updated since) nor give back a cancellation's reason, which is not stored.
    ///
    /// On DynamoDB the batch goes out in transactions of 25 policies, and a policy
    /// written between its read and its transaction is skipped as
    /// [`SkipReason::Refused`] (its write's event repairs it).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails (on SQLite nothing is
    /// republished; on DynamoDB, the transactions before the failing one are).
    pub async fn repair(
        &self,
        keys: Vec<String>,
        run: EventId,
    ) -> Result<RepairReport, StoreError> {
        match &self.0 {
            Backend::Sqlite(store) => store.repair(keys, run).await,
            #[cfg(feature = "aws")]
            Backend::DynamoDb(store) => store.repair(keys, run).await,
            #[allow(unreachable_patterns)] // only the DynamoDB store without `aws`
            _ => Err(StoreError::backend(
                "republishing policies for a repair",
                "this build has no DynamoDB support (the `aws` feature)",
            )),
        }
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(&self.0, store => store.ping().await)
    }
}
