//! [`DynamoDbClaimStore`]: claims and the replica of policies in the service's DynamoDB
//! table, beside its outbox.
//!
//! One table holds the claims, the replica, the outbox's items and the records of
//! requests and of policy events (see [`dovetail_service_kit::store::dynamodb`]):
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | claim | `claim#<claim id>` | `claim` | `claim_id`, `policy_id`, `customer_id`, `version` (N), `snapshot` (the claim's JSON) |
//! | replicated policy | `policy#<policy id>` | `replica` | `version` (N), `snapshot` (the policy's JSON), `event_id`, `replicated_at_ms` (N) |
//! | consistency digests and entries of the claims | `consistency#claims#...` | | see [`dovetail_consistency::dynamodb`]: one digest item per bucket and one entry item per claim (with the write's change time), both written in each claim write's transaction |
//! | consistency digests and entries of the replica | `consistency#policy-replica#...` | | see [`dovetail_consistency::dynamodb`]: written in the transaction that applies a policy event |
//!
//! Claims are listed through two global secondary indexes, `by-policy` (`policy_id`,
//! `claim_id`) and `by-customer` (`customer_id`, `claim_id`); only claim items have a
//! `claim_id`, so the indexes hold nothing else. Like every DynamoDB secondary index they
//! are eventually consistent: a claim filed a moment ago may be missing from a listing for
//! a moment, while [`get`](super::ClaimStore::get) and the replica are read strongly
//! consistently.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use dovetail_consistency::Entry;
use dovetail_consistency::dynamodb::DynamoDbDigests;
use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::PolicySnapshot;
use dovetail_events::envelope::{EventId, Source};
use dovetail_events::idempotency::{Fingerprint, IdempotencyKey, StoredOutcome};
use dovetail_service_kit::aws::AwsClients;
use dovetail_service_kit::store::dynamodb::{
    KeyRecord, SNAPSHOT, ServiceTable, SnapshotIndex, SnapshotItem, SnapshotItems, VERSION,
    backend, number_of, open_table, string_of,
};
use dovetail_service_kit::store::{SetItems, backfill_digests};

use super::view::{CLAIM_SET, ClaimConsistencyView, POLICY_REPLICA_SET, PolicyReplicaView};
use super::{
    ClaimFilter, ClaimWrite, OpenedStore, RepairReport, ReplicaOutcome, ReplicatedPolicy,
    StoreError, WriteOutcome, replica_key,
};
use crate::domain::Claim;

/// The index listing a policy's claims.
pub const BY_POLICY: &str = "by-policy";
/// The index listing a customer's claims.
pub const BY_CUSTOMER: &str = "by-customer";

/// The sort key of the replica's items.
pub(super) const REPLICA_SORT_KEY: &str = "replica";

const POLICY_ID: &str = "policy_id";
const CUSTOMER_ID: &str = "customer_id";
const EVENT_ID: &str = "event_id";
const REPLICATED_AT_MS: &str = "replicated_at_ms";

/// The claim items: `claim#<id>`/`claim`, with `claim_id`.
pub(super) const CLAIMS: SnapshotItems<ClaimSnapshot> = SnapshotItems::new("claim", "claim_id");
/// A policy's claims.
const POLICY_CLAIMS: SnapshotIndex = SnapshotIndex {
    name: BY_POLICY,
    partition_key: POLICY_ID,
};
/// A customer's claims.
const CUSTOMER_CLAIMS: SnapshotIndex = SnapshotIndex {
    name: BY_CUSTOMER,
    partition_key: CUSTOMER_ID,
};

/// How long a policy event's "processed" marker is kept: longer than any redelivery (as
/// the SQLite store).
const REPLICA_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often applying a policy event looks again when the replica or the event's marker
/// changed between its read and its transaction.
const REPLICA_ATTEMPTS: usize = 5;

/// Claims and the policy replica in a DynamoDB table: a claim's change commits with its
/// event, the request's record and the claim's consistency digest and entry in one
/// `TransactWriteItems`; a policy event's replica item commits with the event's
/// "processed" marker and the replica's digest and entry in another.
#[derive(Debug, Clone)]
pub struct DynamoDbClaimStore {
    table: ServiceTable,
    claim_digests: DynamoDbDigests,
    replica_digests: DynamoDbDigests,
}

impl DynamoDbClaimStore {
    /// Opens the table `table` (creating it, its indexes and its TTL when missing) for
    /// the events of `source`, and the relay's store on its outbox; on the first open of
    /// a table made before the consistency digests, adds the entry and digest of each
    /// claim and of each replicated policy (see
    /// [`backfill_digests`](dovetail_service_kit::store::backfill_digests)).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the table cannot be created or has other keys; the
    /// message names it.
    pub async fn open(
        clients: &AwsClients,
        table: &str,
        source: Source,
    ) -> Result<OpenedStore<Self>, StoreError> {
        let indexes = [CLAIMS.index(&POLICY_CLAIMS), CLAIMS.index(&CUSTOMER_CLAIMS)];
        let table = open_table(clients.dynamodb(), table, source, &indexes).await?;
        let claim_digests = table.digests(CLAIM_SET);
        let replica_digests = table.digests(POLICY_REPLICA_SET);
        // A table made before the digests: its claims' and replicated policies' entries,
        // once each.
        backfill_digests(
            &table,
            &claim_digests,
            SetItems {
                prefix: "claim#",
                sort_key: "claim",
            },
        )
        .await?;
        backfill_digests(
            &table,
            &replica_digests,
            SetItems {
                prefix: "policy#",
                sort_key: REPLICA_SORT_KEY,
            },
        )
        .await?;
        Ok(table.opened(crate::SERVICE, |table| Self {
            table,
            claim_digests,
            replica_digests,
        }))
    }

    /// See [`ClaimStore::write`](super::ClaimStore::write).
    ///
    /// The claim's bucket digest moves from its old entry to its new one (with the
    /// write's change time) in the same transaction, as
    /// [`SnapshotItems::digest_write`] says: a claim written before the store kept
    /// digests is added on its next write rather than taken out of a digest it was never
    /// in, and a write at any version is checked against the version it read (a
    /// [`StoreError::VersionConflict`] when another write came between).
    pub(super) async fn write(&self, write: ClaimWrite) -> Result<WriteOutcome, StoreError> {
        let claim = write.claim.snapshot();
        let id = &claim.claim_id;
        let (expected, digest) = CLAIMS
            .digest_write(
                &self.table,
                &self.claim_digests,
                id,
                claim.version,
                write.expected,
            )
            .await?;
        let item = SnapshotItem {
            id: &claim.claim_id,
            version: claim.version,
            snapshot: claim,
            attributes: &[
                (POLICY_ID, &claim.policy_id),
                (CUSTOMER_ID, &claim.customer_id),
            ],
        };
        CLAIMS
            .write(
                &self.table,
                item,
                expected,
                write.request.as_ref(),
                |unit| {
                    for action in digest {
                        unit.write(action);
                    }
                    write.change.append_to(unit, write.expected)?;
                    Ok(())
                },
            )
            .await
    }

    /// The consistency view of the claims in this table.
    pub fn consistency_view(&self) -> ClaimConsistencyView {
        self.table.consistency_view(self.claim_digests.clone())
    }

    /// See [`ClaimStore::repair`](super::ClaimStore::repair).
    pub(super) async fn repair(
        &self,
        keys: Vec<String>,
        run: EventId,
    ) -> Result<RepairReport, StoreError> {
        super::repair::republish_on_dynamodb(&self.table, &CLAIMS, keys, run).await
    }

    /// See [`ClaimStore::get`](super::ClaimStore::get).
    pub(super) async fn get(&self, claim_id: &str) -> Result<Option<Claim>, StoreError> {
        let claim = CLAIMS.get(&self.table, claim_id).await?;
        Ok(claim.map(Claim::from_snapshot))
    }

    /// See [`ClaimStore::list`](super::ClaimStore::list).
    pub(super) async fn list(
        &self,
        filter: &ClaimFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let (index, value) = match filter {
            ClaimFilter::Policy(policy_id) => (&POLICY_CLAIMS, policy_id),
            ClaimFilter::Customer(customer_id) => (&CUSTOMER_CLAIMS, customer_id),
        };
        let claims = CLAIMS.list(&self.table, index, value, after, limit).await?;
        Ok(claims.into_iter().map(Claim::from_snapshot).collect())
    }

    /// See [`ClaimStore::claims_with_policies`](super::ClaimStore::claims_with_policies)
    /// and, for what it costs, [`dynamodb_with_policies`](super::dynamodb_with_policies).
    pub(super) async fn claims_with_policies(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(ClaimSnapshot, Option<PolicySnapshot>)>, StoreError> {
        super::dynamodb_with_policies::claims_with_policies(&self.table, after, limit).await
    }

    /// See [`ClaimStore::replicated_policy`](super::ClaimStore::replicated_policy).
    pub(super) async fn replicated_policy(
        &self,
        policy_id: &str,
    ) -> Result<Option<ReplicatedPolicy>, StoreError> {
        let read = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(self.replica_item_key(policy_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| {
                backend(&format!("reading the replica of policy {policy_id}"), error)
            })?;
        let Some(item) = read.item() else {
            return Ok(None);
        };
        let reading = || format!("reading the replica of policy {policy_id}");
        let json = string_of(item, SNAPSHOT)
            .ok_or_else(|| StoreError::backend(reading(), "it has no `snapshot` string"))?;
        Ok(Some(ReplicatedPolicy {
            policy: serde_json::from_str(json)
                .map_err(|error| StoreError::backend(reading(), error))?,
            event_id: string_of(item, EVENT_ID)
                .ok_or_else(|| StoreError::backend(reading(), "it has no `event_id` string"))?
                .to_owned(),
            replicated_at_ms: number_of(item, REPLICATED_AT_MS).unwrap_or(0),
        }))
    }

    /// See [`ClaimStore::apply_policy`](super::ClaimStore::apply_policy).
    ///
    /// Reads the event's marker and the replica's version, then commits the marker with
    /// either the new replica item (conditional on the replica still being at the version
    /// read, which its bucket's consistency digest, updated in the same transaction, takes
    /// out) or a check that the replica is still as new (a late event: nothing changes
    /// but the marker). When either changed meanwhile, the transaction is cancelled and it
    /// looks again.
    pub(super) async fn apply_policy(
        &self,
        event_id: EventId,
        fingerprint: Fingerprint,
        policy: PolicySnapshot,
    ) -> Result<ReplicaOutcome, StoreError> {
        let key = IdempotencyKey::new(replica_key(event_id))
            .map_err(|error| StoreError::backend("recording an applied event", error))?;
        for _ in 0..REPLICA_ATTEMPTS {
            match self.table.key_record(&key, &fingerprint).await? {
                KeyRecord::Free => {}
                KeyRecord::Processed(_) => return Ok(ReplicaOutcome::Duplicate),
                KeyRecord::OtherPayload => {
                    return Err(StoreError::KeyReused {
                        key: event_id.to_string(),
                    });
                }
                KeyRecord::InProgress => {
                    return Err(StoreError::KeyInProgress {
                        key: event_id.to_string(),
                    });
                }
            }
            let marker = self.table.processed_marker(
                &key,
                &fingerprint,
                &StoredOutcome::empty(),
                REPLICA_RETENTION,
            );
            let current = self
                .table
                .version_of(self.replica_item_key(&policy.policy_id))
                .await?;
            let (actions, outcome) = if current.is_none_or(|version| version < policy.version) {
                let mut actions = vec![self.replica_put(event_id, &policy, current)?];
                // The replica's bucket digest, from the entry it replaces (none for an
                // item older than the digests, which is then added), guarded by the
                // put's condition on the version read.
                let old = self
                    .replica_digests
                    .entry(self.table.client(), &policy.policy_id)
                    .await
                    .map_err(|error| backend("reading the replica's consistency entry", error))?;
                actions.extend(
                    self.replica_digests
                        .record(
                            old.as_ref(),
                            &Entry::live(&policy.policy_id, policy.version),
                        )
                        .map_err(|error| {
                            backend("building the replica's consistency digest", error)
                        })?,
                );
                (actions, ReplicaOutcome::Applied)
            } else {
                (vec![self.replica_as_new(&policy)?], ReplicaOutcome::Stale)
            };
            let sent = self
                .table
                .client()
                .transact_write_items()
                .set_transact_items(Some(std::iter::once(marker).chain(actions).collect()))
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(outcome),
                Err(error)
                    if matches!(
                        error.as_service_error(),
                        Some(TransactWriteItemsError::TransactionCanceledException(_))
                    ) => {}
                Err(error) => {
                    return Err(backend(
                        &format!(
                            "applying event {event_id} to the replica of policy {}",
                            policy.policy_id
                        ),
                        error,
                    ));
                }
            }
        }
        Err(StoreError::backend(
            format!(
                "applying event {event_id} to the replica of policy {}",
                policy.policy_id
            ),
            format!(
                "the replica or the event's record kept changing; gave up after \
                 {REPLICA_ATTEMPTS} attempts (the event will be delivered again)"
            ),
        ))
    }

    /// The consistency view of the policy replica in this table.
    pub fn policy_replica_view(&self) -> PolicyReplicaView {
        self.table.consistency_view(self.replica_digests.clone())
    }

    /// See [`ClaimStore::ping`](super::ClaimStore::ping).
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        self.table.ping().await
    }

    fn replica_item_key(&self, policy_id: &str) -> HashMap<String, AttributeValue> {
        self.table
            .key(format!("policy#{policy_id}"), REPLICA_SORT_KEY)
    }

    /// The replica's new item, conditional on the replica being still at `current`, the
    /// version read (absent for `None`), so that its digest takes that version out.
    fn replica_put(
        &self,
        event_id: EventId,
        policy: &PolicySnapshot,
        current: Option<u64>,
    ) -> Result<TransactWriteItem, StoreError> {
        let json = serde_json::to_string(policy).map_err(|error| {
            StoreError::backend(format!("serializing policy {}", policy.policy_id), error)
        })?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let mut item = self.replica_item_key(&policy.policy_id);
        item.extend([
            (
                VERSION.to_owned(),
                AttributeValue::N(policy.version.to_string()),
            ),
            (SNAPSHOT.to_owned(), AttributeValue::S(json)),
            (EVENT_ID.to_owned(), AttributeValue::S(event_id.to_string())),
            (
                REPLICATED_AT_MS.to_owned(),
                AttributeValue::N(now_ms.to_string()),
            ),
        ]);
        let put = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(item));
        let put = match current {
            None => put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", &self.table.outbox().config().partition_key),
            Some(current) => put
                .condition_expression("#version = :current")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":current", AttributeValue::N(current.to_string())),
        };
        let put = put
            .build()
            .map_err(|error| backend("building the replica's item", error))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A check that the replica is at least as new as `policy`.
    fn replica_as_new(&self, policy: &PolicySnapshot) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(self.table.name())
            .set_key(Some(self.replica_item_key(&policy.policy_id)))
            .condition_expression("#version >= :version")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":version", AttributeValue::N(policy.version.to_string()))
            .build()
            .map_err(|error| backend("building the replica's check", error))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}
