//! Who may see what, as the reference services decide it from a verified
//! [`Identity`](dovetail_http::identity::Identity): whose records a list shows
//! ([`list_scope`]), and the answer to a customer who asks for another's record
//! ([`hidden`]).

use axum::http::StatusCode;
use dovetail_http::identity::{Identity, Role};

use crate::Problem;

/// Whose records a list request may show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// Staff: any customer's; the request must name which (`None`: it named none).
    Staff(Option<String>),
    /// A customer: only their own, whatever the request named.
    Customer(String),
}

/// The scope of a list request by `identity` that asked for `requested` (its
/// `customer_id` parameter, if any; empty counts as none).
///
/// A customer's filter comes from their token: the parameter may be left out, and naming
/// another customer is refused rather than widened or silently narrowed.
///
/// ```
/// use dovetail_http::identity::{Identity, Role};
/// use dovetail_service_kit::access::{ListScope, list_scope};
/// use time::OffsetDateTime;
///
/// let customer = Identity::new("u-1", [Role::Customer], Some("c-1".into()), "j", OffsetDateTime::UNIX_EPOCH);
/// assert_eq!(list_scope(&customer, None).unwrap(), ListScope::Customer("c-1".into()));
/// assert_eq!(list_scope(&customer, Some("c-2")).unwrap_err().status().as_u16(), 403);
/// ```
///
/// # Errors
/// A 403 [`Problem`] when a customer names another customer, or when the identity is
/// neither staff nor a customer bound to a customer id.
pub fn list_scope(identity: &Identity, requested: Option<&str>) -> Result<ListScope, Problem> {
    let requested = requested.filter(|id| !id.is_empty());
    if identity.has_role(Role::Staff) {
        return Ok(ListScope::Staff(requested.map(str::to_owned)));
    }
    let own = own_customer(identity)?;
    match requested {
        Some(other) if other != own => Err(forbidden(format!(
            "a customer lists only their own records: customer_id {other:?} is not the customer \
             your token is for; leave customer_id out or send your own ({own:?})"
        ))),
        _ => Ok(ListScope::Customer(own.to_owned())),
    }
}

/// The customer id a customer's token binds them to.
///
/// # Errors
/// A 403 [`Problem`] when the identity does not have the customer role or its token names
/// no customer.
pub fn own_customer(identity: &Identity) -> Result<&str, Problem> {
    match identity.customer_id() {
        Some(own) if identity.has_role(Role::Customer) => Ok(own),
        _ => Err(forbidden(format!(
            "this request needs the staff role, or the customer role with a customer id; the \
             token of user {} has neither",
            identity.subject()
        ))),
    }
}

/// Whether `identity` must be answered as if the record of `customer_id` did not exist:
/// it may not act for that customer. Answering 403 instead would tell a caller that the
/// id they guessed is someone's.
pub fn hidden(identity: &Identity, customer_id: &str) -> bool {
    !identity.may_act_for_customer(customer_id)
}

/// A 403 problem (type `forbidden`) with `detail`.
pub fn forbidden(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn identity(roles: &[Role], customer: Option<&str>) -> Identity {
        Identity::new(
            "u",
            roles.iter().copied(),
            customer.map(str::to_owned),
            "j",
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn staff_name_any_customer_or_none() {
        let staff = identity(&[Role::Staff], None);
        assert_eq!(
            list_scope(&staff, Some("c-9")).unwrap(),
            ListScope::Staff(Some("c-9".into()))
        );
        assert_eq!(
            list_scope(&staff, Some("")).unwrap(),
            ListScope::Staff(None)
        );
    }

    #[test]
    fn a_customer_gets_their_own_scope_and_cannot_widen_it() {
        let customer = identity(&[Role::Customer], Some("c-1"));
        assert_eq!(
            list_scope(&customer, Some("c-1")).unwrap(),
            ListScope::Customer("c-1".into())
        );
        let refused = list_scope(&customer, Some("c-2")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(refused.detail_text().unwrap().contains("only their own"));
    }

    #[test]
    fn no_role_or_no_customer_id_lists_nothing() {
        for nobody in [
            identity(&[], Some("c-1")),
            identity(&[Role::Customer], None),
        ] {
            assert_eq!(
                list_scope(&nobody, None).unwrap_err().status(),
                StatusCode::FORBIDDEN
            );
        }
    }
}
