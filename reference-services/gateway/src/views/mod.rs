//! The composed pages, under `/views`: each verifies the caller's token here (audience
//! `gateway-service`), passes it to every service it calls (which verify it again and
//! scope their answers by it), runs its calls in parallel under one deadline, and says
//! per section what happened.
//!
//! | page | sections |
//! |---|---|
//! | `GET /views/dashboard` | a customer's `policies` (required), each with its `claims`; `activity` from search |
//! | `GET /views/policies/{policy_id}` | the `policy` (required), its `claims`, and how far its `copies` (the claim service's replica, the search index) have got |
//! | `GET /views/review-queue` | staff: the claims awaiting review, each with its `policy` |
//!
//! A read that carries a write's `dovetail-consistency` token waits (within its
//! deadline) until each copy it reads has reached the token's version, and answers a
//! copy that has not as `stale` with the version it has ([`freshness`]).

mod dashboard;
mod freshness;
mod policy;
mod queue;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use dovetail_bff::RouteBudget;
use dovetail_bff::{CONSISTENCY_HEADER, CallContext, CallError, ConsistencyToken, Downstream};
use dovetail_http::Problem;
use dovetail_http::identity::{Identity, IdentityLayer, Role};
use serde_json::Value;

use crate::Gateway;

pub use dashboard::Dashboard;
pub use freshness::Held;
pub use policy::{Copies, PolicyView};
pub use queue::{QueueItem, ReviewQueue};

/// The composed pages, behind `identity`.
pub(crate) fn router(gateway: Gateway, identity: IdentityLayer) -> Router {
    let budget = RouteBudget(gateway.tuning.page_budget());
    Router::new()
        .route("/views/dashboard", get(dashboard::page))
        .route("/views/policies/{policy_id}", get(policy::page))
        .route("/views/review-queue", get(queue::page))
        .route_layer(identity)
        .layer(axum::Extension(budget))
        .with_state(gateway)
}

/// The write a read wants to see, from its `dovetail-consistency` header (verified with
/// the gateway's key); none without the header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wanted(pub(crate) Option<ConsistencyToken>);

impl Wanted {
    /// The version wanted of `aggregate` (`policy/pol-1`), if the token names it.
    pub(crate) fn version_of(&self, aggregate: &str) -> Option<u64> {
        self.0
            .as_ref()
            .filter(|token| token.aggregate == aggregate)
            .map(|token| token.version)
    }
}

impl FromRequestParts<Gateway> for Wanted {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(CONSISTENCY_HEADER) else {
            return Ok(Self(None));
        };
        let text = value.to_str().map_err(|_| {
            Problem::bad_request(format!(
                "header {CONSISTENCY_HEADER}: not a consistency token; send the one a write \
                 answered, unchanged"
            ))
        })?;
        gateway
            .key
            .verify(text)
            .map(|token| Self(Some(token)))
            .map_err(|bad| bad.problem())
    }
}

/// The customer whose page this is: a customer's own (another `customer_id` is 403);
/// staff name one.
pub(crate) fn customer_of(identity: &Identity, asked: Option<&str>) -> Result<String, Problem> {
    if identity.has_role(Role::Staff) {
        return asked
            .filter(|id| !id.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                Problem::bad_request(
                    "query parameter `customer_id`: staff name the customer whose page they \
                     want (GET /views/dashboard?customer_id=<id>)",
                )
                .field("customer_id", "required for staff")
            });
    }
    match identity.customer_id().filter(|id| !id.is_empty()) {
        Some(own) if identity.has_role(Role::Customer) => match asked {
            Some(other) if other != own => Err(forbidden(format!(
                "a customer sees only their own dashboard; leave customer_id out, or ask for \
                 {own:?}"
            ))),
            _ => Ok(own.to_owned()),
        },
        _ => Err(forbidden(format!(
            "this page needs the {} role with a customer_id claim, or the {} role; the token \
             of user {} has neither",
            Role::Customer,
            Role::Staff,
            identity.subject()
        ))),
    }
}

pub(crate) fn forbidden(detail: String) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
}

/// GETs `path` and answers the `items` of the page it returns.
pub(crate) async fn items(
    downstream: &Downstream,
    cx: &CallContext,
    path: &str,
) -> Result<Vec<Value>, CallError> {
    let page: Value = downstream.get_json(cx, path).await?;
    match page.get("items") {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => Err(CallError::Decode(serde::de::Error::custom(format!(
            "{} answered {path} without an `items` array",
            downstream.name()
        )))),
    }
}

/// `text` percent-encoded for a path segment or a query value (everything but RFC 3986's
/// unreserved characters).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_characters_only() {
        assert_eq!(encode("cust-1_a.b~c"), "cust-1_a.b~c");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
