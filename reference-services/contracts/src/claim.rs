//! The claim service's events: each carries the claim as it is after the change.

use dovetail_events::envelope::Event;
use serde::{Deserialize, Serialize};
use time::Date;

use crate::Money;

/// The topic claim events are published to.
pub const TOPIC: &str = "claim-events";

/// The aggregate type of claim events.
pub const AGGREGATE_TYPE: &str = "claim";

/// Where a claim is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Filed, waiting for a reviewer.
    Submitted,
    /// A reviewer is looking at it.
    UnderReview,
    /// Accepted, to be paid.
    Approved,
    /// Refused; final.
    Rejected,
    /// Paid; final.
    Paid,
}

impl ClaimStatus {
    /// The status as it appears in JSON (`"under_review"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::UnderReview => "under_review",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Paid => "paid",
        }
    }
}

/// A claim at one version: what every claim event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSnapshot {
    /// The claim's id.
    pub claim_id: String,
    /// The policy it is filed against.
    pub policy_id: String,
    /// The customer who holds that policy.
    pub customer_id: String,
    /// The day of the incident.
    #[serde(with = "crate::date")]
    pub incident_date: Date,
    /// The amount claimed.
    pub amount: Money,
    /// What happened, in the customer's words.
    pub description: String,
    /// Where the claim is.
    pub status: ClaimStatus,
    /// Why it was rejected, when it was.
    pub rejection_reason: Option<String>,
    /// The claim's version: the sequence of the event that carries this snapshot.
    pub version: u64,
}

macro_rules! claim_events {
    ($($(#[$doc:meta])* $name:ident = $type:literal;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            /// The claim after the change.
            pub claim: ClaimSnapshot,
        }

        impl Event for $name {
            const TYPE: &'static str = $type;
            const VERSION: u32 = 1;
        }
    )*};
}

claim_events! {
    /// A claim was filed.
    ClaimFiled = "claim.filed";
    /// A reviewer took a claim.
    ClaimReviewStarted = "claim.review_started";
    /// A claim was approved.
    ClaimApproved = "claim.approved";
    /// A claim was rejected.
    ClaimRejected = "claim.rejected";
    /// A claim was paid.
    ClaimPaid = "claim.paid";
}
