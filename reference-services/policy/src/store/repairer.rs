//! The policy store as the owner's [`Repair`] of a consistency runner: the runner's
//! repairs become [`PolicyStore::repair`] calls, its run id their causation id.

use dovetail_consistency::{Repair, RunId};
use dovetail_service_kit::store::{RunnerRepair, runner_repair};

use super::PolicyStore;

impl Repair for PolicyStore {
    fn repair(&self, keys: Vec<String>, run: RunId) -> RunnerRepair<'_> {
        runner_repair(run, "the policy service", "policy", move |cause| {
            PolicyStore::repair(self, keys, cause)
        })
    }
}
