//! Verified identity: [`Identity`], who a request is from, put there only by
//! [`IdentityLayer`] after [`JwtVerifier`] checked the bearer token against a JWKS.

mod cache;
mod claims;
mod error;
mod jwks;
mod layer;
mod rejection;
mod verifier;

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use time::OffsetDateTime;

use crate::Problem;

pub use error::{BoxError, JwksError, VerifyError};
pub use jwks::{JwksConfig, JwksSource};
pub use layer::{IdentityLayer, IdentityService};
pub use rejection::{REALM, Unauthorized};
pub use verifier::{JwtVerifier, VerifierConfig};

/// A role a user holds. Role strings a token carries that are not known here are ignored,
/// so the auth service can add roles before every service knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// A customer: acts for the one customer id the token binds them to.
    Customer,
    /// Staff: acts for any customer, and may take staff actions.
    Staff,
}

impl Role {
    /// The role as the token's `roles` claim spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
        }
    }

    /// The role a `roles` entry names, if it is one this crate knows.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(Self::Customer),
            "staff" => Some(Self::Staff),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature algorithm the verifier can be configured to accept. Asymmetric only: a
/// shared-secret algorithm (HS256) is not representable, so a token signed with a
/// service's public key as an HMAC secret can never verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 signatures (`alg: EdDSA`, JWK `kty: OKP`, `crv: Ed25519`). The default.
    EdDSA,
    /// ECDSA on P-256 with SHA-256 (`alg: ES256`, JWK `kty: EC`, `crv: P-256`).
    ES256,
}

impl Algorithm {
    /// The JOSE name (`EdDSA`, `ES256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
        }
    }

    pub(crate) fn from_jose(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }

    pub(crate) fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a request is from, as a verified access token says: its subject, roles, the
/// customer a customer user is bound to, the token's id and expiry.
///
/// Only [`IdentityLayer`] creates one for a request (after [`JwtVerifier`] checked the
/// token); a handler takes it as an extractor, which answers 401 when the route is not
/// behind the layer.
///
/// ```
/// use axum::{Router, routing::get};
/// use dovetail_http::identity::{Identity, Role};
/// use dovetail_http::Problem;
///
/// async fn list_all_claims(identity: Identity) -> Result<&'static str, Problem> {
///     identity.require(Role::Staff)?;
///     Ok("every claim")
/// }
///
/// let api: Router = Router::new().route("/claims", get(list_all_claims));
/// # let _ = api;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Shared: the verified-token cache, the request's extensions and the extractor each
    /// hold one, and a clone must not copy strings on every request.
    inner: Arc<Stated>,
}

#[derive(Debug, PartialEq, Eq)]
struct Stated {
    subject: String,
    roles: Vec<Role>,
    customer_id: Option<String>,
    token_id: String,
    expires_at: OffsetDateTime,
}

impl Identity {
    /// An identity as a verified token states it. For [`JwtVerifier`] and for tests of
    /// handlers (which put it in a request's extensions themselves).
    pub fn new(
        subject: impl Into<String>,
        roles: impl IntoIterator<Item = Role>,
        customer_id: Option<String>,
        token_id: impl Into<String>,
        expires_at: OffsetDateTime,
    ) -> Self {
        let mut unique: Vec<Role> = Vec::new();
        for role in roles {
            if !unique.contains(&role) {
                unique.push(role);
            }
        }
        Self {
            inner: Arc::new(Stated {
                subject: subject.into(),
                roles: unique,
                customer_id,
                token_id: token_id.into(),
                expires_at,
            }),
        }
    }

    /// The user id (`sub`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The known roles the token carries.
    pub fn roles(&self) -> &[Role] {
        &self.inner.roles
    }

    /// Whether the token carries `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.inner.roles.contains(&role)
    }

    /// The customer a customer user is bound to (`customer_id`).
    pub fn customer_id(&self) -> Option<&str> {
        self.inner.customer_id.as_deref()
    }

    /// The token's id (`jti`), for logs and revocation.
    pub fn token_id(&self) -> &str {
        &self.inner.token_id
    }

    /// When the token expires (`exp`).
    pub fn expires_at(&self) -> OffsetDateTime {
        self.inner.expires_at
    }

    /// `Ok` if the identity has `role`.
    ///
    /// # Errors
    /// A 403 [`Problem`] (`forbidden`) whose detail names the role needed.
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(format!(
                    "this action needs the {role} role, which user {} does not have",
                    self.inner.subject
                )),
            )
        }
    }

    /// Whether the identity may act for `customer_id`: staff for any customer, a customer
    /// user only for the customer their token binds them to.
    pub fn may_act_for_customer(&self, customer_id: &str) -> bool {
        if self.has_role(Role::Staff) {
            return true;
        }
        self.has_role(Role::Customer) && self.inner.customer_id.as_deref() == Some(customer_id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            .ok_or_else(|| Unauthorized::from(VerifyError::Missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(id: &str) -> Identity {
        Identity::new(
            "user-1",
            [Role::Customer],
            Some(id.to_owned()),
            "jti-1",
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_customer_acts_only_for_their_own_customer() {
        let identity = customer("cust-1");
        assert!(identity.may_act_for_customer("cust-1"));
        assert!(!identity.may_act_for_customer("cust-2"));
    }

    #[test]
    fn staff_act_for_any_customer() {
        let staff = Identity::new("u", [Role::Staff], None, "j", OffsetDateTime::UNIX_EPOCH);
        assert!(staff.may_act_for_customer("cust-1"));
        assert!(staff.may_act_for_customer("cust-2"));
    }

    #[test]
    fn no_role_acts_for_nobody_even_with_a_customer_id() {
        let nobody = Identity::new("u", [], Some("c".into()), "j", OffsetDateTime::UNIX_EPOCH);
        assert!(!nobody.may_act_for_customer("c"));
    }

    #[test]
    fn require_answers_403_naming_the_role() {
        let problem = customer("c").require(Role::Staff).unwrap_err();
        assert_eq!(problem.status(), StatusCode::FORBIDDEN);
        assert!(problem.detail_text().unwrap().contains("staff role"));
        assert!(customer("c").require(Role::Customer).is_ok());
    }

    #[test]
    fn roles_parse_and_unknown_ones_are_none() {
        assert_eq!(Role::parse("staff"), Some(Role::Staff));
        assert_eq!(Role::parse("customer"), Some(Role::Customer));
        assert_eq!(Role::parse("admin"), None);
    }
}
