//! `GET /views/dashboard`: a customer's policies, each with its claims, and their recent
//! activity from the search index: three calls in parallel (policies, claims, search).

use axum::Json;
use axum::extract::{Query, State};
use dovetail_bff::{CallContext, Composer, Need, Section};
use dovetail_http::Problem;
use dovetail_http::identity::Identity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::freshness::{held, wait_until};
use super::{Wanted, customer_of, encode, items};
use crate::Gateway;

/// How many recent changes the activity section lists.
const ACTIVITY: usize = 10;

/// The page.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    /// Whose page it is.
    pub customer_id: String,
    /// Their policies (required), each with its claims.
    pub policies: Section<Vec<PolicyWithClaims>>,
    /// Their latest changes, newest first, from the search index.
    pub activity: Section<Vec<Value>>,
}

/// One policy of the dashboard and its claims.
#[derive(Debug, Serialize)]
pub struct PolicyWithClaims {
    /// The policy, as the policy service answers it.
    pub policy: Value,
    /// Its claims, as the claim service answers them (the claims section of the page:
    /// when that call failed, each policy says so).
    pub claims: Section<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DashboardQuery {
    customer_id: Option<String>,
}

pub(super) async fn page(
    State(gateway): State<Gateway>,
    identity: Identity,
    cx: CallContext,
    wanted: Wanted,
    Query(query): Query<DashboardQuery>,
) -> Result<Json<Dashboard>, Problem> {
    let customer = customer_of(&identity, query.customer_id.as_deref())?;
    let who = encode(&customer);
    let policies_path = format!("/policies?customer_id={who}&limit=100");
    let claims_path = format!("/claims?customer_id={who}&limit=100");
    let search_path = format!("/search?customer_id={who}&sort=-date&limit={ACTIVITY}");

    let mut page = Composer::new(cx.deadline());
    let policies = page.required("policies", items(&gateway.policy, &cx, &policies_path));
    let claims = page.section("claims", items(&gateway.claim, &cx, &claims_path));
    let activity = page.section_with(
        "activity",
        Need::Optional,
        activity(&gateway, &cx, &wanted, &search_path),
    );
    let done = page.run().await?;
    let claims = done.take(claims);
    let policies = done.take(policies).map(|policies| {
        policies
            .into_iter()
            .map(|policy| PolicyWithClaims {
                claims: claims_of(&policy, &claims),
                policy,
            })
            .collect()
    });
    Ok(Json(Dashboard {
        customer_id: customer,
        policies,
        activity: done.take(activity),
    }))
}

/// The search's latest changes; after a write, once the index holds it (or `stale`
/// with the version it held when the wait had to stop).
async fn activity(
    gateway: &Gateway,
    cx: &CallContext,
    wanted: &Wanted,
    path: &str,
) -> Section<Vec<Value>> {
    let failed = |error: dovetail_bff::CallError| {
        Section::failed(error.outcome(), format!("search: {error}"))
    };
    let seen = match &wanted.0 {
        Some(token) => {
            let document = format!("/documents/{}", token.aggregate);
            let probe = || {
                held(&gateway.search, cx, &document, |body| {
                    body.get("version")?.as_u64()
                })
            };
            match dovetail_bff::await_version(
                wait_until(cx.deadline()),
                token.version,
                gateway.tuning.version_poll(),
                probe,
            )
            .await
            {
                Ok(seen) => Some(seen),
                Err(error) => return failed(error),
            }
        }
        None => None,
    };
    match items(&gateway.search, cx, path).await {
        Ok(hits) => match seen {
            Some(seen) => seen.section(hits),
            None => Section::ok(hits),
        },
        Err(error) => failed(error),
    }
}

/// The claims of `policy` out of the page's claims section.
fn claims_of(policy: &Value, claims: &Section<Vec<Value>>) -> Section<Vec<Value>> {
    let Some(all) = claims.data() else {
        return Section::failed(
            claims.outcome(),
            claims.detail().unwrap_or("the claims were not read"),
        );
    };
    let id = policy.get("policy_id");
    Section::ok(
        all.iter()
            .filter(|claim| claim.get("policy_id") == id)
            .cloned()
            .collect(),
    )
}
