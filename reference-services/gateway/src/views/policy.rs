//! `GET /views/policies/{policy_id}`: a policy with its claims, and how far its copies
//! (the claim service's replica, the search index) have got: after a write of the policy
//! through the gateway, its token makes this read wait until both copies have it.

use axum::Json;
use axum::extract::{Path, State};
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use dovetail_bff::{Call, CallContext, Composer, Need, Section};
use dovetail_http::Problem;
use serde::Serialize;
use serde_json::Value;

use super::freshness::{Held, copy_section};
use super::{Wanted, encode, items};
use crate::Gateway;

/// The page.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    /// The policy, from the policy service (required: without it there is no page).
    pub policy: Section<Value>,
    /// Its claims, from the claim service.
    pub claims: Section<Vec<Value>>,
    /// How far its copies have got.
    pub copies: Copies,
}

/// The copies of a policy other services keep, each as the version it holds.
#[derive(Debug, Serialize)]
pub struct Copies {
    /// The claim service's replica (what it checks a claim against).
    pub claim_service: Section<Held>,
    /// The search index's document.
    pub search: Section<Held>,
}

pub(super) async fn page(
    State(gateway): State<Gateway>,
    cx: CallContext,
    wanted: Wanted,
    Path(policy_id): Path<String>,
) -> Result<Json<PolicyView>, Problem> {
    let id = encode(&policy_id);
    let version = wanted.version_of(&format!("policy/{policy_id}"));
    let poll = gateway.tuning.version_poll();
    let policy_path = format!("/policies/{id}");
    let claims_path = format!("/claims?policy_id={id}&limit=100");
    let replica_path = format!("/replica/policies/{id}");
    let document_path = format!("/documents/policy/{id}");

    let missing = AtomicBool::new(false);
    let mut page = Composer::new(cx.deadline());
    let policy = page.required("policy", async {
        let answer = gateway.policy.send(&cx, Call::get(&policy_path)).await?;
        missing.store(answer.status == StatusCode::NOT_FOUND, Ordering::Relaxed);
        answer.json::<Value>()
    });
    let claims = page.section("claims", items(&gateway.claim, &cx, &claims_path));
    let replica = page.section_with(
        "claim_service",
        Need::Optional,
        copy_section(
            &gateway.claim,
            &cx,
            &replica_path,
            replica_version,
            version,
            poll,
        ),
    );
    let indexed = page.section_with(
        "search",
        Need::Optional,
        copy_section(
            &gateway.search,
            &cx,
            &document_path,
            document_version,
            version,
            poll,
        ),
    );
    let done = page.run().await.map_err(|problem| {
        // A policy the policy service does not have (or does not show this caller) is
        // a 404 of the page, not a failed section.
        if missing.load(Ordering::Relaxed) {
            Problem::not_found(format!(
                "there is no policy {policy_id:?}, or it is not yours to see"
            ))
        } else {
            problem
        }
    })?;
    Ok(Json(PolicyView {
        policy: done.take(policy),
        claims: done.take(claims),
        copies: Copies {
            claim_service: done.take(replica),
            search: done.take(indexed),
        },
    }))
}

/// The claim service's replica answers `{"policy": {..., "version": N}, ...}`.
fn replica_version(body: &Value) -> Option<u64> {
    body.get("policy")?.get("version")?.as_u64()
}

/// The search service answers `{"id", "type", "version"}`.
fn document_version(body: &Value) -> Option<u64> {
    body.get("version")?.as_u64()
}
