//! The claim itself: the rules for filing one against a policy and for moving it from
//! submitted to paid, apart from storage and HTTP.

use dovetail_contracts::Money;
use dovetail_contracts::claim::{
    ClaimApproved, ClaimFiled, ClaimPaid, ClaimRejected, ClaimReviewStarted, ClaimSnapshot,
    ClaimStatus,
};
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use serde::Deserialize;
use time::Date;

/// What a customer sends to file a claim (the body of `POST /claims`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The policy the claim is against.
    pub policy_id: String,
    /// The day of the incident.
    #[serde(with = "dovetail_contracts::date")]
    pub incident_date: Date,
    /// The amount claimed.
    pub amount: Money,
    /// What happened.
    pub description: String,
}

/// A claim, always valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    snapshot: ClaimSnapshot,
}

/// Why a claim cannot be filed or changed; each says why and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// A field's value breaks a rule.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule, and what to send.
        message: String,
    },
    /// The claim service's replica has no such policy: it does not exist, or it was
    /// created moments ago and its event has not arrived yet.
    #[error(
        "the claim service does not know policy {policy_id:?} yet: if it was issued moments \
         ago, its events may still be on their way (retry in a second); otherwise check the id"
    )]
    PolicyUnknown {
        /// The policy.
        policy_id: String,
    },
    /// The policy does not cover the claim.
    #[error("{0}")]
    NotCovered(String),
    /// The transition is not allowed from the claim's status.
    #[error("claim {claim_id} is {status}; {action} only applies to {allowed} claims")]
    Transition {
        /// The claim.
        claim_id: String,
        /// Its status.
        status: &'static str,
        /// What was asked.
        action: &'static str,
        /// The statuses it applies to.
        allowed: &'static str,
    },
}

/// The event a change produces, ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimChange {
    /// From [`Claim::file`].
    Filed(ClaimFiled),
    /// From [`Claim::start_review`].
    ReviewStarted(ClaimReviewStarted),
    /// From [`Claim::approve`].
    Approved(ClaimApproved),
    /// From [`Claim::reject`].
    Rejected(ClaimRejected),
    /// From [`Claim::pay`].
    Paid(ClaimPaid),
}

impl ClaimChange {
    /// The claim after the change.
    pub fn claim(&self) -> &ClaimSnapshot {
        match self {
            Self::Filed(event) => &event.claim,
            Self::ReviewStarted(event) => &event.claim,
            Self::Approved(event) => &event.claim,
            Self::Rejected(event) => &event.claim,
            Self::Paid(event) => &event.claim,
        }
    }
}

impl Claim {
    /// Files a claim against `policy` (the replica's copy, `None` when the replica does
    /// not have it), on `today`.
    ///
    /// The policy must be active (not a draft, not cancelled) and cover the incident date,
    /// the incident cannot be in the future, and the amount must be more than zero and at
    /// most the coverage limit less the deductible.
    ///
    /// # Errors
    /// [`ClaimError::Invalid`], [`ClaimError::PolicyUnknown`] or
    /// [`ClaimError::NotCovered`], each with the reason.
    pub fn file(
        claim_id: String,
        request: ClaimRequest,
        policy: Option<&PolicySnapshot>,
        today: Date,
    ) -> Result<(Self, ClaimChange), ClaimError> {
        let invalid = |field, message: String| Err(ClaimError::Invalid { field, message });
        if request.description.trim().is_empty() || request.description.len() > 2000 {
            return invalid(
                "description",
                "must say what happened in 1 to 2000 characters".into(),
            );
        }
        if request.amount.is_zero() {
            return invalid("amount", "must be more than 0.00".into());
        }
        if request.incident_date > today {
            return invalid(
                "incident_date",
                format!(
                    "{} is in the future; claims are for incidents that happened",
                    request.incident_date
                ),
            );
        }
        let Some(policy) = policy else {
            return Err(ClaimError::PolicyUnknown {
                policy_id: request.policy_id,
            });
        };
        covers(policy, &request)?;
        let snapshot = ClaimSnapshot {
            claim_id,
            policy_id: request.policy_id,
            customer_id: policy.customer_id.clone(),
            incident_date: request.incident_date,
            amount: request.amount,
            description: request.description,
            status: ClaimStatus::Submitted,
            rejection_reason: None,
            version: 1,
        };
        let change = ClaimChange::Filed(ClaimFiled {
            claim: snapshot.clone(),
        });
        Ok((Self { snapshot }, change))
    }

    /// A claim as stored.
    pub fn from_snapshot(snapshot: ClaimSnapshot) -> Self {
        Self { snapshot }
    }

    /// Its state.
    pub fn snapshot(&self) -> &ClaimSnapshot {
        &self.snapshot
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.snapshot.claim_id
    }

    /// Its version (the number of its events).
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// A reviewer takes a submitted claim.
    ///
    /// # Errors
    /// [`ClaimError::Transition`] unless it is submitted.
    pub fn start_review(&self) -> Result<(Self, ClaimChange), ClaimError> {
        let next = self.move_to(
            "reviewing",
            "submitted",
            &[ClaimStatus::Submitted],
            ClaimStatus::UnderReview,
        )?;
        let change = ClaimChange::ReviewStarted(ClaimReviewStarted {
            claim: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    /// Approves a claim under review.
    ///
    /// # Errors
    /// [`ClaimError::Transition`] unless it is under review.
    pub fn approve(&self) -> Result<(Self, ClaimChange), ClaimError> {
        let next = self.move_to(
            "approving",
            "under_review",
            &[ClaimStatus::UnderReview],
            ClaimStatus::Approved,
        )?;
        let change = ClaimChange::Approved(ClaimApproved {
            claim: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    /// Rejects a submitted claim or one under review, for `reason`.
    ///
    /// # Errors
    /// [`ClaimError::Invalid`] without a reason; [`ClaimError::Transition`] from other
    /// statuses.
    pub fn reject(&self, reason: String) -> Result<(Self, ClaimChange), ClaimError> {
        if reason.trim().is_empty() || reason.len() > 500 {
            return Err(ClaimError::Invalid {
                field: "reason",
                message: "say why the claim is rejected, in 1 to 500 characters".into(),
            });
        }
        let mut next = self.move_to(
            "rejecting",
            "submitted or under_review",
            &[ClaimStatus::Submitted, ClaimStatus::UnderReview],
            ClaimStatus::Rejected,
        )?;
        next.snapshot.rejection_reason = Some(reason);
        let change = ClaimChange::Rejected(ClaimRejected {
            claim: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    /// Pays an approved claim.
    ///
    /// # Errors
    /// [`ClaimError::Transition`] unless it is approved.
    pub fn pay(&self) -> Result<(Self, ClaimChange), ClaimError> {
        let next = self.move_to(
            "paying",
            "approved",
            &[ClaimStatus::Approved],
            ClaimStatus::Paid,
        )?;
        let change = ClaimChange::Paid(ClaimPaid {
            claim: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    fn move_to(
        &self,
        action: &'static str,
        allowed: &'static str,
        from: &[ClaimStatus],
        to: ClaimStatus,
    ) -> Result<Self, ClaimError> {
        if !from.contains(&self.snapshot.status) {
            return Err(ClaimError::Transition {
                claim_id: self.snapshot.claim_id.clone(),
                status: self.snapshot.status.as_str(),
                action,
                allowed,
            });
        }
        let mut snapshot = self.snapshot.clone();
        snapshot.status = to;
        snapshot.version += 1;
        Ok(Self { snapshot })
    }
}

/// Whether `policy` covers `request`, and if not, why.
fn covers(policy: &PolicySnapshot, request: &ClaimRequest) -> Result<(), ClaimError> {
    let id = &policy.policy_id;
    match policy.status {
        PolicyStatus::Active | PolicyStatus::Expired => {}
        PolicyStatus::Cancelled => {
            return Err(ClaimError::NotCovered(format!(
                "policy {id} was cancelled; claims can only be filed against active policies"
            )));
        }
        PolicyStatus::Draft => {
            return Err(ClaimError::NotCovered(format!(
                "policy {id} is a draft that was never issued, so it covers nothing; if it was \
                 issued moments ago, the claim service may not have seen that yet (retry in a second)"
            )));
        }
    }
    if request.incident_date < policy.effective_date || request.incident_date > policy.expiry_date {
        return Err(ClaimError::NotCovered(format!(
            "policy {id} covers incidents from {} to {}, not on {}",
            policy.effective_date, policy.expiry_date, request.incident_date
        )));
    }
    let payable = policy.coverage_limit.saturating_sub(policy.deductible);
    if request.amount > payable {
        return Err(ClaimError::Invalid {
            field: "amount",
            message: format!(
                "{} is more than policy {id} can pay: at most {payable} (coverage limit {} less \
                 deductible {})",
                request.amount, policy.coverage_limit, policy.deductible
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Claim, ClaimError, ClaimRequest};
    use dovetail_contracts::claim::ClaimStatus;
    use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
    use time::macros::date;

    fn policy(status: PolicyStatus) -> PolicySnapshot {
        PolicySnapshot {
            policy_id: "pol-1".into(),
            customer_id: "cust-1".into(),
            product_line: "home".into(),
            coverage_limit: "10000.00".parse().unwrap(),
            deductible: "250.00".parse().unwrap(),
            premium: "120.00".parse().unwrap(),
            effective_date: date!(2026 - 01 - 01),
            expiry_date: date!(2026 - 12 - 31),
            status,
            version: 2,
        }
    }

    fn request(amount: &str, incident: time::Date) -> ClaimRequest {
        ClaimRequest {
            policy_id: "pol-1".into(),
            incident_date: incident,
            amount: amount.parse().unwrap(),
            description: "burst pipe".into(),
        }
    }

    const TODAY: time::Date = date!(2026 - 06 - 30);

    fn file(amount: &str, incident: time::Date, status: PolicyStatus) -> Result<Claim, ClaimError> {
        Claim::file(
            "clm-1".into(),
            request(amount, incident),
            Some(&policy(status)),
            TODAY,
        )
        .map(|(claim, _)| claim)
    }

    #[test]
    fn a_covered_claim_is_filed_and_goes_to_paid() {
        let claim = file("9750.00", date!(2026 - 03 - 01), PolicyStatus::Active).unwrap();
        assert_eq!(
            (
                claim.snapshot().status,
                claim.snapshot().customer_id.as_str()
            ),
            (ClaimStatus::Submitted, "cust-1")
        );
        let (claim, _) = claim.start_review().unwrap();
        let (claim, _) = claim.approve().unwrap();
        let (claim, _) = claim.pay().unwrap();
        assert_eq!(
            (claim.snapshot().status, claim.version()),
            (ClaimStatus::Paid, 4)
        );
        assert!(matches!(claim.pay(), Err(ClaimError::Transition { .. })));
    }

    #[test]
    fn the_most_a_claim_can_ask_is_the_limit_less_the_deductible() {
        let error = file("9750.01", date!(2026 - 03 - 01), PolicyStatus::Active).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`amount`: 9750.01 is more than policy pol-1 can pay: at most 9750.00 (coverage limit \
             10000.00 less deductible 250.00)"
        );
    }

    #[test]
    fn claims_outside_the_cover_say_why() {
        let cancelled = file("10", date!(2026 - 03 - 01), PolicyStatus::Cancelled).unwrap_err();
        assert!(
            cancelled.to_string().contains("was cancelled"),
            "{cancelled}"
        );
        let draft = file("10", date!(2026 - 03 - 01), PolicyStatus::Draft).unwrap_err();
        assert!(draft.to_string().contains("never issued"), "{draft}");
        let before = file("10", date!(2025 - 12 - 31), PolicyStatus::Active).unwrap_err();
        assert!(
            before
                .to_string()
                .contains("covers incidents from 2026-01-01 to 2026-12-31"),
            "{before}"
        );
        let future = file("10", date!(2026 - 07 - 01), PolicyStatus::Active).unwrap_err();
        assert!(matches!(
            future,
            ClaimError::Invalid {
                field: "incident_date",
                ..
            }
        ));
        let zero = file("0", date!(2026 - 03 - 01), PolicyStatus::Active).unwrap_err();
        assert!(matches!(
            zero,
            ClaimError::Invalid {
                field: "amount",
                ..
            }
        ));
        let unknown = Claim::file(
            "c".into(),
            request("10", date!(2026 - 03 - 01)),
            None,
            TODAY,
        )
        .unwrap_err();
        assert!(matches!(unknown, ClaimError::PolicyUnknown { .. }));
    }

    #[test]
    fn rejection_needs_a_reason_and_an_open_claim() {
        let claim = file("10", date!(2026 - 03 - 01), PolicyStatus::Active).unwrap();
        assert!(matches!(
            claim.reject(" ".into()),
            Err(ClaimError::Invalid {
                field: "reason",
                ..
            })
        ));
        let (rejected, _) = claim.reject("not covered: wear and tear".into()).unwrap();
        assert_eq!(
            rejected.snapshot().rejection_reason.as_deref(),
            Some("not covered: wear and tear")
        );
        assert!(matches!(
            rejected.start_review(),
            Err(ClaimError::Transition { .. })
        ));
        assert!(matches!(
            claim.approve(),
            Err(ClaimError::Transition { .. })
        ));
    }
}
