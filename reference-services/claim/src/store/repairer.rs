//! The claim store as the owner's [`Repair`] of a consistency runner: the runner's
//! repairs of the claims' replicas (the search index) become [`ClaimStore::repair`] calls,
//! its run id their causation id.

use dovetail_consistency::{Repair, RunId};
use dovetail_service_kit::store::{RunnerRepair, runner_repair};

use super::ClaimStore;

impl Repair for ClaimStore {
    fn repair(&self, keys: Vec<String>, run: RunId) -> RunnerRepair<'_> {
        runner_repair(run, "the claim service", "claim", move |cause| {
            ClaimStore::repair(self, keys, cause)
        })
    }
}
