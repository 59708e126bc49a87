//! One key's item: its key, reading and parsing it, writing a lease with conditions.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::idempotency::record::{RecordState, StoredRecord, in_progress_expiry};
use crate::idempotency::{
    Fingerprint, IdempotencyError, IdempotencyKey, Lease, LeaseOwner, StoreOperation, StoredOutcome,
};

use super::{
    CLAIMABLE, DynamoDbIdempotencyStore, EXPIRES_AT_MS, FENCING_TOKEN, FINGERPRINT, HELD_UNTIL_MS,
    IN_PROGRESS, OUTCOME, OWNER, PROCESSED, STATE, STORE, fingerprint_value, number, ttl_seconds,
    values,
};

impl DynamoDbIdempotencyStore {
    /// The item's key attribute.
    pub(super) fn key_item(&self, key: &IdempotencyKey) -> HashMap<String, AttributeValue> {
        HashMap::from([(
            self.config.partition_key.clone(),
            AttributeValue::S(format!("{}{}", self.config.key_prefix, key.as_str())),
        )])
    }

    /// `#name` placeholders for the attributes an expression uses.
    pub(super) fn names(&self, used: &[&str]) -> HashMap<String, String> {
        used.iter()
            .map(|name| {
                let attribute = match *name {
                    "pk" => self.config.partition_key.clone(),
                    "ttl" => self.config.ttl_attribute.clone(),
                    other => other.to_owned(),
                };
                (format!("#{name}"), attribute)
            })
            .collect()
    }

    /// Reads the key's item with a consistent read; `None` when there is none.
    pub(super) async fn read(
        &self,
        key: &IdempotencyKey,
        operation: StoreOperation,
    ) -> Result<Option<StoredRecord>, IdempotencyError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| IdempotencyError::backend(STORE, operation, error))?;
        output.item().map(|item| self.parse(key, item)).transpose()
    }

    pub(super) fn parse(
        &self,
        key: &IdempotencyKey,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<StoredRecord, IdempotencyError> {
        let corrupt = |reason: String| IdempotencyError::CorruptRecord {
            key: key.clone(),
            reason,
        };
        let number_of = |name: &str| -> Result<u64, IdempotencyError> {
            match item.get(name) {
                Some(AttributeValue::N(number)) => number
                    .parse::<u64>()
                    .map_err(|_| corrupt(format!("`{name}` is not a whole number: {number}"))),
                _ => Err(corrupt(format!("`{name}` is missing or not a number"))),
            }
        };
        let fingerprint = match item.get(FINGERPRINT) {
            Some(AttributeValue::B(bytes)) => Fingerprint::from_slice(bytes.as_ref())
                .map_err(|_| corrupt("`fingerprint` is not 32 bytes".to_owned()))?,
            _ => return Err(corrupt("`fingerprint` is missing or not binary".to_owned())),
        };
        let owner = match item.get(OWNER) {
            Some(AttributeValue::S(owner)) => Some(
                LeaseOwner::new(owner.as_str())
                    .map_err(|_| corrupt("`owner` is not a valid lease owner".to_owned()))?,
            ),
            None => None,
            Some(_) => return Err(corrupt("`owner` is not a string".to_owned())),
        };
        let state = match item.get(STATE) {
            Some(AttributeValue::S(state)) if state == IN_PROGRESS => RecordState::InProgress {
                held_until_ms: number_of(HELD_UNTIL_MS)?,
            },
            Some(AttributeValue::S(state)) if state == PROCESSED => RecordState::Processed {
                outcome: match item.get(OUTCOME) {
                    Some(AttributeValue::B(bytes)) => StoredOutcome::new(bytes.as_ref()),
                    None => StoredOutcome::empty(),
                    Some(_) => return Err(corrupt("`outcome` is not binary".to_owned())),
                },
            },
            _ => {
                return Err(corrupt(
                    "`state` is neither in_progress nor processed".to_owned(),
                ));
            }
        };
        Ok(StoredRecord {
            fingerprint,
            owner,
            fencing_token: number_of(FENCING_TOKEN)?,
            state,
            expires_at_ms: number_of(EXPIRES_AT_MS)?,
        })
    }

    /// One conditional put of a new lease with `fencing_token`; `Err(Some(item))` or
    /// `Err(None)` (item not returned) when the condition failed.
    pub(super) async fn put_lease(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        fencing_token: u64,
        now_ms: u64,
        held_until_ms: u64,
    ) -> Result<Result<Option<StoredRecord>, Option<StoredRecord>>, IdempotencyError> {
        let expires_at_ms = in_progress_expiry(held_until_ms);
        let mut item = self.key_item(key);
        item.extend([
            (FINGERPRINT.to_owned(), fingerprint_value(fingerprint)),
            (
                OWNER.to_owned(),
                AttributeValue::S(owner.as_str().to_owned()),
            ),
            (FENCING_TOKEN.to_owned(), number(fencing_token)),
            (STATE.to_owned(), AttributeValue::S(IN_PROGRESS.to_owned())),
            (HELD_UNTIL_MS.to_owned(), number(held_until_ms)),
            (EXPIRES_AT_MS.to_owned(), number(expires_at_ms)),
            (
                self.config.ttl_attribute.clone(),
                number(ttl_seconds(expires_at_ms)),
            ),
        ]);
        let sent = self
            .client
            .put_item()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression(format!(
                "{CLAIMABLE} AND (attribute_not_exists(#fencing_token) OR #fencing_token < :fencing_token)"
            ))
            .set_expression_attribute_names(Some(self.names(&[
                "pk",
                "expires_at_ms",
                "state",
                "held_until_ms",
                "fingerprint",
                "fencing_token",
            ])))
            .set_expression_attribute_values(Some(values([
                (":now", number(now_ms)),
                (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
                (":fingerprint", fingerprint_value(fingerprint)),
                (":fencing_token", number(fencing_token)),
            ])))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match sent {
            Ok(output) => {
                let previous = output
                    .attributes()
                    .filter(|item| !item.is_empty())
                    .map(|item| self.parse(key, item))
                    .transpose()?;
                Ok(Ok(previous))
            }
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(refused)) => {
                    let current = refused
                        .item()
                        .filter(|item| !item.is_empty())
                        .map(|item| self.parse(key, item))
                        .transpose()?;
                    Ok(Err(current))
                }
                _ => Err(IdempotencyError::backend(
                    STORE,
                    StoreOperation::Claim,
                    error,
                )),
            },
        }
    }

    /// Attribute values of a lease condition (`HELD_BY_LEASE`), plus `extra`.
    pub(super) fn lease_values<const N: usize>(
        lease: &Lease,
        now_ms: u64,
        extra: [(&str, AttributeValue); N],
    ) -> HashMap<String, AttributeValue> {
        let mut all = values([
            (
                ":owner",
                AttributeValue::S(lease.owner().as_str().to_owned()),
            ),
            (":fencing_token", number(lease.fencing_token())),
            (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
            (":now", number(now_ms)),
        ]);
        all.extend(values(extra));
        all
    }
}
