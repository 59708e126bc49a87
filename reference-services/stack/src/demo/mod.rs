//! The demo: a newcomer's walk through the system over HTTP, through the gateway only —
//! log in as staff, register a customer, draft and issue a policy, read it back with the
//! write's consistency token while the claim service's replica and the search index catch
//! up, file a claim, see a customer refused a staff action, approve and pay it, see the
//! rules refuse what they should, find it all in the search service within the
//! customer's scope, read the composed dashboard, and (in a stack of its own) see it
//! answer in part with the search service stopped — printing each step. Every request
//! carries the bearer token of whoever makes it.
//!
//! This file holds what the demo is asked and answers, and [`run`], the steps in order;
//! `steps.rs` holds each step, `callers.rs` the log-ins, `http.rs` the requests and waits
//! the steps share.

pub(crate) mod callers;
pub(crate) mod http;
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
    /// How long the read of the issued policy with its consistency token took (the
    /// gateway waits for the claim service's replica and the search index).
    pub replica_lag: Duration,
    /// What that read said of each copy: `claim_service ok at version 2, ...`.
    pub read_your_writes: String,
    /// `section status` of each section of the customer's dashboard.
    pub dashboard: Vec<String>,
    /// The dashboard's sections with the search service stopped, when the demo stopped
    /// it (in a stack of its own).
    pub partial_answer: Option<String>,
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

/// Where the demo finds the stack: its gateway, the only address it calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// The gateway's base URL, such as `http://127.0.0.1:8080`.
    pub gateway: String,
}

impl Services {
    /// The stack's fixed gateway port on this machine.
    pub fn local() -> Self {
        Self {
            gateway: format!("http://127.0.0.1:{}", crate::GATEWAY_PORT),
        }
    }

    /// That of a stack started in this process.
    pub fn of(stack: &crate::RunningStack) -> Self {
        Self {
            gateway: format!("http://{}", stack.gateway),
        }
    }

    /// The auth service, through the gateway.
    pub fn auth(&self) -> String {
        format!("{}/auth", self.gateway)
    }
}

/// Walks through the system at `services` as the stack's staff user and demo customer
/// (`credentials`) and a customer it registers, writing each step to the report's
/// transcript and to `out`. Given the stack (`outage`), it ends by stopping its search
/// service to show a partial answer; the stack runs on without it.
///
/// # Errors
/// When a service does not answer as the walk expects; the message says which step.
pub async fn run(
    services: &Services,
    credentials: &Credentials,
    out: &mut dyn std::io::Write,
    outage: Option<&mut crate::RunningStack>,
) -> anyhow::Result<DemoReport> {
    let mut walk = Walk::start(services, out);
    walk.log_in(credentials).await?;
    walk.draft_policy().await?;
    walk.issue_policy().await?;
    walk.read_your_own_write().await?;
    walk.file_a_claim_twice().await?;
    walk.refuse_a_claim_over_the_limit().await?;
    walk.refuse_the_customer_a_staff_action().await?;
    walk.settle_the_claim().await?;
    walk.cancel_the_policy().await?;
    walk.search_as_the_customer().await?;
    walk.find_the_cancelled_policy().await?;
    walk.search_as_another_customer().await?;
    walk.show_the_dashboard().await?;
    walk.show_a_partial_answer(outage).await?;
    Ok(walk.finish())
}
