//! [`TokenIssuer`]: access tokens, compact JWS signed with EdDSA by the ring's signing
//! key, carrying the claims `dovetail_http::identity` checks.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::User;
use crate::keys::KeyRing;

/// What tokens say about their issuer, audience and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    /// The `iss` of every token (default `https://auth.dovetail.internal`); verifiers are
    /// configured with the same.
    pub issuer: String,
    /// The `aud` of every token: the services that accept it (default the auth, policy,
    /// claim and search services). Must include `auth-service` so that this service
    /// accepts its own tokens.
    pub audiences: Vec<String>,
    /// How long an access token is valid, in seconds (default 900: 15 minutes).
    pub access_ttl_seconds: u64,
    /// How long a rotated-in signing key is in the JWKS before it signs, in seconds
    /// (default 60): keep it above the verifiers' JWKS refetch interval (30 s by
    /// default), or a verifier that fetched just before the rotation refuses the new
    /// key's tokens until it may fetch again.
    pub signing_key_publish_ahead_seconds: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "https://auth.dovetail.internal".to_owned(),
            audiences: [
                crate::SERVICE,
                "policy-service",
                "claim-service",
                "search-service",
                "gateway-service",
                "consistency-service",
            ]
            .map(str::to_owned)
            .to_vec(),
            access_ttl_seconds: 900,
            signing_key_publish_ahead_seconds: 60,
        }
    }
}

impl TokenConfig {
    /// The access tokens' lifetime.
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_ttl_seconds)
    }

    /// How long a new signing key is published before it signs.
    pub fn signing_key_publish_ahead(&self) -> Duration {
        Duration::from_secs(self.signing_key_publish_ahead_seconds)
    }
}

/// An access token as `POST /sessions` answers it.
#[derive(Clone, Serialize)]
pub struct AccessToken {
    /// The compact JWS.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a [String],
    sub: &'a str,
    exp: i64,
    nbf: i64,
    iat: i64,
    jti: String,
    roles: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<&'a str>,
}

/// Issues access tokens for users, signed by `keys`' signing key.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    config: TokenConfig,
    keys: KeyRing,
}

impl TokenIssuer {
    /// An issuer of tokens as `config` says, signed by `keys`.
    pub fn new(config: TokenConfig, keys: KeyRing) -> Self {
        Self { config, keys }
    }

    /// What the tokens say about issuer, audience and lifetime.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// An access token for `user`: `sub` the user id, `roles` their role, `customer_id`
    /// for a customer user, `jti` a random UUID, valid from now for the configured
    /// lifetime; the header names the signing key's `kid`.
    pub fn issue(&self, user: &User) -> AccessToken {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(self.config.access_ttl_seconds).unwrap_or(i64::MAX);
        let snapshot = user.snapshot();
        let key = self.keys.signing_key();
        let header = Header {
            alg: "EdDSA",
            typ: "JWT",
            kid: key.kid(),
        };
        let claims = Claims {
            iss: &self.config.issuer,
            aud: &self.config.audiences,
            sub: &snapshot.user_id,
            exp: now.saturating_add(ttl),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: [snapshot.role.as_str()],
            customer_id: snapshot.customer_id.as_deref(),
        };
        let signing_input = format!("{}.{}", encode(&header), encode(&claims));
        let signature = URL_SAFE_NO_PAD.encode(key.sign(signing_input.as_bytes()));
        AccessToken {
            access_token: format!("{signing_input}.{signature}"),
            token_type: "Bearer",
            expires_in: self.config.access_ttl_seconds,
        }
    }
}

/// base64url of the JSON of `value`. These structs of strings and integers always
/// serialise; an empty object would only make the token fail verification.
fn encode(value: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use dovetail_http::identity::{JwksSource, JwtVerifier, Role, VerifierConfig};

    use super::*;
    use crate::domain::Email;

    fn issuer() -> TokenIssuer {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-auth-tokens-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let keys = KeyRing::open(
            &dir,
            crate::keys::KeyTiming {
                retention: Duration::from_secs(900),
                publish_ahead: Duration::ZERO,
            },
        )
        .unwrap();
        TokenIssuer::new(TokenConfig::default(), keys)
    }

    #[tokio::test]
    async fn a_token_verifies_with_the_rings_jwks_and_states_the_user() {
        let issuer = issuer();
        let (user, _) =
            User::register_customer(Email::parse("ada@example.com").unwrap(), "cust-1").unwrap();
        let token = issuer.issue(&user);
        assert_eq!(token.expires_in, 900);
        let keys = JwksSource::from_json(&issuer.keys.jwks().to_string()).unwrap();
        for audience in ["policy-service", "claim-service"] {
            let verifier = JwtVerifier::new(
                VerifierConfig::new("https://auth.dovetail.internal", audience),
                keys.clone(),
            );
            let identity = verifier.verify(&token.access_token).await.unwrap();
            assert_eq!(identity.subject(), user.id());
            assert_eq!(identity.roles(), &[Role::Customer]);
            assert_eq!(identity.customer_id(), Some("cust-1"));
        }
    }

    #[test]
    fn the_header_names_the_signing_key_and_each_token_has_its_own_jti() {
        let issuer = issuer();
        let (user, _) = User::register_staff(Email::parse("staff@example.com").unwrap());
        let header = |token: &AccessToken| -> serde_json::Value {
            let first = token.access_token.split('.').next().unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
        };
        let claims = |token: &AccessToken| -> serde_json::Value {
            let second = token.access_token.split('.').nth(1).unwrap();
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(second).unwrap()).unwrap()
        };
        let (one, two) = (issuer.issue(&user), issuer.issue(&user));
        assert_eq!(header(&one)["kid"], issuer.keys.signing_key().kid());
        assert_eq!(header(&one)["alg"], "EdDSA");
        assert_ne!(claims(&one)["jti"], claims(&two)["jti"]);
        assert_eq!(claims(&one)["roles"], serde_json::json!(["staff"]));
        assert!(claims(&one).get("customer_id").is_none());
        assert_eq!(
            claims(&one)["exp"].as_i64().unwrap() - claims(&one)["iat"].as_i64().unwrap(),
            900
        );
    }
}
