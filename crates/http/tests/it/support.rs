//! What the identity tests share: key pairs, token minting, a JWKS server on 127.0.0.1:0
//! that counts its fetches, and a small API behind the layer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dovetail_http::Problem;
use dovetail_http::identity::{
    Identity, IdentityLayer, JwksConfig, JwksSource, JwtVerifier, Role, VerifierConfig,
};
use http_body_util::BodyExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ISSUER: &str = "https://auth.dovetail.test";
pub const AUDIENCE: &str = "claim-service";

/// A signing key with its kid and public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
    /// The raw public key (for the algorithm-confusion test).
    pub public: Vec<u8>,
}

impl SigningKey {
    pub fn ed25519(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        Self::from_der(
            kid,
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(pkcs8.as_ref()),
            public,
        )
    }

    pub fn p256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let public = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        Self::from_der(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(pkcs8.as_ref()),
            public,
        )
    }

    fn from_der(kid: &str, alg: Algorithm, encoding: EncodingKey, public: Vec<u8>) -> Self {
        let jwk = match alg {
            Algorithm::EdDSA => json!({
                "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&public),
                "kid": kid, "alg": "EdDSA", "use": "sig"
            }),
            _ => json!({
                "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
                "kid": kid, "alg": "ES256", "use": "sig"
            }),
        };
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            jwk: serde_json::from_value(jwk).unwrap(),
            public,
        }
    }

    /// A token with these claims, signed by this key and naming its kid.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_as(&self.kid, claims)
    }

    /// A token signed by this key that names `kid`.
    pub fn mint_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn now() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// The claims of a valid customer token for the test audience.
pub fn claims() -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-7", "exp": now + 300, "nbf": now - 5,
        "iat": now, "jti": "token-1", "roles": ["customer", "auditor"], "customer_id": "cust-7"
    })
}

pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| &k.jwk).collect::<Vec<_>>() }).to_string()
}

pub fn static_verifier(
    keys: &[&SigningKey],
    algorithms: &[dovetail_http::identity::Algorithm],
) -> JwtVerifier {
    let mut config = VerifierConfig::new(ISSUER, AUDIENCE);
    if !algorithms.is_empty() {
        config.algorithms = algorithms.to_vec();
    }
    JwtVerifier::new(config, JwksSource::from_json(&jwks(keys)).unwrap())
}

/// A JWKS endpoint on 127.0.0.1:0 whose keys can change, that counts its fetches, can be
/// made to answer 503, and can be stopped.
pub struct JwksServer {
    pub url: String,
    state: Arc<ServerState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

struct ServerState {
    body: Mutex<String>,
    fetches: AtomicUsize,
    failing: AtomicBool,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let state = Arc::new(ServerState {
            body: Mutex::new(jwks(keys)),
            fetches: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/jwks", get(serve_jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.body.lock().unwrap() = jwks(keys);
    }

    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    pub fn fail_with_503(&self) {
        self.state.failing.store(true, Ordering::SeqCst);
    }

    /// Stops the server: its port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
    }

    pub fn verifier(&self, config: JwksConfig) -> JwtVerifier {
        let source = JwksSource::from_url(&self.url, config).unwrap();
        JwtVerifier::new(VerifierConfig::new(ISSUER, AUDIENCE), source)
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
    }
    (StatusCode::OK, state.body.lock().unwrap().clone())
}

pub fn jwks_config(refetch_interval: Duration, max_age: Duration) -> JwksConfig {
    let mut config = JwksConfig::default();
    config.refetch_interval = refetch_interval;
    config.max_age = max_age;
    config.fetch_timeout = Duration::from_secs(2);
    config
}

/// The API the tests put behind the layer, with `/healthz` left open.
pub fn app(verifier: JwtVerifier) -> Router {
    let api = Router::new()
        .route("/me", get(me))
        .route("/staff", get(staff_only))
        .route("/customers/{customer}", get(customer))
        .layer(IdentityLayer::new(verifier));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
}

async fn me(identity: Identity) -> Json<Value> {
    Json(json!({
        "sub": identity.subject(),
        "roles": identity.roles().iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        "customer_id": identity.customer_id(),
        "jti": identity.token_id(),
        "exp": identity.expires_at().unix_timestamp(),
    }))
}

async fn staff_only(identity: Identity) -> Result<&'static str, Problem> {
    identity.require(Role::Staff)?;
    Ok("staff only")
}

async fn customer(identity: Identity, Path(customer): Path<String>) -> Result<String, Problem> {
    if identity.may_act_for_customer(&customer) {
        Ok(format!("customer {customer}"))
    } else {
        Err(Problem::not_found(format!(
            "no customer {customer} among yours"
        )))
    }
}

/// The answer to GET `path` with `token` as bearer token (none if `None`).
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_default()
    }

    pub fn challenge(&self) -> &str {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }

    /// 401 problem+json, a challenge with `error="invalid_token"`, and a detail that
    /// contains `needle` and never the token.
    #[track_caller]
    pub fn assert_refused(&self, token: &str, needle: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{:?}", self.body);
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(
            self.challenge().starts_with(
                "Bearer realm=\"dovetail\", error=\"invalid_token\", error_description=\""
            ),
            "{}",
            self.challenge()
        );
        assert!(
            self.detail().contains(needle),
            "{:?} lacks {needle:?}",
            self.detail()
        );
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!self.detail().contains(part), "the detail echoes the token");
            assert!(
                !self.challenge().contains(part),
                "the challenge echoes the token"
            );
        }
    }
}

pub async fn get_as(app: &Router, path: &str, token: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// `part` of a token (0 header, 1 payload) replaced by the base64url of `json`.
pub fn with_part(token: &str, part: usize, json: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[part] = URL_SAFE_NO_PAD.encode(json.to_string());
    parts.join(".")
}
