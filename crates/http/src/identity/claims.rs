//! The access token's claims as sent, and their checks (`iss`, `aud`, `exp`, `nbf`,
//! `iat`) that turn them into an [`Identity`].

use serde::Deserialize;
use time::OffsetDateTime;

use super::error::cut;
use super::{Identity, Role, VerifyError};

/// Longest untrusted value repeated in a message.
const ECHO: usize = 64;

/// The claims of a Dovetail access token, as they arrive (nothing checked yet).
#[derive(Debug, Deserialize)]
pub(crate) struct RawClaims {
    iss: Option<String>,
    #[serde(default)]
    aud: Audience,
    sub: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    jti: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    customer_id: Option<String>,
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum Audience {
    #[default]
    Absent,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Self::Absent => false,
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Absent => "(none)".to_owned(),
            Self::One(one) => cut(one, ECHO),
            Self::Many(many) => cut(&many.join(","), ECHO),
        }
    }
}

/// What the claims are checked against.
pub(crate) struct Expected<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway_seconds: i64,
    pub(crate) now: i64,
}

impl RawClaims {
    /// The identity these claims state, if they are complete, from the expected issuer,
    /// for the expected audience, and valid at `expected.now` (give or take the leeway).
    pub(crate) fn check(self, expected: &Expected<'_>) -> Result<Identity, VerifyError> {
        let exp = self.exp.ok_or_else(|| missing("exp"))?;
        if expected.now > exp.saturating_add(expected.leeway_seconds) {
            return Err(VerifyError::Expired { at: exp });
        }
        if let Some(nbf) = self.nbf
            && nbf > expected.now.saturating_add(expected.leeway_seconds)
        {
            return Err(VerifyError::NotYetValid { from: nbf });
        }
        let iat = self.iat.ok_or_else(|| missing("iat"))?;
        if iat > expected.now.saturating_add(expected.leeway_seconds) {
            return Err(VerifyError::IssuedInFuture { at: iat });
        }
        let iss = self.iss.ok_or_else(|| missing("iss"))?;
        if iss != expected.issuer {
            return Err(VerifyError::WrongIssuer {
                found: cut(&iss, ECHO),
                expected: expected.issuer.to_owned(),
            });
        }
        if !self.aud.contains(expected.audience) {
            return Err(VerifyError::WrongAudience {
                found: self.aud.describe(),
                expected: expected.audience.to_owned(),
            });
        }
        let sub = self
            .sub
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("sub"))?;
        let jti = self
            .jti
            .filter(|j| !j.is_empty())
            .ok_or_else(|| missing("jti"))?;
        let expires_at =
            OffsetDateTime::from_unix_timestamp(exp).map_err(|_| VerifyError::BadClaims {
                reason: "exp is out of range".to_owned(),
            })?;
        let roles = self.roles.iter().filter_map(|r| Role::parse(r));
        Ok(Identity::new(sub, roles, self.customer_id, jti, expires_at))
    }
}

fn missing(claim: &str) -> VerifyError {
    VerifyError::BadClaims {
        reason: format!("the {claim} claim is missing; it is required"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://auth.dovetail",
            audience: "claims",
            leeway_seconds: 30,
            now: NOW,
        }
    }

    fn claims(json: serde_json::Value) -> RawClaims {
        serde_json::from_value(json).unwrap()
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://auth.dovetail", "aud": "claims", "sub": "user-1",
            "exp": NOW + 300, "iat": NOW, "jti": "t-1",
            "roles": ["customer", "admin"], "customer_id": "cust-1"
        })
    }

    #[test]
    fn valid_claims_state_the_identity_and_ignore_unknown_roles() {
        let identity = claims(valid()).check(&expected()).unwrap();
        assert_eq!(identity.subject(), "user-1");
        assert_eq!(identity.roles(), &[Role::Customer]);
        assert_eq!(identity.customer_id(), Some("cust-1"));
        assert_eq!(identity.token_id(), "t-1");
        assert_eq!(identity.expires_at().unix_timestamp(), NOW + 300);
    }

    #[test]
    fn an_audience_array_is_accepted_when_it_names_the_service() {
        let mut json = valid();
        json["aud"] = serde_json::json!(["policies", "claims"]);
        assert!(claims(json).check(&expected()).is_ok());
    }

    #[test]
    fn expiry_within_the_leeway_is_accepted_beyond_it_refused() {
        let mut json = valid();
        json["exp"] = (NOW - 20).into();
        assert!(claims(json.clone()).check(&expected()).is_ok());
        json["exp"] = (NOW - 31).into();
        assert!(matches!(
            claims(json).check(&expected()),
            Err(VerifyError::Expired { at }) if at == NOW - 31
        ));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let mut json = valid();
        json["iat"] = (NOW + 120).into();
        assert!(matches!(
            claims(json).check(&expected()),
            Err(VerifyError::IssuedInFuture { .. })
        ));
    }

    #[test]
    fn each_required_claim_is_required() {
        for claim in ["exp", "iat", "iss", "sub", "jti"] {
            let mut json = valid();
            json.as_object_mut().unwrap().remove(claim);
            let error = claims(json).check(&expected()).unwrap_err();
            assert!(error.to_string().contains(claim), "{claim}: {error}");
        }
        let mut json = valid();
        json.as_object_mut().unwrap().remove("aud");
        assert!(matches!(
            claims(json).check(&expected()),
            Err(VerifyError::WrongAudience { .. })
        ));
    }
}
