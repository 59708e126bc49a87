//! [`TestIssuer`]: a real Ed25519 signing key whose JWKS is served on 127.0.0.1:0, minting
//! the access tokens a service under test verifies, as the auth service would.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The `iss` of every token a [`TestIssuer`] mints.
pub const TEST_ISSUER: &str = "https://auth.dovetail.test";

/// Mints access tokens signed by a fresh Ed25519 key, and serves that key's JWKS over
/// HTTP on loopback, so the service under test verifies them exactly as it verifies the
/// auth service's: fetched key set, signature, `iss`, `aud`, lifetime, roles.
///
/// ```no_run
/// # async fn example() {
/// let issuer = dovetail_testkit::identity::TestIssuer::start().await;
/// // configure the service with issuer.issuer() and issuer.jwks_url(), then:
/// let customer = issuer.customer_token("claim-service", "cust-1");
/// let staff = issuer.staff_token("claim-service");
/// # let _ = (customer, staff); }
/// ```
pub struct TestIssuer {
    kid: String,
    encoding: EncodingKey,
    jwks_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("kid", &self.kid)
            .field("jwks_url", &self.jwks_url)
            .finish_non_exhaustive()
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIssuer {
    /// A fresh key, its JWKS served at [`jwks_url`](Self::jwks_url) until the issuer drops.
    ///
    /// # Panics
    /// When no key can be generated or no loopback port bound.
    pub async fn start() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .expect("an Ed25519 key for the test issuer");
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .expect("the generated key parses")
            .public_key()
            .as_ref()
            .to_vec();
        let kid = format!("test-{}", uuid::Uuid::new_v4().simple());
        let jwks = json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public),
            "kid": kid, "alg": "EdDSA", "use": "sig"
        }]})
        .to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the test JWKS");
        let jwks_url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("the bound address")
        );
        let server = tokio::spawn(serve(listener, Arc::from(jwks)));
        Self {
            kid,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwks_url,
            server,
        }
    }

    /// The `iss` to configure the service with.
    pub fn issuer(&self) -> &str {
        TEST_ISSUER
    }

    /// The URL of the key set to configure the service with.
    pub fn jwks_url(&self) -> &str {
        &self.jwks_url
    }

    /// Claims of a valid token for `audience` from user `subject` with `roles`, valid for
    /// five minutes: change them and [`sign`](Self::sign) to make a bad one.
    pub fn claims(&self, audience: &str, subject: &str, roles: &[&str]) -> Value {
        let now = unix_now();
        json!({
            "iss": TEST_ISSUER, "aud": audience, "sub": subject,
            "iat": now, "nbf": now, "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(), "roles": roles,
        })
    }

    /// A token for `audience` from a customer user bound to `customer_id`.
    pub fn customer_token(&self, audience: &str, customer_id: &str) -> String {
        let mut claims = self.claims(audience, &format!("user-of-{customer_id}"), &["customer"]);
        claims["customer_id"] = json!(customer_id);
        self.sign(&claims)
    }

    /// A token for `audience` from a staff user.
    pub fn staff_token(&self, audience: &str) -> String {
        self.sign(&self.claims(audience, "user-staff", &["staff"]))
    }

    /// `claims` signed with this issuer's key (EdDSA, its `kid` in the header).
    ///
    /// # Panics
    /// When the claims cannot be serialised.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("the claims serialise")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Answers every request on `listener` with the JWKS: enough HTTP/1.1 for a verifier's
/// GET, without a web framework in the testkit.
async fn serve(listener: TcpListener, jwks: Arc<str>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let jwks = Arc::clone(&jwks);
        tokio::spawn(async move {
            let mut request = [0_u8; 4096];
            if stream.read(&mut request).await.is_err() {
                return;
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
