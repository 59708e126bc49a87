//! Sessions over HTTP, on the SQLite store (on Redis in `needs_servers`): log-in gives a refresh token,
//! refresh rotates it, reuse revokes the family, log-out, password change and disable
//! revoke, expiry; throttling per account and per address without a password check, the
//! address being the peer's unless the peer is a trusted proxy (then what it forwards);
//! attempts made at once counted before any runs; and what log-in and refresh answer
//! while Redis is down (503, fail closed).

use std::time::Duration;

use dovetail_auth::AuthConfig;
use dovetail_auth::sessions::SessionBackend;
use serde_json::{Value, json};

use crate::support::{PASSWORD, Service, assert_problem, claims_of};

/// Logs in; the whole JSON answer.
async fn log_in(service: &Service, email: &str) -> Value {
    let response = service.log_in(email, PASSWORD).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    response.json().await.unwrap()
}

async fn refresh(service: &Service, token: &Value) -> reqwest::Response {
    service
        .post("/sessions/refresh", &json!({"refresh_token": token}))
        .await
}

async fn refreshed(service: &Service, token: &Value) -> Value {
    let response = refresh(service, token).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn assert_revoked(service: &Service, token: &Value) {
    assert_problem(refresh(service, token).await, 401, "session was revoked").await;
}

/// A service whose sessions are in Redis under `fixture`'s namespace.
pub(crate) async fn start_on_redis(fixture: &dovetail_testkit::RedisFixture) -> Service {
    let endpoint = dovetail_testkit::require(dovetail_testkit::Backend::Redis).await;
    Service::start_with(|config: &mut AuthConfig| {
        config.sessions.backend = SessionBackend::Redis;
        config.sessions.url = Some(endpoint);
        config.sessions.key_prefix = format!("{}:", fixture.namespace());
    })
    .await
}

/// Log-in, rotation, reuse: the old token is refused as reuse, and the family's newest
/// token is refused after it.
pub(crate) async fn rotation_and_reuse(service: &Service) {
    service.register("ada@example.com", "cust-1").await;
    let login = log_in(service, "ada@example.com").await;
    assert_eq!(login["token_type"], "Bearer");
    assert_eq!(login["refresh_expires_in"], 1_209_600);
    let first = login["refresh_token"].clone();
    assert_eq!(first.as_str().unwrap().len(), 43);

    let second = refreshed(service, &first).await;
    assert_ne!(second["refresh_token"], first);
    let access = second["access_token"].as_str().unwrap();
    service
        .verifier("policy-service")
        .verify(access)
        .await
        .unwrap();
    assert_eq!(
        claims_of(access)["sub"],
        claims_of(login["access_token"].as_str().unwrap())["sub"]
    );
    let third = refreshed(service, &second["refresh_token"]).await;

    let reuse = assert_problem(refresh(service, &first).await, 401, "log in again").await;
    assert_eq!(
        reuse["type"],
        "https://dovetail.dev/problems/session-revoked"
    );
    assert_revoked(service, &third["refresh_token"]).await;

    // A new log-in is a new family, untouched by the revoked one.
    let again = log_in(service, "ada@example.com").await;
    refreshed(service, &again["refresh_token"]).await;
    let unknown = refresh(service, &json!("A".repeat(43))).await;
    assert_problem(unknown, 401, "unknown or expired").await;
}

#[tokio::test]
async fn log_in_gives_a_refresh_token_that_rotates_and_whose_reuse_revokes_the_family() {
    let service = Service::start().await;
    rotation_and_reuse(&service).await;
    service.stop().await;
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_give_one_success_and_revoke_the_family() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    let token = log_in(&service, "ada@example.com").await["refresh_token"].clone();
    let (a, b) = tokio::join!(refresh(&service, &token), refresh(&service, &token));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
    let winner = if a.status() == 200 { a } else { b };
    let body: Value = winner.json().await.unwrap();
    assert_revoked(&service, &body["refresh_token"]).await;
    service.stop().await;
}

#[tokio::test]
async fn log_out_revokes_the_family_and_answers_204_for_any_token() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    let token = log_in(&service, "ada@example.com").await["refresh_token"].clone();
    let other = log_in(&service, "ada@example.com").await["refresh_token"].clone();
    for presented in [token.clone(), token.clone(), json!("not-a-token")] {
        let response = service
            .post("/sessions/logout", &json!({"refresh_token": presented}))
            .await;
        assert_eq!(response.status(), 204);
    }
    assert_revoked(&service, &token).await;
    refreshed(&service, &other).await;
    service.stop().await;
}

#[tokio::test]
async fn a_password_change_revokes_every_session_of_the_user() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    let one = log_in(&service, "ada@example.com").await;
    let two = log_in(&service, "ada@example.com").await;
    let changed = service
        .post_as(
            one["access_token"].as_str().unwrap(),
            "/users/me/password",
            &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    assert_revoked(&service, &one["refresh_token"]).await;
    assert_revoked(&service, &two["refresh_token"]).await;
    service.stop().await;
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh() {
    let service = Service::start().await;
    service.register("bob@example.com", "cust-2").await;
    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let staff = service.token("staff@example.com", PASSWORD).await;
    let bob = log_in(&service, "bob@example.com").await;
    let bob_id = claims_of(bob["access_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = service
        .post_as(&staff, &format!("/users/{bob_id}/disable"), &json!({}))
        .await;
    assert_eq!(disabled.status(), 200);
    assert_revoked(&service, &bob["refresh_token"]).await;
    service.stop().await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let service = Service::start_with(|config| config.sessions.refresh_ttl_seconds = 1).await;
    service.register("ada@example.com", "cust-1").await;
    let token = log_in(&service, "ada@example.com").await["refresh_token"].clone();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_problem(refresh(&service, &token).await, 401, "unknown or expired").await;
    service.stop().await;
}

#[tokio::test]
async fn a_refresh_token_never_outlives_its_family() {
    let service = Service::start_with(|config| config.sessions.family_ttl_seconds = 100).await;
    service.register("ada@example.com", "cust-1").await;
    let login = log_in(&service, "ada@example.com").await;
    assert_eq!(login["refresh_expires_in"], 100);
    let next = refreshed(&service, &login["refresh_token"]).await;
    let left = next["refresh_expires_in"].as_u64().unwrap();
    assert!((98..=100).contains(&left), "{left}");
    service.stop().await;
}

/// Asserts a 429 with a `Retry-After` of at most `window` seconds; the problem's JSON.
async fn assert_throttled(response: reqwest::Response, window: u64) -> Value {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a 429 says when to retry")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=window).contains(&retry_after), "{retry_after}");
    let mut body = assert_problem(response, 429, "too many failed attempts").await;
    // Each request's own id, so that refusals can be compared.
    body.as_object_mut().unwrap().remove("request_id");
    body
}

#[tokio::test]
async fn failed_log_ins_are_throttled_per_account_unknown_emails_alike_without_a_password_check() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    for email in ["ada@example.com", "nobody@example.com"] {
        for _ in 0..5 {
            let response = service.log_in(email, "not the password").await;
            assert_eq!(response.status(), 401);
        }
    }
    let checks = service.admin.password_checks();
    assert_eq!(checks, 10, "each refused log-in checked a password");
    let mut bodies = Vec::new();
    for (email, password) in [
        ("ada@example.com", PASSWORD),
        ("  ADA@example.com", "not the password"),
        ("nobody@example.com", PASSWORD),
    ] {
        let response = service.log_in(email, password).await;
        bodies.push(assert_throttled(response, 900).await);
    }
    assert_eq!(
        service.admin.password_checks(),
        checks,
        "a throttled log-in checks no password"
    );
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "known and unknown emails get the same 429: {bodies:?}"
    );
    // Other accounts are not throttled.
    service.register("bob@example.com", "cust-2").await;
    log_in(&service, "bob@example.com").await;
    service.stop().await;
}

#[tokio::test]
async fn log_ins_made_at_once_cannot_slip_past_the_account_limit() {
    let service = std::sync::Arc::new(Service::start().await);
    service.register("ada@example.com", "cust-1").await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let service = std::sync::Arc::clone(&service);
        attempts.spawn(async move {
            service
                .log_in("ada@example.com", "not the password")
                .await
                .status()
                .as_u16()
        });
    }
    let statuses = attempts.join_all().await;
    let refused = statuses.iter().filter(|&&status| status == 401).count();
    let throttled = statuses.iter().filter(|&&status| status == 429).count();
    assert_eq!((refused, throttled), (5, 15), "{statuses:?}");
    std::sync::Arc::into_inner(service).unwrap().stop().await;
}

#[tokio::test]
async fn a_successful_log_in_clears_the_accounts_failures() {
    let service = Service::start_with(|config| {
        config.sessions.throttle.per_account.max_failures = 3;
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    for _ in 0..3 {
        for _ in 0..2 {
            let response = service.log_in("ada@example.com", "wrong password").await;
            assert_eq!(response.status(), 401);
        }
        log_in(&service, "ada@example.com").await;
    }
    service.stop().await;
}

#[tokio::test]
async fn failed_log_ins_are_throttled_per_address_across_accounts() {
    let service = Service::start_with(|config| {
        config.sessions.throttle.per_address.max_failures = 4;
        config.sessions.throttle.per_address.window_seconds = 60;
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    for index in 0..4 {
        let response = service
            .log_in(&format!("user{index}@example.com"), PASSWORD)
            .await;
        assert_eq!(response.status(), 401);
    }
    assert_throttled(service.log_in("ada@example.com", PASSWORD).await, 60).await;
    service.stop().await;
}

/// A log-in with `X-Forwarded-For: <forwarded>` (each value its own header field).
async fn log_in_forwarded(
    service: &Service,
    forwarded: &[&str],
    email: &str,
    password: &str,
) -> reqwest::Response {
    let mut request = service
        .http
        .post(service.url("/sessions"))
        .json(&json!({"email": email, "password": password}));
    for value in forwarded {
        request = request.header("x-forwarded-for", *value);
    }
    request.send().await.unwrap()
}

/// The service with 3 failed log-ins allowed per address a minute (and many per account,
/// so only the address limit bites), trusting `trusted_proxies`.
async fn start_with_address_limit(trusted_proxies: &[&str]) -> Service {
    let service = Service::start_with(|config| {
        config.sessions.throttle.per_address.max_failures = 3;
        config.sessions.throttle.per_address.window_seconds = 60;
        config.sessions.throttle.per_account.max_failures = 100;
        config.http.trusted_proxies = trusted_proxies
            .iter()
            .map(|proxy| proxy.parse().unwrap())
            .collect();
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    service
}

#[tokio::test]
async fn from_an_untrusted_peer_a_forged_x_forwarded_for_does_not_escape_the_address_limit() {
    // The test's peer is 127.0.0.1; only another address is trusted.
    let service = start_with_address_limit(&["10.0.0.5", "192.168.0.0/16"]).await;
    for forged in ["203.0.113.1", "203.0.113.2, 10.0.0.5", "garbage"] {
        let response = log_in_forwarded(&service, &[forged], "ada@example.com", "wrong").await;
        assert_eq!(response.status(), 401, "{forged}");
    }
    // A fresh forged address, and none at all: the same peer, throttled.
    for forged in [&["198.51.100.77"][..], &["198.51.100.78", "10.0.0.5"], &[]] {
        let response = log_in_forwarded(&service, forged, "ada@example.com", PASSWORD).await;
        assert_throttled(response, 60).await;
    }
    service.stop().await;
}

#[tokio::test]
async fn from_a_trusted_peer_each_forwarded_client_is_throttled_on_its_own() {
    let service = start_with_address_limit(&["127.0.0.1"]).await;
    // Client A fails three times, through one proxy or two (the inner one trusted).
    for forwarded in [
        &["203.0.113.1"][..],
        &["203.0.113.1, 127.0.0.1"],
        &["198.51.100.9", "203.0.113.1"],
    ] {
        let response = log_in_forwarded(&service, forwarded, "ada@example.com", "wrong").await;
        assert_eq!(response.status(), 401, "{forwarded:?}");
    }
    let a = log_in_forwarded(&service, &["203.0.113.1"], "ada@example.com", PASSWORD).await;
    assert_throttled(a, 60).await;
    // What the client writes left of the proxy's entry is not believed: still A.
    let a = log_in_forwarded(
        &service,
        &["198.51.100.1, 203.0.113.1"],
        "ada@example.com",
        PASSWORD,
    )
    .await;
    assert_throttled(a, 60).await;

    // Client B, behind the same gateway, is not throttled: its own bucket.
    let b = log_in_forwarded(&service, &["203.0.113.2"], "ada@example.com", PASSWORD).await;
    assert_eq!(b.status(), 200, "{:?}", b.text().await);
    let b6 = log_in_forwarded(&service, &["2001:db8::2"], "ada@example.com", PASSWORD).await;
    assert_eq!(b6.status(), 200, "{:?}", b6.text().await);

    // Garbage where the client should be counts against the gateway itself, which has
    // not failed yet; three such failures throttle the gateway but not A's neighbour C.
    for forwarded in [&["unknown"][..], &[""], &["203.0.113.3,"]] {
        let response = log_in_forwarded(&service, forwarded, "ada@example.com", "wrong").await;
        assert_eq!(response.status(), 401, "{forwarded:?}");
    }
    let gateway = log_in_forwarded(&service, &[], "ada@example.com", PASSWORD).await;
    assert_throttled(gateway, 60).await;
    let c = log_in_forwarded(&service, &["203.0.113.3"], "ada@example.com", PASSWORD).await;
    assert_eq!(c.status(), 200, "{:?}", c.text().await);
    service.stop().await;
}

#[tokio::test]
async fn failed_refreshes_are_throttled_per_address() {
    let service = Service::start_with(|config| {
        config.sessions.throttle.refresh_per_address.max_failures = 3;
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    let token = log_in(&service, "ada@example.com").await["refresh_token"].clone();
    for _ in 0..3 {
        assert_eq!(refresh(&service, &json!("forged")).await.status(), 401);
    }
    assert_throttled(refresh(&service, &token).await, 900).await;
    service.stop().await;
}

#[tokio::test]
async fn while_redis_is_down_log_in_and_refresh_fail_closed_with_503_and_retry_after() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let service = Service::start_with(|config| {
        config.sessions.backend = SessionBackend::Redis;
        config.sessions.url = Some(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    service.register("ada@example.com", "cust-1").await;
    let login = service.log_in("ada@example.com", PASSWORD).await;
    assert_eq!(login.headers()["retry-after"], "5");
    let body = assert_problem(login, 503, "session store is unreachable").await;
    assert!(!body.to_string().contains(PASSWORD));
    let token = json!("A".repeat(43));
    assert_problem(refresh(&service, &token).await, 503, "session store").await;
    let logout = service
        .post("/sessions/logout", &json!({"refresh_token": token}))
        .await;
    assert_eq!(logout.status(), 503);
    let ready = service
        .http
        .get(service.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    service.stop().await;
}
