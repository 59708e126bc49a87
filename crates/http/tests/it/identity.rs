//! The identity layer end to end: each refused token, key rotation, the refetch bound,
//! a JWKS endpoint that is down, roles and customer ownership.

use std::time::Duration;

use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dovetail_http::identity::{
    Algorithm, JwksConfig, JwksSource, JwtVerifier, Role, VerifierConfig,
};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use crate::support::*;

const LONG: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_identity() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let claims = claims();
    let answer = get_as(&app, "/me", Some(&key.mint(&claims))).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(
        answer.body,
        json!({"sub": "user-7", "roles": ["customer"], "customer_id": "cust-7",
               "jti": "token-1", "exp": claims["exp"]})
    );
}

#[tokio::test]
async fn no_token_is_401_with_a_challenge_without_error() {
    let app = app(static_verifier(&[&SigningKey::ed25519("k1")], &[]));
    let answer = get_as(&app, "/me", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.challenge(), "Bearer realm=\"dovetail\"");
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        answer.detail().contains("Authorization: Bearer"),
        "{}",
        answer.detail()
    );
}

#[tokio::test]
async fn open_routes_need_no_token() {
    let app = app(static_verifier(&[&SigningKey::ed25519("k1")], &[]));
    assert_eq!(get_as(&app, "/healthz", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_expired_token_is_401_saying_when_and_what_to_do() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut claims = claims();
    claims["exp"] = (now() - 31 - 5).into();
    let token = key.mint(&claims);
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "log in again or refresh it");
}

#[tokio::test]
async fn expiry_within_the_leeway_is_accepted() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut claims = claims();
    claims["exp"] = (now() - 10).into();
    let answer = get_as(&app, "/me", Some(&key.mint(&claims))).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_not_yet_valid_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut claims = claims();
    claims["nbf"] = (now() + 120).into();
    let token = key.mint(&claims);
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "not valid before");
}

#[tokio::test]
async fn a_tampered_payload_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let token = key.mint(&claims());
    let mut forged = claims();
    forged["roles"] = json!(["staff"]);
    let tampered = with_part(&token, 1, &forged);
    get_as(&app, "/me", Some(&tampered))
        .await
        .assert_refused(&tampered, "signature does not verify");
}

#[tokio::test]
async fn a_tampered_signature_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let token = key.mint(&claims());
    let (message, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 0x01;
    let tampered = format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes));
    get_as(&app, "/me", Some(&tampered))
        .await
        .assert_refused(&tampered, "signature does not verify");
}

#[tokio::test]
async fn a_token_for_another_audience_is_401_naming_both() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut claims = claims();
    claims["aud"] = "policy-service".into();
    let token = key.mint(&claims);
    let answer = get_as(&app, "/me", Some(&token)).await;
    answer.assert_refused(
        &token,
        "audience is `policy-service`, this service is `claim-service`",
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut claims = claims();
    claims["iss"] = "https://evil.example".into();
    let token = key.mint(&claims);
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "this service trusts `https://auth.dovetail.test`");
}

#[tokio::test]
async fn an_unsigned_token_alg_none_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let token = format!("{header}.{payload}.");
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "unsigned (alg none)");
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_401() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let secret = EncodingKey::from_secret(&key.public).unwrap();
    let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "signed with HS256; this service accepts only EdDSA");
}

#[tokio::test]
async fn an_es256_token_where_only_eddsa_is_allowed_is_401() {
    let ed = SigningKey::ed25519("k1");
    let ec = SigningKey::p256("p1");
    let app = app(static_verifier(&[&ed, &ec], &[]));
    let token = ec.mint(&claims());
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "signed with ES256; this service accepts only EdDSA");
}

#[tokio::test]
async fn an_es256_token_verifies_where_es256_is_configured() {
    let ec = SigningKey::p256("p1");
    let app = app(static_verifier(&[&ec], &[Algorithm::ES256]));
    let answer = get_as(&app, "/me", Some(&ec.mint(&claims()))).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

#[tokio::test]
async fn a_token_naming_a_key_of_another_algorithm_is_401() {
    let ed = SigningKey::ed25519("k1");
    let ec = SigningKey::p256("p1");
    let app = app(static_verifier(
        &[&ed, &ec],
        &[Algorithm::EdDSA, Algorithm::ES256],
    ));
    let token = ed.mint_as("p1", &claims());
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "is not a EdDSA key");
}

#[tokio::test]
async fn an_unknown_kid_is_fetched_once_then_401() {
    let known = SigningKey::ed25519("k1");
    let stranger = SigningKey::ed25519("k-stranger");
    let server = JwksServer::start(&[&known]).await;
    let app = app(server.verifier(jwks_config(LONG, LONG)));
    assert_eq!(
        get_as(&app, "/me", Some(&known.mint(&claims())))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(server.fetches(), 1);
    let token = stranger.mint(&claims());
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "key `k-stranger`, which this service does not know");
    assert_eq!(server.fetches(), 2, "one refetch for the unknown kid");
    get_as(&app, "/me", Some(&token))
        .await
        .assert_refused(&token, "does not know");
    assert_eq!(server.fetches(), 2, "no second refetch within the interval");
}

#[tokio::test]
async fn key_rotation_new_key_after_one_refetch_old_key_until_it_leaves() {
    let old = SigningKey::ed25519("2024-old");
    let new = SigningKey::ed25519("2025-new");
    let server = JwksServer::start(&[&old]).await;
    let max_age = Duration::from_millis(300);
    let app = app(server.verifier(jwks_config(Duration::from_millis(50), max_age)));
    let old_token = old.mint(&claims());
    assert_eq!(
        get_as(&app, "/me", Some(&old_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(server.fetches(), 1);

    server.set_keys(&[&old, &new]);
    let new_token = new.mint(&claims());
    assert_eq!(
        get_as(&app, "/me", Some(&new_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.fetches(),
        2,
        "the new kid verified after one refetch"
    );
    assert_eq!(
        get_as(&app, "/me", Some(&old_token)).await.status,
        StatusCode::OK
    );
    assert_eq!(server.fetches(), 2);

    server.set_keys(&[&new]);
    tokio::time::sleep(max_age + Duration::from_millis(50)).await;
    get_as(&app, "/me", Some(&old_token)).await.assert_refused(
        &old_token,
        "key `2024-old`, which this service does not know",
    );
    assert_eq!(server.fetches(), 3, "the old cache was refreshed once");
    assert_eq!(
        get_as(&app, "/me", Some(&new_token)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_kids_cause_at_most_one_fetch_per_interval() {
    let known = SigningKey::ed25519("k1");
    let server = JwksServer::start(&[&known]).await;
    let interval = Duration::from_millis(400);
    let app = app(server.verifier(jwks_config(interval, LONG)));
    assert_eq!(
        get_as(&app, "/me", Some(&known.mint(&claims())))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(server.fetches(), 1);
    tokio::time::sleep(interval + Duration::from_millis(50)).await;

    for burst in 0..2 {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..40 {
            let token = known.mint_as(&format!("made-up-{burst}-{i}"), &claims());
            let app = app.clone();
            requests.spawn(async move { get_as(&app, "/me", Some(&token)).await.status });
        }
        while let Some(status) = requests.join_next().await {
            assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
        }
        assert_eq!(
            server.fetches(),
            2 + burst,
            "burst {burst}: one fetch for 40 unknown kids"
        );
        tokio::time::sleep(interval + Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_jwks_that_is_down_keeps_cached_keys_and_refuses_unknown_kids() {
    let known = SigningKey::ed25519("k1");
    let stranger = SigningKey::ed25519("k2");
    let mut server = JwksServer::start(&[&known]).await;
    let app = app(server.verifier(jwks_config(
        Duration::from_millis(10),
        Duration::from_millis(100),
    )));
    let token = known.mint(&claims());
    assert_eq!(
        get_as(&app, "/me", Some(&token)).await.status,
        StatusCode::OK
    );

    server.fail_with_503();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        get_as(&app, "/me", Some(&token)).await.status,
        StatusCode::OK,
        "503: cached key"
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let mut claims = claims();
    claims["jti"] = "token-2".into();
    let fresh = known.mint(&claims);
    assert_eq!(
        get_as(&app, "/me", Some(&fresh)).await.status,
        StatusCode::OK,
        "down: cached key"
    );

    let unknown = stranger.mint(&claims);
    get_as(&app, "/me", Some(&unknown))
        .await
        .assert_refused(&unknown, "the key set cannot be fetched now; retry later");
}

#[tokio::test]
async fn a_jwks_never_reached_refuses_every_token_without_panicking() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let source =
        dovetail_http::identity::JwksSource::from_url(url, jwks_config(LONG, LONG)).unwrap();
    let verifier = dovetail_http::identity::JwtVerifier::new(
        dovetail_http::identity::VerifierConfig::new(ISSUER, AUDIENCE),
        source,
    );
    let key = SigningKey::ed25519("k1");
    let token = key.mint(&claims());
    get_as(&app(verifier), "/me", Some(&token))
        .await
        .assert_refused(&token, "does not know");
}

#[tokio::test]
async fn require_staff_is_403_naming_the_role() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let answer = get_as(&app, "/staff", Some(&key.mint(&claims()))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.detail().contains("needs the staff role"),
        "{}",
        answer.detail()
    );

    let mut staff = claims();
    staff["roles"] = json!(["staff"]);
    staff["customer_id"] = serde_json::Value::Null;
    let answer = get_as(&app, "/staff", Some(&key.mint(&staff))).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_customer_acts_for_their_own_customer_and_staff_for_any() {
    let key = SigningKey::ed25519("k1");
    let app = app(static_verifier(&[&key], &[]));
    let customer = key.mint(&claims());
    assert_eq!(
        get_as(&app, "/customers/cust-7", Some(&customer))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get_as(&app, "/customers/cust-8", Some(&customer))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let mut staff = claims();
    staff["roles"] = json!(["staff"]);
    let staff = key.mint(&staff);
    assert_eq!(
        get_as(&app, "/customers/cust-8", Some(&staff)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_handler_not_behind_the_layer_gets_no_identity() {
    let app = axum::Router::new().route(
        "/me",
        axum::routing::get(|identity: dovetail_http::identity::Identity| async move {
            identity.subject().to_owned()
        }),
    );
    let key = SigningKey::ed25519("k1");
    let answer = get_as(&app, "/me", Some(&key.mint(&claims()))).await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a token alone is not trusted"
    );
}

#[tokio::test]
async fn a_header_that_is_not_bearer_is_invalid_request() {
    let app = app(static_verifier(&[&SigningKey::ed25519("k1")], &[]));
    let request = axum::http::Request::get("/me")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn a_testkit_issuer_token_verifies_against_its_served_jwks() {
    let issuer = dovetail_testkit::identity::TestIssuer::start().await;
    let source = JwksSource::from_url(issuer.jwks_url(), JwksConfig::default()).unwrap();
    let verifier = JwtVerifier::new(VerifierConfig::new(issuer.issuer(), AUDIENCE), source);

    let customer = verifier
        .verify(&issuer.customer_token(AUDIENCE, "cust-3"))
        .await
        .unwrap();
    assert_eq!(customer.customer_id(), Some("cust-3"));
    assert!(customer.has_role(Role::Customer) && !customer.has_role(Role::Staff));
    let staff = verifier
        .verify(&issuer.staff_token(AUDIENCE))
        .await
        .unwrap();
    assert!(staff.has_role(Role::Staff));
    let elsewhere = verifier.verify(&issuer.staff_token("policy-service")).await;
    assert!(elsewhere.is_err(), "a token for another audience verifies");
}
