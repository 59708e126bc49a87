//! [`IdempotencyStore`] on DynamoDB: claims, heartbeats, completions and releases as
//! conditional writes of the key's item.

use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::idempotency::clock::{duration_millis, epoch_micros, epoch_millis, from_epoch_millis};
use crate::idempotency::record::{
    ClaimDecision, LeaseCheck, RELEASED_HELD_UNTIL_MS, check_lease, decide_claim,
    in_progress_expiry, next_fencing_token,
};
use crate::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoreOperation, StoredOutcome,
};

use super::{
    CLAIM_ATTEMPTS, DynamoDbIdempotencyStore, HELD_BY_LEASE, PROCESSED, Problem, STORE, lost,
    number, ttl_seconds,
};

impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn try_claim(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        owner: &LeaseOwner,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyError> {
        // First try as if the key were new; a refusal tells what is there.
        let mut fencing_token = next_fencing_token(None, epoch_micros(SystemTime::now()));
        for _ in 0..CLAIM_ATTEMPTS {
            let now = SystemTime::now();
            let now_ms = epoch_millis(now);
            let held_until_ms = now_ms.saturating_add(duration_millis(lease));
            let written = self
                .put_lease(
                    key,
                    fingerprint,
                    owner,
                    fencing_token,
                    now_ms,
                    held_until_ms,
                )
                .await?;
            let current = match written {
                Ok(previous) => {
                    // The previous item, if it still counted, was a lease taken over.
                    let taken_over_from = previous
                        .filter(|record| record.is_live_at(now_ms))
                        .and_then(|record| record.owner);
                    return Ok(ClaimOutcome::Claimed {
                        lease: Lease::new(
                            key.clone(),
                            owner.clone(),
                            fencing_token,
                            from_epoch_millis(held_until_ms),
                        ),
                        taken_over_from,
                    });
                }
                Err(Some(current)) => Some(current),
                Err(None) => self.read(key, StoreOperation::Claim).await?,
            };
            match decide_claim(current.as_ref(), fingerprint, now) {
                ClaimDecision::Answer(outcome) => return Ok(outcome),
                ClaimDecision::Mismatch { stored } => {
                    return Err(IdempotencyError::PayloadMismatch {
                        key: key.clone(),
                        stored,
                        presented: *fingerprint,
                    });
                }
                // Claimable after all (it changed, or our token was not above the
                // previous one): try again with a token above what is there.
                ClaimDecision::Grant {
                    fencing_token: next,
                    ..
                } => fencing_token = next.max(fencing_token.saturating_add(1)),
            }
        }
        Err(IdempotencyError::backend(
            STORE,
            StoreOperation::Claim,
            Problem(format!(
                "the item of key `{key}` kept changing; gave up after {CLAIM_ATTEMPTS} attempts"
            )),
        ))
    }

    async fn heartbeat(&self, lease: &Lease, extend: Duration) -> Result<Lease, IdempotencyError> {
        let now_ms = epoch_millis(SystemTime::now());
        let held_until_ms = now_ms.saturating_add(duration_millis(extend));
        let expires_at_ms = in_progress_expiry(held_until_ms);
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression(
                "SET #held_until_ms = :held_until_ms, #expires_at_ms = :expires_at_ms, #ttl = :ttl",
            )
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
                "ttl",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [
                    (":held_until_ms", number(held_until_ms)),
                    (":expires_at_ms", number(expires_at_ms)),
                    (":ttl", number(ttl_seconds(expires_at_ms))),
                ],
            )))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(Lease::new(
                lease.key().clone(),
                lease.owner().clone(),
                lease.fencing_token(),
                from_epoch_millis(held_until_ms),
            )),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(lost(lease))
            }
            Err(error) => Err(IdempotencyError::backend(
                STORE,
                StoreOperation::Heartbeat,
                error,
            )),
        }
    }

    async fn complete(
        &self,
        lease: &Lease,
        outcome: StoredOutcome,
        retain: Duration,
    ) -> Result<(), IdempotencyError> {
        let now_ms = epoch_millis(SystemTime::now());
        let expires_at_ms = now_ms.saturating_add(duration_millis(retain));
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression(
                "SET #state = :processed, #outcome = :outcome, #held_until_ms = :now, \
                 #expires_at_ms = :expires_at_ms, #ttl = :ttl",
            )
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
                "outcome",
                "ttl",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [
                    (":processed", AttributeValue::S(PROCESSED.to_owned())),
                    (
                        ":outcome",
                        AttributeValue::B(Blob::new(outcome.into_bytes())),
                    ),
                    (":expires_at_ms", number(expires_at_ms)),
                    (":ttl", number(ttl_seconds(expires_at_ms))),
                ],
            )))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let refused = match sent {
            Ok(_) => return Ok(()),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(refused)) => refused
                    .item()
                    .filter(|item| !item.is_empty())
                    .map(|item| self.parse(lease.key(), item))
                    .transpose()?,
                _ => {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Complete,
                        error,
                    ));
                }
            },
        };
        let current = match refused {
            Some(current) => Some(current),
            None => self.read(lease.key(), StoreOperation::Complete).await?,
        };
        // A retried complete whose first attempt went through is a success.
        match check_lease(current.as_ref(), lease, now_ms) {
            LeaseCheck::CompletedByIt => Ok(()),
            LeaseCheck::Held | LeaseCheck::Lost => Err(lost(lease)),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), IdempotencyError> {
        // The item stays, ownerless and expired, so the next claim raises its token.
        let now_ms = epoch_millis(SystemTime::now());
        let sent = self
            .client
            .update_item()
            .table_name(&self.config.table)
            .set_key(Some(self.key_item(lease.key())))
            .update_expression("SET #held_until_ms = :released REMOVE #owner")
            .condition_expression(HELD_BY_LEASE)
            .set_expression_attribute_names(Some(self.names(&[
                "owner",
                "fencing_token",
                "state",
                "expires_at_ms",
                "held_until_ms",
            ])))
            .set_expression_attribute_values(Some(Self::lease_values(
                lease,
                now_ms,
                [(":released", number(RELEASED_HELD_UNTIL_MS))],
            )))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Err(lost(lease))
            }
            Err(error) => Err(IdempotencyError::backend(
                STORE,
                StoreOperation::Release,
                error,
            )),
        }
    }
}
