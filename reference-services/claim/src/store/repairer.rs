//! The claim store as the owner's [`Repair`] of a consistency runner: the runner's
//! repairs of the claims' replicas (the search index) become [`ClaimStore::repair`] calls,
//! its run id their causation id.

use dovetail_consistency::{BoxError, Repair, RepairOutcome, RunId};
use dovetail_events::envelope::EventId;
use futures_util::future::BoxFuture;

use super::{ClaimStore, SkipReason};

impl Repair for ClaimStore {
    fn repair(
        &self,
        keys: Vec<String>,
        run: RunId,
    ) -> BoxFuture<'_, Result<RepairOutcome, BoxError>> {
        Box::pin(async move {
            let cause = EventId::from_uuid(run.as_uuid())?;
            let report = ClaimStore::repair(self, keys, cause).await?;
            Ok(RepairOutcome {
                republished: report.republished.into_iter().map(|r| r.claim_id).collect(),
                skipped: report
                    .skipped
                    .into_iter()
                    .map(|skipped| {
                        let reason = match skipped.reason {
                            SkipReason::NotFound => {
                                "the claim service has no such claim: remove it at the replica"
                                    .to_owned()
                            }
                            SkipReason::Refused(why) => format!("the outbox refused: {why}"),
                        };
                        (skipped.claim_id, reason)
                    })
                    .collect(),
                deferred: report.deferred,
            })
        })
    }
}
