//! The policy service's HTTP API: routes, who may call them, the JSON it speaks, and how
//! domain and store errors become problem+json. See `openapi.json` beside this file for
//! the contract.
//!
//! Every route but `/openapi.json` needs a verified bearer token ([`IdentityLayer`]):
//! - drafting (`POST /policies`): staff for any customer, a customer for their own id;
//! - reading and changing terms (`GET`, `PATCH /policies/{id}`): the policy's customer or
//!   staff; another customer is answered 404 as for a missing policy, so an id guessed
//!   never tells whether it exists;
//! - issuing and cancelling: staff only;
//! - listing: a customer's own policies (from the token; `customer_id` may be left out
//!   and cannot name another), or staff naming `customer_id`.
//!
//! No header other than `Authorization` says who the caller is.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dovetail_contracts::policy::{PolicySnapshot, PolicyStatus};
use dovetail_http::identity::{Identity, IdentityLayer, Role};
use dovetail_outbox::ExpectedVersion;
use dovetail_service_kit::access::{self, ListScope};
use dovetail_service_kit::{
    ApiJson, ApiQuery, Cursor, IdempotencyKeyHeader, IfMatch, Page, Problem, RecordedResponse, etag,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::{Policy, PolicyChange, PolicyError, PolicyTerms, TermsChange};
use crate::store::{PolicyStore, PolicyWrite, RequestRecord, StoreError, WriteOutcome};

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The API's routes over `store`, each behind `identity` but `/openapi.json`
/// (operations endpoints are added by the application).
pub fn router(store: PolicyStore, identity: IdentityLayer) -> Router {
    Router::new()
        .route("/policies", post(create).get(list))
        .route("/policies/{policy_id}", get(fetch).patch(update))
        .route("/policies/{policy_id}/issue", post(issue))
        .route("/policies/{policy_id}/cancel", post(cancel))
        .route_layer(identity)
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(store)
}

/// A policy as the API shows it: its stored state with the status on today's date.
#[derive(Debug, Serialize)]
struct PolicyView {
    #[serde(flatten)]
    snapshot: PolicySnapshot,
}

impl PolicyView {
    fn of(policy: &Policy) -> Self {
        let mut snapshot = policy.snapshot().clone();
        snapshot.status = policy.status_on(OffsetDateTime::now_utc().date());
        Self { snapshot }
    }

    fn body(policy: &Policy) -> serde_json::Value {
        serde_json::to_value(Self::of(policy)).unwrap_or_default()
    }
}

fn respond(status: StatusCode, policy: &Policy) -> Response {
    (
        status,
        [(header::ETAG, etag(policy.version()))],
        axum::Json(PolicyView::of(policy)),
    )
        .into_response()
}

async fn create(
    State(store): State<PolicyStore>,
    identity: Identity,
    key: IdempotencyKeyHeader,
    ApiJson(terms): ApiJson<PolicyTerms>,
) -> Result<Response, Problem> {
    if !identity.may_act_for_customer(&terms.customer_id) {
        let own = access::own_customer(&identity)?;
        return Err(access::forbidden(format!(
            "a customer drafts policies only for their own customer id: customer_id {:?} is \
             not {own:?}, the customer your token is for",
            terms.customer_id
        )));
    }
    let policy_id = format!("pol-{}", uuid::Uuid::now_v7());
    let (policy, change) =
        Policy::draft(policy_id, terms.clone()).map_err(|error| domain_problem(&error))?;
    let response = RecordedResponse::created(
        format!("/policies/{}", policy.id()),
        policy.version(),
        PolicyView::body(&policy),
    );
    let request = key.0.map(|key| {
        RequestRecord::new(
            "POST /policies",
            identity.subject(),
            &key,
            &terms,
            response.clone(),
        )
    });
    let outcome = store
        .write(PolicyWrite {
            policy,
            change,
            expected: ExpectedVersion::New,
            request,
        })
        .await
        .map_err(store_problem)?;
    Ok(match outcome {
        WriteOutcome::Written => response.into_response(),
        WriteOutcome::Replayed(recorded) => recorded.replayed(),
    })
}

async fn fetch(
    State(store): State<PolicyStore>,
    identity: Identity,
    Path(policy_id): Path<String>,
) -> Result<Response, Problem> {
    let policy = load(&store, &identity, &policy_id).await?;
    Ok(respond(StatusCode::OK, &policy))
}

/// The query of `GET /policies`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    customer_id: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list(
    State(store): State<PolicyStore>,
    identity: Identity,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, Problem> {
    let customer_id = match access::list_scope(&identity, query.customer_id.as_deref())? {
        ListScope::Customer(customer) | ListScope::Staff(Some(customer)) => customer,
        ListScope::Staff(None) => {
            return Err(Problem::bad_request(
                "list policies by customer: GET /policies?customer_id=<id> (with optional \
                 limit and cursor)",
            ));
        }
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} is out of range; ask for 1 to 100 policies per page"
        )));
    }
    let after = query.cursor.as_deref().map(Cursor::parse).transpose()?;
    let fetched = store
        .list_by_customer(
            &customer_id,
            after.as_ref().map(Cursor::last_key),
            limit + 1,
        )
        .await
        .map_err(store_problem)?;
    let page = Page::from_overfetch(fetched, limit, |policy| policy.id().to_owned());
    let page = Page {
        items: page.items.iter().map(PolicyView::of).collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(page).into_response())
}

async fn update(
    State(store): State<PolicyStore>,
    identity: Identity,
    Path(policy_id): Path<String>,
    IfMatch(expected): IfMatch,
    ApiJson(change): ApiJson<TermsChange>,
) -> Result<Response, Problem> {
    transition(&store, &identity, &policy_id, expected, |policy| {
        policy.update(change)
    })
    .await
}

async fn issue(
    State(store): State<PolicyStore>,
    identity: Identity,
    Path(policy_id): Path<String>,
    IfMatch(expected): IfMatch,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    transition(&store, &identity, &policy_id, expected, Policy::issue).await
}

/// The optional body of `POST /policies/{id}/cancel`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

async fn cancel(
    State(store): State<PolicyStore>,
    identity: Identity,
    Path(policy_id): Path<String>,
    IfMatch(expected): IfMatch,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    identity.require(Role::Staff)?;
    let reason = if body.is_empty() {
        None
    } else {
        dovetail_service_kit::parse_json::<CancelBody>(&body)?.reason
    };
    transition(&store, &identity, &policy_id, expected, |policy| {
        policy.cancel(reason)
    })
    .await
}

/// Loads the policy (if `identity` may see it), checks `If-Match`, applies `change` and
/// commits it with its event.
async fn transition(
    store: &PolicyStore,
    identity: &Identity,
    policy_id: &str,
    expected: u64,
    change: impl FnOnce(&Policy) -> Result<(Policy, PolicyChange), PolicyError>,
) -> Result<Response, Problem> {
    let current = load(store, identity, policy_id).await?;
    if current.version() != expected {
        return Err(stale(policy_id, expected, Some(current.version())));
    }
    let (policy, change) = change(&current).map_err(|error| domain_problem(&error))?;
    store
        .write(PolicyWrite {
            policy: policy.clone(),
            change,
            expected: ExpectedVersion::Exactly(expected),
            request: None,
        })
        .await
        .map_err(store_problem)?;
    Ok(respond(StatusCode::OK, &policy))
}

/// The policy `policy_id`, if `identity` may act for its customer: one another customer
/// may not see is answered exactly as a missing one.
async fn load(
    store: &PolicyStore,
    identity: &Identity,
    policy_id: &str,
) -> Result<Policy, Problem> {
    store
        .get(policy_id)
        .await
        .map_err(store_problem)?
        .filter(|policy| !access::hidden(identity, &policy.snapshot().customer_id))
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no policy has the id {policy_id:?}; list a customer's policies with \
                 GET /policies?customer_id=<id>"
            ))
        })
}

fn stale(policy_id: &str, expected: u64, current: Option<u64>) -> Problem {
    let now = current.map_or_else(|| "unknown".to_owned(), |v| format!("\"{v}\""));
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "stale-version",
        "The policy changed since you read it",
    )
    .detail(format!(
        "If-Match \"{expected}\" is stale: policy {policy_id} is at version {now}; GET it \
         again, check the change still makes sense, and retry with its new ETag"
    ))
}

fn domain_problem(error: &PolicyError) -> Problem {
    match error {
        PolicyError::Invalid { field, message } => {
            Problem::invalid(error.to_string()).field(*field, message.clone())
        }
        PolicyError::Transition { status, .. } => {
            let status = if *status == PolicyStatus::Cancelled.as_str() {
                "policy-cancelled"
            } else {
                "invalid-transition"
            };
            Problem::conflict(status, error.to_string())
        }
    }
}

fn store_problem(error: StoreError) -> Problem {
    error.into_problem()
}
