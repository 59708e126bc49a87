//! Benchmark (not a timed test): the throughput of one small axum route behind
//! `IdentityLayer` against the same route without it, in the same run, as a ratio
//! (target ≥ 0.95), medians of 11 rounds with the order alternating between rounds.
//!
//! Run with: `cargo bench -p dovetail-http --bench identity`.
//!
//! Two ways of sending the requests, both printed:
//! - loopback: a real server on 127.0.0.1:0 (axum::serve) and a keep-alive reqwest
//!   client with 4 requests in flight: what a service sees, and the figure the target is
//!   for;
//! - oneshot: `tower::ServiceExt::oneshot` on the router, no socket: the layer's cost
//!   against a route that does nothing, an upper bound on its share.
//!
//! Each with the verified-token cache on (the default: one token sent again and again,
//! as a client does until it expires) and off (every request checks the Ed25519
//! signature and the claims from scratch).
//!
//! What the figures showed (release, a two-core VM with two other builds running, so
//! noisy), with the cache keyed by the token itself: loopback with the cache 0.930
//! (rounds 0.73-2.25; 0.90-0.91 in an earlier run with the SHA-256 key), still not a
//! steady 0.95; without it 0.43 (about 90 µs of Ed25519 and claims work per request).
//! Oneshot with the cache 0.58 (the layer adds about 1.6 µs to a route of about 2.2 µs),
//! without it 0.02.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dovetail_http::identity::{Identity, IdentityLayer, JwksSource, JwtVerifier, VerifierConfig};
use tower::ServiceExt;

const ROUNDS: usize = 11;
const ONESHOT_REQUESTS: usize = 20_000;
const LOOPBACK_REQUESTS: usize = 8_000;
const IN_FLIGHT: usize = 4;

fn key_and_jwks() -> (jsonwebtoken::EncodingKey, String) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_ref()
        .to_vec();
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": "bench"
    }]});
    (
        jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwks.to_string(),
    )
}

fn token(key: &jsonwebtoken::EncodingKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://auth.bench", "aud": "bench", "sub": "user-1", "exp": now + 3600,
        "iat": now, "jti": "t-1", "roles": ["customer"], "customer_id": "cust-1"
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench".into());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn plain() -> Router {
    Router::new().route("/ping", get(|| async { "pong" }))
}

fn guarded(jwks: &str, cache: usize) -> Router {
    let mut config = VerifierConfig::new("https://auth.bench", "bench");
    config.verified_cache_capacity = cache;
    let verifier = JwtVerifier::new(config, JwksSource::from_json(jwks).unwrap());
    Router::new()
        .route(
            "/ping",
            get(|identity: Identity| async move { identity.subject().len().to_string() }),
        )
        .layer(IdentityLayer::new(verifier))
}

async fn oneshot_round(app: &Router, token: &str) -> f64 {
    let bearer = format!("Bearer {token}");
    let started = Instant::now();
    for _ in 0..ONESHOT_REQUESTS {
        let request = Request::get("/ping")
            .header(header::AUTHORIZATION, &bearer)
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
    }
    ONESHOT_REQUESTS as f64 / started.elapsed().as_secs_f64()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ping", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn loopback_round(client: &reqwest::Client, url: &str, token: &str) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let (client, url, bearer) = (client.clone(), url.to_owned(), format!("Bearer {token}"));
        tasks.spawn(async move {
            for _ in 0..LOOPBACK_REQUESTS / IN_FLIGHT {
                let response = client
                    .get(&url)
                    .header(header::AUTHORIZATION, &bearer)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                response.bytes().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    LOOPBACK_REQUESTS as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Runs `round(with_layer)` for both in alternating order; prints and returns the median
/// throughputs and ratio.
async fn compare<F, Fut>(name: &str, mut round: F)
where
    F: FnMut(bool) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let (mut with, mut without, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (w, wo) = if r % 2 == 0 {
            let w = round(true).await;
            (w, round(false).await)
        } else {
            let wo = round(false).await;
            (round(true).await, wo)
        };
        ratios.push(w / wo);
        with.push(w);
        without.push(wo);
    }
    let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "{name:<34} with layer {:>9.0} req/s, without {:>9.0} req/s, ratio median {:.3} (rounds {})",
        median(&mut with),
        median(&mut without),
        median(&mut ratios),
        rounds.join(" ")
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (key, jwks) = key_and_jwks();
        let token = token(&key);
        let plain_app = plain();
        for (label, cache) in [("cache on", 10_000), ("cache off", 0)] {
            let guarded_app = guarded(&jwks, cache);
            let (g, p, t) = (&guarded_app, &plain_app, token.as_str());
            compare(&format!("oneshot, {label}"), |layer| async move {
                oneshot_round(if layer { g } else { p }, t).await
            })
            .await;
        }
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let plain_url = serve(plain_app).await;
        for (label, cache) in [("cache on", 10_000), ("cache off", 0)] {
            let guarded_url = serve(guarded(&jwks, cache)).await;
            let (client, g, p, t) = (&client, &guarded_url, &plain_url, token.as_str());
            compare(&format!("loopback, {label}"), |layer| async move {
                loopback_round(client, if layer { g } else { p }, t).await
            })
            .await;
        }
    });
}
