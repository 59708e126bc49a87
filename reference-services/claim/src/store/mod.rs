//! Where claims and the replica of policies live: one store per backend (SQLite by
//! default, DynamoDB behind the `aws` feature). A claim's change commits with its event
//! and the request's idempotency record in one transaction; a policy event updates the
//! replica together with its "processed" marker in one transaction too.

mod append;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
mod dynamodb_with_policies;
mod repair;
mod repairer;
pub mod sqlite;
mod view;

use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::EventId;
use dovetail_events::envelope::Source;
use dovetail_outbox::ExpectedVersion;
use dovetail_service_kit::config::StorageConfig;
use dovetail_service_kit::events::Transport;
use dovetail_service_kit::store::{Backend, ServiceStore, open_store};
pub use dovetail_service_kit::store::{OpenedStore, RequestRecord, StoreError, WriteOutcome};
use dovetail_service_kit::{StartError, on_backend};

use crate::domain::{Claim, ClaimChange};
pub use dovetail_service_kit::store::{
    REPAIR_BATCH, RepairReport, Republished, SkipReason, Skipped,
};
pub use view::{ClaimConsistencyView, PolicyReplicaView};

/// One change to commit: the claim after it, its event, the version the claim must
/// still have, and (for a request with an `Idempotency-Key`) the answer to record.
#[derive(Debug, Clone)]
pub struct ClaimWrite {
    /// The claim after the change.
    pub claim: Claim,
    /// The event to publish.
    pub change: ClaimChange,
    /// [`ExpectedVersion::New`] for a new claim, else the version the caller read.
    pub expected: ExpectedVersion,
    /// The request to remember, if it had an `Idempotency-Key`.
    pub request: Option<RequestRecord>,
}

/// Which claims to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimFilter {
    /// The claims against one policy.
    Policy(String),
    /// The claims of one customer.
    Customer(String),
}

/// The claim service's copy of a policy, with when it last changed here.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicatedPolicy {
    /// The policy as of its latest event seen here.
    pub policy: PolicySnapshot,
    /// The event that brought it.
    pub event_id: String,
    /// When this copy was written (milliseconds since the epoch).
    pub replicated_at_ms: u64,
}

/// What applying a policy event to the replica did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaOutcome {
    /// The replica now holds the event's snapshot.
    Applied,
    /// The replica already held a newer version (the event came late): nothing changed.
    Stale,
    /// The event was processed before (a redelivery): nothing changed.
    Duplicate,
}

/// The claim store the service was configured with: SQLite, or DynamoDB.
#[derive(Debug, Clone)]
pub struct ClaimStore(Backend<sqlite::SqliteClaimStore, DynamoDbStore>);

#[cfg(feature = "aws")]
type DynamoDbStore = dynamodb::DynamoDbClaimStore;
#[cfg(not(feature = "aws"))]
type DynamoDbStore = ();

impl ServiceStore for ClaimStore {
    const NAME: &'static str = "claim";
    type Sqlite = sqlite::SqliteClaimStore;
    type DynamoDb = DynamoDbStore;

    fn open_sqlite(
        path: &std::path::Path,
        outbox: dovetail_outbox::sqlite::SqliteOutbox,
    ) -> Result<Self::Sqlite, StoreError> {
        sqlite::SqliteClaimStore::open(path, outbox)
    }

    #[cfg(feature = "aws")]
    async fn open_dynamodb(
        clients: &dovetail_service_kit::aws::AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self::DynamoDb>, StoreError> {
        dynamodb::DynamoDbClaimStore::open(clients, table, source).await
    }

    fn from_backend(backend: Backend<Self::Sqlite, Self::DynamoDb>) -> Self {
        Self(backend)
    }
}

impl ClaimStore {
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
    pub async fn write(&self, write: ClaimWrite) -> Result<WriteOutcome, StoreError> {
        on_backend!(&self.0, store => store.write(write).await)
    }

    /// The claim `claim_id`, if it exists.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn get(&self, claim_id: &str) -> Result<Option<Claim>, StoreError> {
        on_backend!(&self.0, store => store.get(claim_id).await)
    }

    /// Up to `limit` claims matching `filter` in id order (filing order), after the claim
    /// id `after`.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn list(
        &self,
        filter: &ClaimFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        on_backend!(&self.0, store => store.list(filter, after, limit).await)
    }

    /// The replica's copy of policy `policy_id`, if it has one.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn replicated_policy(
        &self,
        policy_id: &str,
    ) -> Result<Option<ReplicatedPolicy>, StoreError> {
        on_backend!(&self.0, store => store.replicated_policy(policy_id).await)
    }

    /// Applies the policy snapshot carried by event `event_id` (whose payload has the
    /// fingerprint `fingerprint`) to the replica, unless the event was processed before
    /// or the replica holds a newer version; the replica row and the event's "processed"
    /// marker commit together.
    ///
    /// # Errors
    /// [`StoreError::KeyReused`] when the event id was processed with another payload;
    /// [`StoreError::Backend`].
    pub async fn apply_policy(
        &self,
        event_id: EventId,
        fingerprint: dovetail_events::idempotency::Fingerprint,
        policy: PolicySnapshot,
    ) -> Result<ReplicaOutcome, StoreError> {
        on_backend!(&self.0, store => store.apply_policy(event_id, fingerprint, policy).await)
    }

    /// Up to `limit` claims after the claim id `after`, in claim id order, each with the
    /// replica's copy of its policy (`None` when the replica holds none): what the
    /// [claim-policy invariant](crate::invariants) reads.
    ///
    /// # Cost
    /// On SQLite one query (a join by the claims' primary key). On DynamoDB the table has
    /// no index of all claims in id order, so each call is one strongly consistent `Scan`
    /// of the whole table (every item read, the `limit` lowest claim ids after `after`
    /// kept) and one `BatchGetItem` per 100 of the page's policies: a full pass over `n`
    /// claims in pages of `p` is `n / p + 1` scans, fine at a reference service's size;
    /// a bigger table wants a sparse index sorted by claim id.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn claims_with_policies(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(ClaimSnapshot, Option<PolicySnapshot>)>, StoreError> {
        on_backend!(&self.0, store => store.claims_with_policies(after, limit).await)
    }

    /// The [`View`](dovetail_consistency::View) of the policy replica, to check it against
    /// the policy service's, on either backend; `None` only for a DynamoDB store in a
    /// build without the `aws` feature, which cannot exist.
    pub fn policy_replica_view(&self) -> Option<PolicyReplicaView> {
        match &self.0 {
            Backend::Sqlite(store) => Some(store.policy_replica_view()),
            #[cfg(feature = "aws")]
            Backend::DynamoDb(store) => Some(store.policy_replica_view()),
            #[allow(unreachable_patterns)] // only the DynamoDB store without `aws`
            _ => None,
        }
    }

    /// The [`View`](dovetail_consistency::View) of the claims for consistency checks of
    /// their replicas (the search index's), on either backend; `None` only for a DynamoDB
    /// store in a build without the `aws` feature, which cannot exist.
    pub fn consistency_view(&self) -> Option<ClaimConsistencyView> {
        match &self.0 {
            Backend::Sqlite(store) => Some(store.consistency_view()),
            #[cfg(feature = "aws")]
            Backend::DynamoDb(store) => Some(store.consistency_view()),
            #[allow(unreachable_patterns)] // only the DynamoDB store without `aws`
            _ => None,
        }
    }

    /// Repairs the replicas a consistency check found drifted on `keys` (the claim ids
    /// of its [`differences`](dovetail_consistency::CheckReport::differences)):
    /// republishes each claim's current snapshot through the outbox, as the event of its
    /// status (`claim.approved` for an approved claim: each status is entered by one
    /// event) at the claim's current version (not raised), with `run`, the check run's
    /// id, as its causation id. The replicas' consumers apply it where they are behind or
    /// lack the claim and ignore it where they are not, so repairing a claim that had not
    /// drifted is harmless. Nothing writes a replica.
    ///
    /// At most [`REPAIR_BATCH`] distinct keys per call; the rest come back in
    /// [`RepairReport::deferred`]. A key this service has no claim for, or one the outbox
    /// refuses, is reported in [`RepairReport::skipped`] and the others go ahead.
    ///
    /// On SQLite the batch is one transaction. On DynamoDB it goes out in transactions
    /// of 25 claims, and a claim written between its read and its transaction is skipped
    /// as [`SkipReason::Refused`] (its write's event repairs it).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database fails (on SQLite nothing is
    /// republished; on DynamoDB, the transactions before the failing one are).
    pub async fn repair(
        &self,
        keys: Vec<String>,
        run: EventId,
    ) -> Result<RepairReport, StoreError> {
        on_backend!(&self.0, store => store.repair(keys, run).await)
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(&self.0, store => store.ping().await)
    }
}

/// The idempotency key of a policy event in the replica's consumer.
pub(crate) fn replica_key(event_id: EventId) -> String {
    format!("claim-service.policy-events:{event_id}")
}
