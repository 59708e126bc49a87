//! The claim service's cross-service invariant, checked like drift by a
//! [`dovetail_consistency::Runner`]: every claim's policy exists with the claim's
//! customer, and the claim asks at most what that policy can pay (its coverage limit less
//! its deductible, as when the claim was filed).
//!
//! It reads the claim service's own data only: its claims and its replica of the policy
//! service's policies. The runner checks that replica against the policy service first
//! (pair `policy-service` → `claim-service`), so where the replica has no drift this is a
//! check against the owner; where it has, the replica's drift is reported beside it and
//! repaired, and the next run judges again. The cost is a scan of every claim, in pages
//! of [`PAGE`] by claim id.

use dovetail_consistency::{BoxError, Invariant, Violation, Violations};
use dovetail_contracts::claim::ClaimSnapshot;
use dovetail_contracts::policy::PolicySnapshot;
use futures_util::future::BoxFuture;

use crate::store::ClaimStore;

/// The invariant's name in run records.
pub const NAME: &str = "claim-policy";
/// A claim names a policy the replica does not hold.
pub const POLICY_MISSING: &str = "claim_policy_missing";
/// A claim's customer is not its policy's.
pub const CUSTOMER_MISMATCH: &str = "claim_customer_mismatch";
/// A claim asks more than its policy can pay.
pub const AMOUNT_OVER_PAYABLE: &str = "claim_amount_over_payable";
/// Claims read per page.
pub const PAGE: usize = 500;

/// The claim-policy invariant over a [`ClaimStore`].
#[derive(Debug, Clone)]
pub struct ClaimPolicyInvariant {
    store: ClaimStore,
}

impl ClaimPolicyInvariant {
    /// The invariant over `store`'s claims and policy replica.
    pub fn new(store: ClaimStore) -> Self {
        Self { store }
    }
}

/// What breaks the invariant in `claim`, whose policy the replica holds as `policy`
/// (`None`: it holds none), if anything.
pub fn judge(claim: &ClaimSnapshot, policy: Option<&PolicySnapshot>) -> Option<Violation> {
    let violation = |kind: &str, detail: String| Violation {
        key: claim.claim_id.clone(),
        kind: kind.to_owned(),
        detail,
    };
    let Some(policy) = policy else {
        return Some(violation(
            POLICY_MISSING,
            format!(
                "claim {} names policy {}, which the policy service has not published (not in \
                 the claim service's replica)",
                claim.claim_id, claim.policy_id
            ),
        ));
    };
    if policy.customer_id != claim.customer_id {
        return Some(violation(
            CUSTOMER_MISMATCH,
            format!(
                "claim {} is customer {}'s, but its policy {} is customer {}'s",
                claim.claim_id, claim.customer_id, policy.policy_id, policy.customer_id
            ),
        ));
    }
    let payable = policy.coverage_limit.saturating_sub(policy.deductible);
    if claim.amount > payable {
        return Some(violation(
            AMOUNT_OVER_PAYABLE,
            format!(
                "claim {} asks {}, more than policy {} (version {}) can pay: {payable} (coverage \
                 limit {} less deductible {})",
                claim.claim_id,
                claim.amount,
                policy.policy_id,
                policy.version,
                policy.coverage_limit,
                policy.deductible
            ),
        ));
    }
    None
}

impl Invariant for ClaimPolicyInvariant {
    fn name(&self) -> &str {
        NAME
    }

    fn source(&self) -> &str {
        crate::SERVICE
    }

    fn against(&self) -> &str {
        "policy-service"
    }

    fn kinds(&self) -> &[&'static str] {
        &[POLICY_MISSING, CUSTOMER_MISMATCH, AMOUNT_OVER_PAYABLE]
    }

    fn violations(&self, limit: usize) -> BoxFuture<'_, Result<Violations, BoxError>> {
        Box::pin(async move {
            let mut found = Violations {
                counts: self
                    .kinds()
                    .iter()
                    .map(|kind| ((*kind).to_owned(), 0))
                    .collect(),
                listed: Vec::new(),
            };
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .claims_with_policies(after.as_deref(), PAGE)
                    .await?;
                let Some((last, _)) = page.last() else { break };
                after = Some(last.claim_id.clone());
                for (claim, policy) in &page {
                    if let Some(violation) = judge(claim, policy.as_ref()) {
                        if let Some((_, count)) = found
                            .counts
                            .iter_mut()
                            .find(|(kind, _)| *kind == violation.kind)
                        {
                            *count += 1;
                        }
                        if found.listed.len() < limit {
                            found.listed.push(violation);
                        }
                    }
                }
                if page.len() < PAGE {
                    break;
                }
            }
            Ok(found)
        })
    }
}
