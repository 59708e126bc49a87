//! `GET /views/review-queue`: for staff, the claims awaiting review (submitted or under
//! review, oldest incident first), from the search index, each with its policy from the
//! policy service (one call per distinct policy, in parallel).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use dovetail_bff::{CallContext, CallError, Composer, Section};
use dovetail_http::Problem;
use dovetail_http::identity::{Identity, Role};
use serde::Serialize;
use serde_json::Value;

use super::{encode, forbidden, items};
use crate::Gateway;

/// How many claims of each status the queue lists at most.
const PER_STATUS: usize = 50;

/// The page.
#[derive(Debug, Serialize)]
pub struct ReviewQueue {
    /// The claims awaiting review (required).
    pub claims: Section<Vec<QueueItem>>,
}

/// One claim of the queue.
#[derive(Debug, Serialize)]
pub struct QueueItem {
    /// The claim, as the search index holds it.
    pub claim: Value,
    /// Its policy, from the policy service.
    pub policy: Section<Value>,
}

pub(super) async fn page(
    State(gateway): State<Gateway>,
    identity: Identity,
    cx: CallContext,
) -> Result<Json<ReviewQueue>, Problem> {
    if !identity.has_role(Role::Staff) {
        return Err(forbidden(format!(
            "the review queue needs the {} role; the token of user {} does not have it",
            Role::Staff,
            identity.subject()
        )));
    }
    let mut page = Composer::new(cx.deadline());
    let claims = page.required("claims", queue(&gateway, &cx));
    let done = page.run().await?;
    Ok(Json(ReviewQueue {
        claims: done.take(claims),
    }))
}

async fn queue(gateway: &Gateway, cx: &CallContext) -> Result<Vec<QueueItem>, CallError> {
    let waiting =
        |status: &str| format!("/search?type=claim&status={status}&sort=date&limit={PER_STATUS}");
    let (submitted, under_review) = (waiting("submitted"), waiting("under_review"));
    let (submitted, under_review) = tokio::join!(
        items(&gateway.search, cx, &submitted),
        items(&gateway.search, cx, &under_review),
    );
    let mut claims = submitted?;
    claims.extend(under_review?);
    // Oldest incident first: the index's `date` is YYYY-MM-DD, so text order is date order.
    claims.sort_by(|a, b| {
        a.get("date")
            .and_then(Value::as_str)
            .cmp(&b.get("date").and_then(Value::as_str))
    });

    let policy_ids: Vec<String> = claims
        .iter()
        .filter_map(|claim| claim.get("policy_id")?.as_str().map(str::to_owned))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let fetched = futures_util::future::join_all(policy_ids.iter().map(|id| async move {
        let section = match gateway
            .policy
            .get_json::<Value>(cx, &format!("/policies/{}", encode(id)))
            .await
        {
            Ok(policy) => Section::ok(policy),
            Err(error) => Section::failed(error.outcome(), format!("policy {id}: {error}")),
        };
        (id.clone(), section)
    }))
    .await;
    let policies: BTreeMap<String, Section<Value>> = fetched.into_iter().collect();
    Ok(claims
        .into_iter()
        .map(|claim| {
            let policy = claim
                .get("policy_id")
                .and_then(Value::as_str)
                .and_then(|id| policies.get(id).cloned())
                .unwrap_or_else(|| {
                    Section::failed(
                        dovetail_bff::SectionOutcome::Unavailable,
                        "the index names no policy for this claim",
                    )
                });
            QueueItem { claim, policy }
        })
        .collect())
}
