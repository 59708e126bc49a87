//! [`claims_with_policies`] on DynamoDB: claims in id order, each with the replica's copy
//! of its policy, for the [claim-policy invariant](crate::invariants).
//!
//! # Cost
//! The table has no index of all claims in id order (its indexes list a policy's or a
//! customer's claims), so each call is one strongly consistent `Scan` of the whole table
//! (every item is read, claims or not; only claim items after `after` come back, and the
//! `limit` lowest ids are kept), then one `BatchGetItem` per 100 distinct policies of the
//! page. A full pass of the invariant over `n` claims in pages of `p` is therefore
//! `n / p + 1` scans of the table: fine for the tables of a reference service and for
//! a nightly run, quadratic in the end. A table grown past that wants a sparse global
//! secondary index keyed by a constant (such as `claims`) and sorted by `claim_id`,
//! which makes each page one `Query` (at the price of one hot index partition for every
//! claim write, and a backfill of the attribute on older items).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::PolicySnapshot;
use dovetail_service_kit::store::dynamodb::{SNAPSHOT, ServiceTable, backend, string_of};

use super::StoreError;
use super::dynamodb::REPLICA_SORT_KEY;

const CLAIM_ID: &str = "claim_id";
/// The most keys DynamoDB's `BatchGetItem` takes in one request.
const BATCH_GET: usize = 100;
/// How many times a batch's unprocessed keys (DynamoDB's answer to throttling) are asked
/// again, waiting a little longer each time, before giving up.
const UNPROCESSED_ATTEMPTS: u32 = 8;

/// Up to `limit` claims after the claim id `after`, in claim id order, each with the
/// replica's copy of its policy (`None` when the replica holds none), read strongly
/// consistently. See the [module](self) for the cost.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB fails, keeps leaving keys unprocessed, or an
/// item is unreadable.
pub(super) async fn claims_with_policies(
    table: &ServiceTable,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(ClaimSnapshot, Option<PolicySnapshot>)>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let claims = claims_after(table, after, limit).await?;
    let mut policy_ids: Vec<&str> = claims.iter().map(|c| c.policy_id.as_str()).collect();
    policy_ids.sort_unstable();
    policy_ids.dedup();
    let mut policies = HashMap::new();
    for chunk in policy_ids.chunks(BATCH_GET) {
        for policy in replicated(table, chunk).await? {
            policies.insert(policy.policy_id.clone(), policy);
        }
    }
    Ok(claims
        .into_iter()
        .map(|claim| {
            let policy = policies.get(&claim.policy_id).cloned();
            (claim, policy)
        })
        .collect())
}

/// The `limit` claims with the lowest ids after `after`: one scan of the table.
async fn claims_after(
    table: &ServiceTable,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ClaimSnapshot>, StoreError> {
    let config = table.outbox().config();
    let operation = "scanning the claims for the claim-policy invariant";
    let mut kept: BTreeMap<String, String> = BTreeMap::new();
    let mut start = None;
    loop {
        let mut scan = table
            .client()
            .scan()
            .table_name(table.name())
            .consistent_read(true)
            .projection_expression("#claim_id, #snapshot")
            .expression_attribute_names("#pk", &config.partition_key)
            .expression_attribute_names("#sk", &config.sort_key)
            .expression_attribute_names("#claim_id", CLAIM_ID)
            .expression_attribute_names("#snapshot", SNAPSHOT)
            .expression_attribute_values(":sk", AttributeValue::S("claim".to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S("claim#".to_owned()))
            .set_exclusive_start_key(start.take());
        scan = match after {
            Some(after) => scan
                .filter_expression("#sk = :sk AND begins_with(#pk, :prefix) AND #claim_id > :after")
                .expression_attribute_values(":after", AttributeValue::S(after.to_owned())),
            None => scan.filter_expression("#sk = :sk AND begins_with(#pk, :prefix)"),
        };
        let page = scan
            .send()
            .await
            .map_err(|error| backend(operation, error))?;
        for item in page.items() {
            let (Some(id), Some(json)) = (string_of(item, CLAIM_ID), string_of(item, SNAPSHOT))
            else {
                return Err(StoreError::backend(
                    operation,
                    format!(
                        "a claim item has no `{CLAIM_ID}` or `{SNAPSHOT}` string: {:?}",
                        string_of(item, &config.partition_key)
                    ),
                ));
            };
            // Past the `limit` lowest ids kept so far: cannot be in the page.
            if kept.len() == limit
                && kept
                    .last_key_value()
                    .is_some_and(|(last, _)| id > last.as_str())
            {
                continue;
            }
            kept.insert(id.to_owned(), json.to_owned());
            if kept.len() > limit {
                kept.pop_last();
            }
        }
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    kept.into_values()
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|error| StoreError::backend("reading a stored claim", error))
        })
        .collect()
}

/// The replica's copies of `policy_ids` (at most [`BATCH_GET`]) that it holds, read
/// strongly consistently.
async fn replicated(
    table: &ServiceTable,
    policy_ids: &[&str],
) -> Result<Vec<PolicySnapshot>, StoreError> {
    let operation = "reading the replicated policies of claims";
    let keys = policy_ids
        .iter()
        .map(|id| table.key(format!("policy#{id}"), REPLICA_SORT_KEY))
        .collect();
    let mut request = Some(
        KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .projection_expression("#snapshot")
            .expression_attribute_names("#snapshot", SNAPSHOT)
            .build()
            .map_err(|error| backend(operation, error))?,
    );
    let mut policies = Vec::with_capacity(policy_ids.len());
    for attempt in 0..UNPROCESSED_ATTEMPTS {
        let Some(asked) = request.take() else {
            return Ok(policies);
        };
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
        }
        let read = table
            .client()
            .batch_get_item()
            .request_items(table.name(), asked)
            .send()
            .await
            .map_err(|error| backend(operation, error))?;
        for item in read
            .responses()
            .and_then(|tables| tables.get(table.name()))
            .into_iter()
            .flatten()
        {
            let json = string_of(item, SNAPSHOT).ok_or_else(|| {
                StoreError::backend(operation, "a replica item has no `snapshot` string")
            })?;
            policies.push(
                serde_json::from_str(json)
                    .map_err(|error| StoreError::backend("reading a replicated policy", error))?,
            );
        }
        request = read
            .unprocessed_keys()
            .and_then(|tables| tables.get(table.name()))
            .filter(|left| !left.keys().is_empty())
            .cloned();
    }
    match request {
        None => Ok(policies),
        Some(left) => Err(StoreError::backend(
            operation,
            format!(
                "DynamoDB left {} of {} keys unprocessed after {UNPROCESSED_ATTEMPTS} \
                 attempts (the table is throttled): run the check again later",
                left.keys().len(),
                policy_ids.len()
            ),
        )),
    }
}
