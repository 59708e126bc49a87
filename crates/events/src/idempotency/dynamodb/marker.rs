//! The "processed" marker as one action of the caller's own `TransactWriteItems`, and
//! what a cancelled transaction says about it.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use crate::idempotency::clock::{duration_millis, epoch_micros, epoch_millis};
use crate::idempotency::record::{ClaimDecision, decide_claim, next_fencing_token};
use crate::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, MarkOutcome, StoreOperation,
    StoredOutcome,
};

use super::{
    CLAIMABLE, DynamoDbIdempotencyStore, EXPIRES_AT_MS, FENCING_TOKEN, FINGERPRINT, HELD_UNTIL_MS,
    IN_PROGRESS, OUTCOME, PROCESSED, STATE, fingerprint_value, number, ttl_seconds, values,
};

impl DynamoDbIdempotencyStore {
    /// The "processed" marker of `key` as one action of the caller's
    /// `TransactWriteItems`, so that the handler's writes and the marker commit together
    /// (or neither does). A first delivery costs one transaction and no lease.
    ///
    /// The action is a `Put` whose condition holds when the key has no live item, or only
    /// an expired lease on the same payload; otherwise DynamoDB cancels the whole
    /// transaction. Hand the cancellation reasons to
    /// [`interpret_marker_cancellation`](Self::interpret_marker_cancellation) with the
    /// action's index to learn whether the message is a duplicate.
    ///
    /// # Panics
    /// Never: the `Put` builder's required fields (table name, item) are always set.
    ///
    /// # Example
    /// ```no_run
    /// use std::time::Duration;
    /// use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    /// use dovetail_events::idempotency::{
    ///     DynamoDbIdempotencyStore, Fingerprint, IdempotencyKey, MarkOutcome, StoredOutcome,
    /// };
    ///
    /// # async fn example(
    /// #     store: DynamoDbIdempotencyStore,
    /// #     client: aws_sdk_dynamodb::Client,
    /// #     business_write: aws_sdk_dynamodb::types::TransactWriteItem,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// let key = IdempotencyKey::new("evt-1")?;
    /// let fingerprint = Fingerprint::of(b"{}");
    /// let marker = store.processed_marker_put(
    ///     &key,
    ///     &fingerprint,
    ///     &StoredOutcome::from("created"),
    ///     Duration::from_secs(24 * 3600),
    /// );
    /// let sent = client
    ///     .transact_write_items()
    ///     .transact_items(business_write) // index 0
    ///     .transact_items(marker) // index 1
    ///     .send()
    ///     .await;
    /// let outcome = match sent {
    ///     Ok(_) => MarkOutcome::Marked,
    ///     Err(error) => {
    ///         let reasons = match error.as_service_error() {
    ///             Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
    ///                 canceled.cancellation_reasons().to_vec()
    ///             }
    ///             _ => return Err(error.into()),
    ///         };
    ///         match store.interpret_marker_cancellation(&reasons, 1, &key, &fingerprint).await? {
    ///             Some(outcome) => outcome, // Duplicate or InProgress
    ///             None => return Err(error.into()), // another action's condition failed
    ///         }
    ///     }
    /// };
    /// # Ok(())
    /// # }
    /// ```
    pub fn processed_marker_put(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        outcome: &StoredOutcome,
        retain: Duration,
    ) -> TransactWriteItem {
        let now = SystemTime::now();
        let now_ms = epoch_millis(now);
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let mut item = self.key_item(key);
        item.extend([
            (FINGERPRINT.to_owned(), fingerprint_value(fingerprint)),
            (
                FENCING_TOKEN.to_owned(),
                number(next_fencing_token(None, epoch_micros(now))),
            ),
            (STATE.to_owned(), AttributeValue::S(PROCESSED.to_owned())),
            (HELD_UNTIL_MS.to_owned(), number(now_ms)),
            (EXPIRES_AT_MS.to_owned(), number(expires_at_ms)),
            (
                self.config.ttl_attribute.clone(),
                number(ttl_seconds(expires_at_ms)),
            ),
            (
                OUTCOME.to_owned(),
                AttributeValue::B(Blob::new(outcome.as_bytes())),
            ),
        ]);
        let put = Put::builder()
            .table_name(&self.config.table)
            .set_item(Some(item))
            .condition_expression(CLAIMABLE)
            .set_expression_attribute_names(Some(self.names(&[
                "pk",
                "expires_at_ms",
                "state",
                "held_until_ms",
                "fingerprint",
            ])))
            .set_expression_attribute_values(Some(values([
                (":now", number(now_ms)),
                (":in_progress", AttributeValue::S(IN_PROGRESS.to_owned())),
                (":fingerprint", fingerprint_value(fingerprint)),
            ])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("table name and item are set");
        TransactWriteItem::builder().put(put).build()
    }

    /// Why the marker from [`processed_marker_put`](Self::processed_marker_put), sent as
    /// action `index` of a `TransactWriteItems` that DynamoDB cancelled, was refused.
    ///
    /// Returns `None` when the marker's condition did not fail: another action's
    /// condition did, or the transaction was cancelled for a conflict or throttling, and
    /// the caller handles that. Otherwise the item is examined (from the reason, or read
    /// again): [`MarkOutcome::Duplicate`] with the stored outcome when the key was
    /// processed; [`MarkOutcome::InProgress`] when a lease holds it or it changed under
    /// the transaction (leave the message for redelivery).
    ///
    /// # Errors
    /// [`IdempotencyError::PayloadMismatch`] when the key's item has another fingerprint;
    /// [`IdempotencyError::Backend`] when the read fails;
    /// [`IdempotencyError::CorruptRecord`] when the item cannot be read.
    pub async fn interpret_marker_cancellation(
        &self,
        reasons: &[CancellationReason],
        index: usize,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
    ) -> Result<Option<MarkOutcome>, IdempotencyError> {
        let Some(reason) = reasons.get(index) else {
            return Ok(None);
        };
        if reason.code() != Some("ConditionalCheckFailed") {
            return Ok(None);
        }
        let record = match reason.item() {
            Some(item) if !item.is_empty() => Some(self.parse(key, item)?),
            _ => self.read(key, StoreOperation::MarkProcessed).await?,
        };
        let now = SystemTime::now();
        let outcome = match decide_claim(record.as_ref(), fingerprint, now) {
            ClaimDecision::Answer(ClaimOutcome::Processed(outcome)) => {
                MarkOutcome::Duplicate(outcome)
            }
            ClaimDecision::Answer(ClaimOutcome::InProgress { held_until }) => {
                MarkOutcome::InProgress { held_until }
            }
            ClaimDecision::Mismatch { stored } => {
                return Err(IdempotencyError::PayloadMismatch {
                    key: key.clone(),
                    stored,
                    presented: *fingerprint,
                });
            }
            // The item changed since the transaction ran (released, expired): free now,
            // so a redelivery will succeed.
            ClaimDecision::Answer(ClaimOutcome::Claimed { .. }) | ClaimDecision::Grant { .. } => {
                MarkOutcome::InProgress { held_until: now }
            }
        };
        Ok(Some(outcome))
    }
}
