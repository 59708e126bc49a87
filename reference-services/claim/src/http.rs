//! The claim service's HTTP API: routes, who may call them, the JSON it speaks, and how
//! domain and store errors become problem+json. See `openapi.json` beside this file for
//! the contract.
//!
//! Every route but `/openapi.json` needs a verified bearer token ([`IdentityLayer`]):
//! - filing (`POST /claims`): staff on anyone's behalf; a customer only against a policy
//!   the replica has as theirs (any other is answered as a policy the replica does not
//!   have);
//! - reading a claim or the replica's copy of a policy: its customer or staff; another
//!   customer is answered 404 as for a missing one, so a guessed id tells nothing;
//! - review, approve, reject, pay: staff only;
//! - listing: a customer's own claims (from the token; `customer_id` may be left out and
//!   cannot name another; `policy_id` lists a policy of theirs), or staff naming
//!   `policy_id` or `customer_id`.
//!
//! No header other than `Authorization` says who the caller is.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dovetail_http::identity::{Identity, IdentityLayer, Role};
use dovetail_outbox::ExpectedVersion;
use dovetail_service_kit::access::{self, ListScope};
use dovetail_service_kit::{
    ApiJson, ApiQuery, Cursor, IdempotencyKeyHeader, IfMatch, Page, Problem, RecordedResponse, etag,
};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::domain::{Claim, ClaimChange, ClaimError, ClaimRequest};
use crate::store::{
    ClaimFilter, ClaimStore, ClaimWrite, ReplicatedPolicy, RequestRecord, StoreError, WriteOutcome,
};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API's routes over `store`, each behind `identity` but `/openapi.json`
/// (operations endpoints are added by the application).
pub fn router(store: ClaimStore, identity: IdentityLayer) -> Router {
    Router::new()
        .route("/claims", post(file).get(list))
        .route("/claims/{claim_id}", get(fetch))
        .route("/claims/{claim_id}/review", post(review))
        .route("/claims/{claim_id}/approve", post(approve))
        .route("/claims/{claim_id}/reject", post(reject))
        .route("/claims/{claim_id}/pay", post(pay))
        .route("/replica/policies/{policy_id}", get(replicated_policy))
        .route_layer(identity)
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(store)
}

fn respond(claim: &Claim) -> Response {
    (
        StatusCode::OK,
        [(header::ETAG, etag(claim.version()))],
        axum::Json(claim.snapshot()),
    )
        .into_response()
}

async fn file(
    State(store): State<ClaimStore>,
    identity: Identity,
    key: IdempotencyKeyHeader,
    ApiJson(request): ApiJson<ClaimRequest>,
) -> Result<Response, Problem> {
    let key = key.required()?;
    // Another customer's policy is, to this caller, one the replica does not have.
    let replicated = visible_policy(&store, &identity, &request.policy_id).await?;
    let claim_id = format!("clm-{}", uuid::Uuid::now_v7());
    let (claim, change) = Claim::file(
        claim_id,
        request.clone(),
        replicated.as_ref().map(|r| &r.policy),
        OffsetDateTime::now_utc().date(),
    )
    .map_err(|error| claim_problem(&error))?;
    let response = RecordedResponse::created(
        format!("/claims/{}", claim.id()),
        claim.version(),
        serde_json::to_value(claim.snapshot()).unwrap_or_default(),
    );
    let outcome = store
        .write(ClaimWrite {
            claim,
            change,
            expected: ExpectedVersion::New,
            request: Some(RequestRecord::new(
                "POST /claims",
                identity.subject(),
                &key,
                &request_fingerprint(&request),
                response.clone(),
            )),
        })
        .await
        .map_err(StoreError::into_problem)?;
    Ok(match outcome {
        WriteOutcome::Written => response.into_response(),
        WriteOutcome::Replayed(recorded) => recorded.replayed(),
    })
}

/// What identifies a filing request, whatever the JSON's formatting.
fn request_fingerprint(request: &ClaimRequest) -> serde_json::Value {
    serde_json::json!([
        request.policy_id,
        request.incident_date.to_string(),
        request.amount,
        request.description
    ])
}

async fn fetch(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(claim_id): Path<String>,
) -> Result<Response, Problem> {
    Ok(respond(&load(&store, &identity, &claim_id).await?))
}

/// The query of `GET /claims`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    policy_id: Option<String>,
    customer_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list(
    State(store): State<ClaimStore>,
    identity: Identity,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range; ask for 1 to 100 claims per page"
        )));
    }
    let policy = query.policy_id.filter(|id| !id.is_empty());
    let filter = match (
        access::list_scope(&identity, query.customer_id.as_deref())?,
        policy,
    ) {
        (ListScope::Staff(None), Some(policy)) => ClaimFilter::Policy(policy),
        (ListScope::Staff(Some(customer)) | ListScope::Customer(customer), None) => {
            ClaimFilter::Customer(customer)
        }
        (ListScope::Customer(_), Some(policy)) if query.customer_id.is_none() => {
            // A policy that is not theirs lists as one without claims (as an unknown one).
            if visible_policy(&store, &identity, &policy).await?.is_none() {
                return Ok(axum::Json(Page::<()> {
                    items: Vec::new(),
                    next_cursor: None,
                })
                .into_response());
            }
            ClaimFilter::Policy(policy)
        }
        _ => {
            return Err(Problem::bad_request(
                "list claims of one policy (GET /claims?policy_id=<id>) or one customer \
                 (GET /claims?customer_id=<id>), not both, with optional limit and cursor",
            ));
        }
    };
    let after = query.cursor.as_deref().map(Cursor::parse).transpose()?;
    let fetched = store
        .list(&filter, after.as_ref().map(Cursor::last_key), limit + 1)
        .await
        .map_err(StoreError::into_problem)?;
    let page = Page::from_overfetch(fetched, limit, |claim| claim.id().to_owned());
    Ok(axum::Json(Page {
        items: page
            .items
            .iter()
            .map(|claim| claim.snapshot().clone())
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    })
    .into_response())
}

async fn review(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(claim_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    transition(&store, &identity, &claim_id, expected, Claim::start_review).await
}

async fn approve(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(claim_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    transition(&store, &identity, &claim_id, expected, Claim::approve).await
}

async fn pay(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(claim_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    transition(&store, &identity, &claim_id, expected, Claim::pay).await
}

/// The body of `POST /claims/{id}/reject`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

async fn reject(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(claim_id): Path<String>,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    transition(&store, &identity, &claim_id, expected, |claim| {
        claim.reject(body.reason)
    })
    .await
}

/// The replica's copy of `policy_id`, if `identity` may act for its customer: another
/// customer's is `None`, as a policy the replica does not have.
async fn visible_policy(
    store: &ClaimStore,
    identity: &Identity,
    policy_id: &str,
) -> Result<Option<ReplicatedPolicy>, Problem> {
    Ok(store
        .replicated_policy(policy_id)
        .await
        .map_err(StoreError::into_problem)?
        .filter(|replicated| !access::hidden(identity, &replicated.policy.customer_id)))
}

/// `GET /replica/policies/{policy_id}`: the replica's copy of a policy the caller may
/// see, with `ETag: "<version>"`, the version of the policy snapshot held (the sequence
/// of the latest policy event applied here); 404 for a missing one or another
/// customer's.
async fn replicated_policy(
    State(store): State<ClaimStore>,
    identity: Identity,
    Path(policy_id): Path<String>,
) -> Result<Response, Problem> {
    let replicated = visible_policy(&store, &identity, &policy_id)
        .await?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "the claim service has no copy of policy {policy_id:?}: no event of it has \
                 arrived (yet)"
            ))
        })?;
    // The version read from a header: a gateway polling for its own write to arrive
    // here need not parse the body.
    let version = etag(replicated.policy.version);
    Ok(([(header::ETAG, version)], axum::Json(replicated)).into_response())
}

/// Loads the claim (if `identity` may see it), checks `If-Match`, applies `change` and
/// commits it with its event.
async fn transition(
    store: &ClaimStore,
    identity: &Identity,
    claim_id: &str,
    expected: u64,
    change: impl FnOnce(&Claim) -> Result<(Claim, ClaimChange), ClaimError>,
) -> Result<Response, Problem> {
    let current = load(store, identity, claim_id).await?;
    if current.version() != expected {
        return Err(StoreError::VersionConflict {
            id: format!("claim {claim_id}"),
            current: Some(current.version()),
        }
        .into_problem()
        .detail(format!(
            "If-Match \"{expected}\" is stale: claim {claim_id} is at version \"{}\"; GET it \
             again, check the change still makes sense, and retry with its new ETag",
            current.version()
        )));
    }
    let (claim, change) = change(&current).map_err(|error| claim_problem(&error))?;
    store
        .write(ClaimWrite {
            claim: claim.clone(),
            change,
            expected: ExpectedVersion::Exactly(expected),
            request: None,
        })
        .await
        .map_err(StoreError::into_problem)?;
    Ok(respond(&claim))
}

/// The claim `claim_id`, if `identity` may act for its customer: one another customer may
/// not see is answered exactly as a missing one.
async fn load(store: &ClaimStore, identity: &Identity, claim_id: &str) -> Result<Claim, Problem> {
    store
        .get(claim_id)
        .await
        .map_err(StoreError::into_problem)?
        .filter(|claim| !access::hidden(identity, &claim.snapshot().customer_id))
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no claim has the id {claim_id:?}; list claims with GET /claims?policy_id=<id>"
            ))
        })
}

fn claim_problem(error: &ClaimError) -> Problem {
    match error {
        ClaimError::Invalid { field, message } => {
            Problem::invalid(error.to_string()).field(*field, message.clone())
        }
        ClaimError::PolicyUnknown { .. } => {
            Problem::conflict("policy-not-replicated", error.to_string()).retry_after(1)
        }
        ClaimError::NotCovered(_) => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy-does-not-cover",
            "The policy does not cover this claim",
        )
        .detail(error.to_string()),
        ClaimError::Transition { .. } => Problem::conflict("invalid-transition", error.to_string()),
    }
}
