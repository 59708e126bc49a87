//! The demo: a newcomer's walk through the system over HTTP — log in as staff, register a
//! customer, draft and issue a policy, watch the claim service's replica catch up, file a
//! claim, see a customer refused a staff action, approve and pay it, see the rules refuse
//! what they should, and find it all in the search service, within the customer's scope —
//! printing each step. Every request carries the bearer token of whoever makes it.
//!
//! This file holds what the demo is asked and answers, and [`run`], the steps in order;
//! `steps.rs` holds each step, `callers.rs` the log-ins, `http.rs` the requests and waits
//! the steps share.

mod callers;
mod http;
mod steps;

use std::time::Duration;

use self::steps::Walk;
use crate::users::Credentials;

/// What the demo saw, for tests and for the summary.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// The policy it issued.
    pub policy_id: String,
    /// The claim it paid.
    pub claim_id: String,
    /// The customer the walk registered (the auth service picked the id).
    pub customer_id: String,
    /// The refusal of a request without a token.
    pub anonymous_refusal: String,
    /// The refusal of the customer's attempt to approve their own claim.
    pub customer_approval_refusal: String,
    /// How long the claim service's replica took to show the issued policy.
    pub replica_lag: Duration,
    /// The refusal of a claim above what the policy pays.
    pub over_limit_refusal: String,
    /// The refusal of a claim on the cancelled policy.
    pub cancelled_refusal: String,
    /// What the customer found searching for the claim's words: `id status` of each hit.
    pub customer_search: Vec<String>,
    /// How many hits another customer got for the same words (none: the scope).
    pub other_customer_hits: usize,
    /// The transcript.
    pub transcript: String,
}

/// Where the services the demo walks through answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The policy service's base URL, such as `http://127.0.0.1:8081`.
    pub policy: String,
    /// The claim service's.
    pub claim: String,
    /// The search service's.
    pub search: String,
    /// The auth service's.
    pub auth: String,
}

impl Services {
    /// The stack's fixed ports on this machine.
    pub fn local() -> Self {
        Self::at(
            &format!("127.0.0.1:{}", crate::POLICY_PORT),
            &format!("127.0.0.1:{}", crate::CLAIM_PORT),
            &format!("127.0.0.1:{}", crate::SEARCH_PORT),
            &format!("127.0.0.1:{}", crate::AUTH_PORT),
        )
    }

    /// Those of a stack started in this process.
    pub fn of(stack: &crate::RunningStack) -> Self {
        Self::at(
            &stack.policy.to_string(),
            &stack.claim.to_string(),
            &stack.search.to_string(),
            &stack.auth.to_string(),
        )
    }

    /// The services at these addresses (`host:port`), over plain HTTP.
    fn at(policy: &str, claim: &str, search: &str, auth: &str) -> Self {
        Self {
            policy: format!("http://{policy}"),
            claim: format!("http://{claim}"),
            search: format!("http://{search}"),
            auth: format!("http://{auth}"),
        }
    }
}

/// Walks through the system at `services` as the stack's staff user and demo customer
/// (`credentials`) and a customer it registers, writing each step to the report's
/// transcript and to `out`.
///
/// # Errors
/// When a service does not answer as the walk expects; the message says which step.
pub async fn run(
    services: &Services,
    credentials: &Credentials,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<DemoReport> {
    let mut walk = Walk::start(services, out);
    walk.log_in(credentials).await?;
    walk.draft_policy().await?;
    walk.issue_policy().await?;
    walk.watch_the_replica().await?;
    walk.file_a_claim_twice().await?;
    walk.refuse_a_claim_over_the_limit().await?;
    walk.refuse_the_customer_a_staff_action().await?;
    walk.settle_the_claim().await?;
    walk.cancel_the_policy().await?;
    walk.search_as_the_customer().await?;
    walk.find_the_cancelled_policy().await?;
    walk.search_as_another_customer().await?;
    Ok(walk.finish())
}
