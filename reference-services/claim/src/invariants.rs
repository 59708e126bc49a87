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
//! of [`PAGE`] by claim id: on SQLite one query a page; on DynamoDB one scan of the
//! service's table a page (see
//! [`ClaimStore::claims_with_policies`](crate::store::ClaimStore::claims_with_policies)).

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

#[cfg(test)]
mod tests {
    use dovetail_contracts::claim::{ClaimSnapshot, ClaimStatus};
    use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
    use time::macros::date;

    use super::{AMOUNT_OVER_PAYABLE, CUSTOMER_MISMATCH, POLICY_MISSING, judge};

    fn policy() -> PolicySnapshot {
        PolicySnapshot {
            policy_id: "pol-1".into(),
            customer_id: "cust-1".into(),
            product_line: "home".into(),
            coverage_limit: "10000.00".parse().unwrap(),
            deductible: "250.00".parse().unwrap(),
            premium: "120.00".parse().unwrap(),
            effective_date: date!(2026 - 01 - 01),
            expiry_date: date!(2026 - 12 - 31),
            status: PolicyStatus::Active,
            version: 2,
        }
    }

    fn claim(customer: &str, amount: &str) -> ClaimSnapshot {
        ClaimSnapshot {
            claim_id: "clm-1".into(),
            policy_id: "pol-1".into(),
            customer_id: customer.into(),
            incident_date: date!(2026 - 06 - 01),
            amount: amount.parse().unwrap(),
            description: "burst pipe".into(),
            status: ClaimStatus::Submitted,
            rejection_reason: None,
            version: 1,
        }
    }

    #[test]
    fn a_claim_within_its_policy_breaks_nothing_up_to_the_limit_less_the_deductible() {
        assert_eq!(judge(&claim("cust-1", "9750.00"), Some(&policy())), None);
    }

    #[test]
    fn each_breach_is_named_with_what_was_found() {
        let missing = judge(&claim("cust-1", "10.00"), None).unwrap();
        assert_eq!(
            (missing.key.as_str(), missing.kind.as_str()),
            ("clm-1", POLICY_MISSING)
        );
        assert!(missing.detail.contains("pol-1"), "{}", missing.detail);

        let stranger = judge(&claim("cust-2", "10.00"), Some(&policy())).unwrap();
        assert_eq!(stranger.kind, CUSTOMER_MISMATCH);
        assert!(stranger.detail.contains("cust-2") && stranger.detail.contains("cust-1"));

        let over = judge(&claim("cust-1", "9750.01"), Some(&policy())).unwrap();
        assert_eq!(over.kind, AMOUNT_OVER_PAYABLE);
        assert!(over.detail.contains("9750.00"), "{}", over.detail);
    }
}
