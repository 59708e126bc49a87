//! The policy itself: the rules of its life, apart from storage and HTTP.
//!
//! A [`Policy`] changes only through its methods, each of which checks the transition
//! and returns the event to publish; the policy's version counts its events, so the
//! outbox's per-aggregate sequence and the HTTP `ETag` are the same number.

use dovetail_contracts::Money;
use dovetail_contracts::policy::{
    PolicyCancelled, PolicyDrafted, PolicyIssued, PolicySnapshot, PolicyStatus, PolicyUpdated,
};
use serde::{Deserialize, Serialize};
use time::Date;

/// A policy, always valid: see [`PolicyTerms::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    snapshot: PolicySnapshot,
}

/// The terms a caller sends to draft a policy (the body of `POST /policies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTerms {
    /// The customer who will hold the policy.
    pub customer_id: String,
    /// What it insures.
    pub product_line: String,
    /// The most a claim pays before the deductible.
    pub coverage_limit: Money,
    /// What the customer pays of each claim.
    pub deductible: Money,
    /// The yearly premium.
    pub premium: Money,
    /// The first day covered.
    #[serde(with = "dovetail_contracts::date")]
    pub effective_date: Date,
    /// The last day covered.
    #[serde(with = "dovetail_contracts::date")]
    pub expiry_date: Date,
}

/// Changes to a policy's terms (the body of `PATCH /policies/{id}`); absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermsChange {
    /// A new product line.
    pub product_line: Option<String>,
    /// A new coverage limit.
    pub coverage_limit: Option<Money>,
    /// A new deductible.
    pub deductible: Option<Money>,
    /// A new premium.
    pub premium: Option<Money>,
    /// A new first day.
    #[serde(default, with = "dovetail_contracts::date::option")]
    pub effective_date: Option<Date>,
    /// A new last day.
    #[serde(default, with = "dovetail_contracts::date::option")]
    pub expiry_date: Option<Date>,
}

/// Why a change is refused: each says what is wrong and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A field's value breaks a rule.
    #[error("`{field}`: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule and what to send.
        message: String,
    },
    /// The transition is not allowed from the current status.
    #[error("policy {policy_id} is {status}; {action} only applies to {allowed} policies")]
    Transition {
        /// The policy.
        policy_id: String,
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
pub enum PolicyChange {
    /// From [`Policy::draft`].
    Drafted(PolicyDrafted),
    /// From [`Policy::issue`].
    Issued(PolicyIssued),
    /// From [`Policy::update`].
    Updated(PolicyUpdated),
    /// From [`Policy::cancel`].
    Cancelled(PolicyCancelled),
}

impl PolicyTerms {
    /// Checks the rules every policy's terms obey.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] naming the first field that breaks one.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |field, message: &str| {
            Err(PolicyError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if !is_identifier(&self.customer_id, 64) {
            return invalid(
                "customer_id",
                "must be 1 to 64 characters of letters, digits, `-` and `_`",
            );
        }
        if !is_identifier(&self.product_line, 32) {
            return invalid(
                "product_line",
                "must be 1 to 32 characters of letters, digits, `-` and `_`, such as \"home\"",
            );
        }
        if self.coverage_limit.is_zero() {
            return invalid("coverage_limit", "must be more than 0.00");
        }
        if self.deductible >= self.coverage_limit {
            return invalid(
                "deductible",
                &format!(
                    "must be less than the coverage limit ({}), or no claim could be paid",
                    self.coverage_limit
                ),
            );
        }
        if self.premium.is_zero() {
            return invalid("premium", "must be more than 0.00");
        }
        if self.expiry_date <= self.effective_date {
            return invalid(
                "expiry_date",
                &format!("must be after the effective date ({})", self.effective_date),
            );
        }
        Ok(())
    }
}

fn is_identifier(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Policy {
    /// Drafts a new policy with id `policy_id`.
    ///
    /// # Errors
    /// [`PolicyError::Invalid`] when the terms break a rule.
    pub fn draft(
        policy_id: String,
        terms: PolicyTerms,
    ) -> Result<(Self, PolicyChange), PolicyError> {
        terms.validate()?;
        let snapshot = PolicySnapshot {
            policy_id,
            customer_id: terms.customer_id,
            product_line: terms.product_line,
            coverage_limit: terms.coverage_limit,
            deductible: terms.deductible,
            premium: terms.premium,
            effective_date: terms.effective_date,
            expiry_date: terms.expiry_date,
            status: PolicyStatus::Draft,
            version: 1,
        };
        let change = PolicyChange::Drafted(PolicyDrafted {
            policy: snapshot.clone(),
        });
        Ok((Self { snapshot }, change))
    }

    /// A policy as stored.
    pub fn from_snapshot(snapshot: PolicySnapshot) -> Self {
        Self { snapshot }
    }

    /// The policy's state.
    pub fn snapshot(&self) -> &PolicySnapshot {
        &self.snapshot
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.snapshot.policy_id
    }

    /// Its version (the number of its events).
    pub fn version(&self) -> u64 {
        self.snapshot.version
    }

    /// Its status on `today`: an active policy past its expiry date is expired.
    pub fn status_on(&self, today: Date) -> PolicyStatus {
        match self.snapshot.status {
            PolicyStatus::Active if self.snapshot.expiry_date < today => PolicyStatus::Expired,
            status => status,
        }
    }

    /// Issues a draft: it becomes active.
    ///
    /// # Errors
    /// [`PolicyError::Transition`] unless the policy is a draft.
    pub fn issue(&self) -> Result<(Self, PolicyChange), PolicyError> {
        self.require("issuing", "draft", &[PolicyStatus::Draft])?;
        let next = self.next(|snapshot| snapshot.status = PolicyStatus::Active);
        let change = PolicyChange::Issued(PolicyIssued {
            policy: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    /// Changes the terms of a draft or active policy.
    ///
    /// # Errors
    /// [`PolicyError::Transition`] for cancelled policies; [`PolicyError::Invalid`] when
    /// nothing changes or the new terms break a rule.
    pub fn update(&self, change: TermsChange) -> Result<(Self, PolicyChange), PolicyError> {
        self.require(
            "updating",
            "draft or active",
            &[PolicyStatus::Draft, PolicyStatus::Active],
        )?;
        if change == TermsChange::default() {
            return Err(PolicyError::Invalid {
                field: "(the body)",
                message: "names no field to change; send at least one of product_line, \
                          coverage_limit, deductible, premium, effective_date, expiry_date"
                    .to_owned(),
            });
        }
        let current = &self.snapshot;
        let terms = PolicyTerms {
            customer_id: current.customer_id.clone(),
            product_line: change
                .product_line
                .unwrap_or_else(|| current.product_line.clone()),
            coverage_limit: change.coverage_limit.unwrap_or(current.coverage_limit),
            deductible: change.deductible.unwrap_or(current.deductible),
            premium: change.premium.unwrap_or(current.premium),
            effective_date: change.effective_date.unwrap_or(current.effective_date),
            expiry_date: change.expiry_date.unwrap_or(current.expiry_date),
        };
        terms.validate()?;
        let next = self.next(|snapshot| {
            snapshot.product_line = terms.product_line;
            snapshot.coverage_limit = terms.coverage_limit;
            snapshot.deductible = terms.deductible;
            snapshot.premium = terms.premium;
            snapshot.effective_date = terms.effective_date;
            snapshot.expiry_date = terms.expiry_date;
        });
        let change = PolicyChange::Updated(PolicyUpdated {
            policy: next.snapshot.clone(),
        });
        Ok((next, change))
    }

    /// Cancels a draft or active policy.
    ///
    /// # Errors
    /// [`PolicyError::Transition`] when it is already cancelled.
    pub fn cancel(&self, reason: Option<String>) -> Result<(Self, PolicyChange), PolicyError> {
        self.require(
            "cancelling",
            "draft or active",
            &[PolicyStatus::Draft, PolicyStatus::Active],
        )?;
        if reason.as_ref().is_some_and(|reason| reason.len() > 500) {
            return Err(PolicyError::Invalid {
                field: "reason",
                message: "must be at most 500 characters".to_owned(),
            });
        }
        let next = self.next(|snapshot| snapshot.status = PolicyStatus::Cancelled);
        let change = PolicyChange::Cancelled(PolicyCancelled {
            policy: next.snapshot.clone(),
            reason,
        });
        Ok((next, change))
    }

    fn require(
        &self,
        action: &'static str,
        allowed: &'static str,
        statuses: &[PolicyStatus],
    ) -> Result<(), PolicyError> {
        if statuses.contains(&self.snapshot.status) {
            Ok(())
        } else {
            Err(PolicyError::Transition {
                policy_id: self.snapshot.policy_id.clone(),
                status: self.snapshot.status.as_str(),
                action,
                allowed,
            })
        }
    }

    fn next(&self, change: impl FnOnce(&mut PolicySnapshot)) -> Self {
        let mut snapshot = self.snapshot.clone();
        change(&mut snapshot);
        snapshot.version += 1;
        Self { snapshot }
    }
}

#[cfg(test)]
mod tests {
    use super::{Policy, PolicyChange, PolicyError, PolicyTerms, TermsChange};
    use dovetail_contracts::policy::PolicyStatus;
    use time::macros::date;

    fn terms() -> PolicyTerms {
        PolicyTerms {
            customer_id: "cust-1".into(),
            product_line: "home".into(),
            coverage_limit: "10000.00".parse().unwrap(),
            deductible: "250.00".parse().unwrap(),
            premium: "120.00".parse().unwrap(),
            effective_date: date!(2026 - 01 - 01),
            expiry_date: date!(2026 - 12 - 31),
        }
    }

    #[test]
    fn a_policy_lives_from_draft_to_active_to_cancelled_one_version_per_event() {
        let (draft, change) = Policy::draft("pol-1".into(), terms()).unwrap();
        assert!(matches!(change, PolicyChange::Drafted(_)));
        assert_eq!(
            (draft.version(), draft.snapshot().status),
            (1, PolicyStatus::Draft)
        );
        let (active, _) = draft.issue().unwrap();
        assert_eq!(
            (active.version(), active.snapshot().status),
            (2, PolicyStatus::Active)
        );
        let (updated, _) = active
            .update(TermsChange {
                premium: Some("130.00".parse().unwrap()),
                ..TermsChange::default()
            })
            .unwrap();
        assert_eq!(updated.snapshot().premium.to_string(), "130.00");
        let (cancelled, change) = updated.cancel(Some("moved abroad".into())).unwrap();
        assert_eq!(cancelled.version(), 4);
        let PolicyChange::Cancelled(event) = change else {
            panic!("{change:?}")
        };
        assert_eq!(event.reason.as_deref(), Some("moved abroad"));
    }

    #[test]
    fn transitions_out_of_order_are_refused_with_the_reason() {
        let (draft, _) = Policy::draft("pol-1".into(), terms()).unwrap();
        let (active, _) = draft.issue().unwrap();
        let error = active.issue().unwrap_err().to_string();
        assert_eq!(
            error,
            "policy pol-1 is active; issuing only applies to draft policies"
        );
        let (cancelled, _) = active.cancel(None).unwrap();
        assert!(matches!(
            cancelled.cancel(None),
            Err(PolicyError::Transition { .. })
        ));
        assert!(matches!(
            cancelled.update(TermsChange {
                premium: Some("1".parse().unwrap()),
                ..TermsChange::default()
            }),
            Err(PolicyError::Transition { .. })
        ));
    }

    #[test]
    fn terms_that_break_a_rule_name_the_field() {
        type Breaks = fn(&mut PolicyTerms);
        let cases: [(Breaks, &str); 5] = [
            (|t| t.customer_id = String::new(), "customer_id"),
            (|t| t.product_line = "home insurance".into(), "product_line"),
            (
                |t| t.coverage_limit = "0".parse().unwrap(),
                "coverage_limit",
            ),
            (|t| t.deductible = "10000.00".parse().unwrap(), "deductible"),
            (|t| t.expiry_date = t.effective_date, "expiry_date"),
        ];
        for (breaks, field) in cases {
            let mut terms = terms();
            breaks(&mut terms);
            let error = Policy::draft("pol-1".into(), terms).unwrap_err();
            assert!(
                matches!(error, PolicyError::Invalid { field: f, .. } if f == field),
                "{error}"
            );
        }
    }

    #[test]
    fn an_active_policy_past_its_expiry_is_expired() {
        let (draft, _) = Policy::draft("pol-1".into(), terms()).unwrap();
        let (active, _) = draft.issue().unwrap();
        assert_eq!(
            active.status_on(date!(2026 - 12 - 31)),
            PolicyStatus::Active
        );
        assert_eq!(
            active.status_on(date!(2027 - 01 - 01)),
            PolicyStatus::Expired
        );
        assert_eq!(draft.status_on(date!(2027 - 01 - 01)), PolicyStatus::Draft);
    }

    #[test]
    fn an_empty_update_is_refused() {
        let (draft, _) = Policy::draft("pol-1".into(), terms()).unwrap();
        assert!(matches!(
            draft.update(TermsChange::default()),
            Err(PolicyError::Invalid { .. })
        ));
    }
}
