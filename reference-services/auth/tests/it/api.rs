//! What clients see: tokens other services accept, refusals that tell nothing, the
//! password rule, one user per email under a race, events without secrets, staff-only
//! disabling and password changes.

use dovetail_http::identity::Role;
use serde_json::{Value, json};

use crate::support::{PASSWORD, Service, assert_problem, claims_of};

#[tokio::test]
async fn register_then_log_in_gives_a_token_other_services_verify_with_the_served_jwks() {
    let service = Service::start().await;
    service.register("  Ada@Example.com ", "cust-7").await;
    let response = service.log_in("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    for audience in ["policy-service", "claim-service", "search-service"] {
        let identity = service.verifier(audience).verify(token).await.unwrap();
        assert_eq!(identity.roles(), &[Role::Customer]);
        assert_eq!(identity.customer_id(), Some("cust-7"));
        assert!(identity.subject().starts_with("usr-"));
        assert!(identity.may_act_for_customer("cust-7"));
        assert!(!identity.may_act_for_customer("cust-8"));
    }
    let claims = claims_of(token);
    assert_eq!(claims["iss"], "https://auth.dovetail.internal");
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    assert!(
        service
            .verifier("unknown-service")
            .verify(token)
            .await
            .is_err(),
        "a token is for the configured audiences only"
    );
    service.stop().await;
}

#[tokio::test]
async fn wrong_password_unknown_email_and_disabled_user_get_the_same_401() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    service.register("bob@example.com", "cust-2").await;
    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let staff = service.token("staff@example.com", PASSWORD).await;
    let bob = service.token("bob@example.com", PASSWORD).await;
    let bob_id = claims_of(&bob)["sub"].as_str().unwrap().to_owned();
    let disabled = service
        .post_as(&staff, &format!("/users/{bob_id}/disable"), &json!({}))
        .await;
    assert_eq!(disabled.status(), 200);

    let mut bodies = Vec::new();
    for (email, password) in [
        ("ada@example.com", "not the password"),
        ("nobody@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("bob@example.com", PASSWORD),
    ] {
        let response = service.log_in(email, password).await;
        let mut body = assert_problem(response, 401, "do not match an enabled account").await;
        // Each request's own id; nothing else may tell the refusals apart.
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "every refusal is the same problem: {bodies:?}"
    );
    assert_eq!(
        bodies[0]["type"],
        "https://dovetail.dev/problems/invalid-credentials"
    );
    // A disabled user's token, still unexpired, cannot change the password either.
    let change = service
        .post_as(
            &bob,
            "/users/me/password",
            &json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    let mut refused = assert_problem(change, 401, "do not match an enabled account").await;
    refused.as_object_mut().unwrap().remove("request_id");
    assert_eq!(refused, bodies[0]);
    service.stop().await;
}

#[tokio::test]
async fn a_too_short_password_is_a_problem_stating_the_rule() {
    let service = Service::start().await;
    // Seven characters, though 28 bytes: the rule counts characters.
    let response = service
        .post(
            "/users",
            &json!({"email": "ada@example.com", "password": "🦀🦀🦀🦀🦀🦀🦀"}),
        )
        .await;
    let body = assert_problem(response, 422, "8 to 128 characters").await;
    assert_eq!(body["errors"][0]["field"], "password");
    assert!(body["detail"].as_str().unwrap().contains("NIST SP 800-63B"));
    let response = service
        .post(
            "/users",
            &json!({"email": "ada@example.com", "password": "x".repeat(129)}),
        )
        .await;
    assert_problem(response, 422, "8 to 128 characters").await;
    service.stop().await;
}

#[tokio::test]
async fn a_taken_email_gets_the_same_answer_and_changes_nothing() {
    let service = Service::start().await;
    let body = json!({"email": "ada@example.com", "password": PASSWORD});
    let first = service.post("/users", &body).await;
    let (first_status, first_body) = (first.status(), first.text().await.unwrap());
    let first_customer =
        claims_of(&service.token("ada@example.com", PASSWORD).await)["customer_id"].clone();
    let taken = json!({"email": "ADA@example.com", "password": "another password"});
    let second = service.post("/users", &taken).await;
    assert_eq!(second.status(), first_status);
    assert_eq!(second.text().await.unwrap(), first_body);
    // The first registration's password still logs in, as the first customer.
    let token = service.token("ada@example.com", PASSWORD).await;
    assert_eq!(claims_of(&token)["customer_id"], first_customer);
    let refused = service.log_in("ada@example.com", "another password").await;
    assert_eq!(refused.status(), 401);
    service.stop().await;
}

#[tokio::test]
async fn one_email_registered_by_eight_at_once_is_one_user() {
    // Eight log-in attempts on one account follow: more than throttling allows.
    let service = std::sync::Arc::new(
        Service::start_with(|config| config.sessions.throttle.per_account.max_failures = 8).await,
    );
    let registrations: Vec<_> = (0..8)
        .map(|i| {
            let service = std::sync::Arc::clone(&service);
            tokio::spawn(async move {
                let body = json!({
                    "email": "race@example.com",
                    "password": format!("password number {i}"),
                });
                service.post("/users", &body).await.status().as_u16()
            })
        })
        .collect();
    for registration in registrations {
        assert_eq!(registration.await.unwrap(), 202);
    }
    service.events(1).await;
    // Give any further event time to arrive before counting.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let registered = service.events(1).await;
    assert_eq!(registered.len(), 1, "one user, one event: {registered:?}");
    let mut logged_in = 0;
    for i in 0..8 {
        let response = service
            .log_in("race@example.com", &format!("password number {i}"))
            .await;
        if response.status() == 200 {
            logged_in += 1;
        }
    }
    assert_eq!(
        logged_in, 1,
        "exactly one registration's password is the user's"
    );
    let service = std::sync::Arc::into_inner(service).unwrap();
    service.stop().await;
}

#[tokio::test]
async fn events_carry_the_user_and_never_a_password_or_hash() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let ada = service.token("ada@example.com", PASSWORD).await;
    let staff = service.token("staff@example.com", PASSWORD).await;
    let ada_id = claims_of(&ada)["sub"].as_str().unwrap().to_owned();
    let response = service
        .post_as(&staff, &format!("/users/{ada_id}/disable"), &json!({}))
        .await;
    assert_eq!(response.status(), 200);

    let events = service.events(3).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(
        types,
        ["user.registered", "user.registered", "user.disabled"]
    );
    let disabled = &events[2];
    assert_eq!(disabled.aggregate_id().as_str(), ada_id);
    assert_eq!(disabled.payload()["user"]["disabled"], true);
    assert_eq!(disabled.payload()["user"]["email"], "ada@example.com");
    assert_eq!(disabled.payload()["user"]["customer_id"], "cust-1");
    for event in &events {
        let text = serde_json::to_string(event).unwrap();
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains("argon2"), "{text}");
        assert!(!text.to_lowercase().contains("password"), "{text}");
        assert!(!text.contains(&ada[..20]), "no token in {text}");
    }
    // Nor anywhere in the bus's file, nor as plain text in the service's database.
    let bus = std::fs::read(service.dir.join("bus.db")).unwrap();
    assert!(!contains(&bus, b"argon2") && !contains(&bus, PASSWORD.as_bytes()));
    let stop_dir = service.dir.clone();
    service.stop().await;
    for file in ["auth.db", "auth.db-wal"] {
        if let Ok(bytes) = std::fs::read(stop_dir.join(file)) {
            assert!(
                !contains(&bytes, PASSWORD.as_bytes()),
                "{file} holds a password"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn only_staff_can_disable_and_a_token_is_needed() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    service.register("bob@example.com", "cust-2").await;
    let ada = service.token("ada@example.com", PASSWORD).await;
    let bob = service.token("bob@example.com", PASSWORD).await;
    let bob_id = claims_of(&bob)["sub"].as_str().unwrap().to_owned();
    let path = format!("/users/{bob_id}/disable");

    let forbidden = service.post_as(&ada, &path, &json!({})).await;
    assert_problem(forbidden, 403, "staff role").await;
    let anonymous = service.post(&path, &json!({})).await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    let forged = service.post_as("not.a.token", &path, &json!({})).await;
    assert_eq!(forged.status(), 401);
    assert_eq!(
        service.log_in("bob@example.com", PASSWORD).await.status(),
        200
    );

    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let staff = service.token("staff@example.com", PASSWORD).await;
    let missing = service
        .post_as(&staff, "/users/usr-nobody/disable", &json!({}))
        .await;
    assert_problem(missing, 404, "usr-nobody").await;
    let done = service.post_as(&staff, &path, &json!({})).await;
    assert_eq!(done.status(), 200);
    let user: Value = done.json().await.unwrap();
    assert_eq!(user["disabled"], true);
    assert!(user.get("password_hash").is_none());
    service.stop().await;
}

#[tokio::test]
async fn a_user_changes_their_password_with_the_current_one() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    let token = service.token("ada@example.com", PASSWORD).await;
    let path = "/users/me/password";

    let wrong = service
        .post_as(
            &token,
            path,
            &json!({"current_password": "not it at all", "new_password": "a new passphrase"}),
        )
        .await;
    assert_problem(wrong, 401, "do not match").await;
    let short = service
        .post_as(
            &token,
            path,
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_problem(short, 422, "8 to 128 characters").await;
    let anonymous = service
        .post(
            path,
            &json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(anonymous.status(), 401);

    let changed = service
        .post_as(
            &token,
            path,
            &json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    assert_eq!(
        service.log_in("ada@example.com", PASSWORD).await.status(),
        401
    );
    service.token("ada@example.com", "a new passphrase").await;
    service.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_problems_and_unknown_fields_are_refused() {
    let service = Service::start().await;
    let response = service
        .post(
            "/users",
            &json!({"email": "ada@example.com", "password": PASSWORD, "role": "staff"}),
        )
        .await;
    assert_problem(response, 422, "role").await;
    let response = service
        .post("/users", &json!({"email": "nope", "password": PASSWORD}))
        .await;
    let body = assert_problem(response, 422, "email").await;
    assert_eq!(body["errors"][0]["field"], "email");
    service.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer_and_the_openapi_document_covers_every_route() {
    let service = Service::start().await;
    let ready: Value = service
        .http
        .get(service.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["sessions"], "ok");
    let openapi: Value = service
        .http
        .get(service.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: std::collections::BTreeSet<&str> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: std::collections::BTreeSet<&str> = [
        "/users",
        "/sessions",
        "/sessions/refresh",
        "/sessions/logout",
        "/users/me",
        "/users/me/password",
        "/users/{user_id}/disable",
        "/users/{user_id}/role",
        "/.well-known/jwks.json",
    ]
    .into();
    assert_eq!(documented, served);
    service.stop().await;
}

#[tokio::test]
async fn a_configuration_whose_audiences_leave_out_this_service_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-auth-it-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = crate::support::config(&dir);
    config.tokens.audiences = vec!["policy-service".to_owned()];
    let bus = dovetail_events::bus::EmbeddedBus::open(dir.join("bus.db")).unwrap();
    let error = dovetail_auth::Application::build(
        config,
        &dovetail_service_kit::events::Transport::Embedded(bus),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("auth-service"), "{error}");
}

#[tokio::test]
async fn open_registration_makes_a_new_customer_and_refuses_a_chosen_one() {
    let service = Service::start().await;
    // Someone trying to bind themselves to another customer's data.
    let chosen = service
        .post(
            "/users",
            &json!({"email": "mallory@example.com", "password": PASSWORD, "customer_id": "cust-1"}),
        )
        .await;
    let body = assert_problem(chosen, 422, "assigned by the service").await;
    assert_eq!(body["errors"][0]["field"], "customer_id");
    let refused = service.log_in("mallory@example.com", PASSWORD).await;
    assert_eq!(
        refused.status(),
        401,
        "the refused registration made no user"
    );

    for email in ["ada@example.com", "bob@example.com"] {
        let registered = service
            .post("/users", &json!({"email": email, "password": PASSWORD}))
            .await;
        assert_eq!(registered.status(), 202);
    }
    let ada = service.token("ada@example.com", PASSWORD).await;
    let bob = service.token("bob@example.com", PASSWORD).await;
    let (ada_customer, bob_customer) = (
        claims_of(&ada)["customer_id"].as_str().unwrap().to_owned(),
        claims_of(&bob)["customer_id"].as_str().unwrap().to_owned(),
    );
    assert!(ada_customer.starts_with("cust-"), "{ada_customer}");
    assert_ne!(
        ada_customer, bob_customer,
        "each registration is a new customer"
    );

    let me: Value = service
        .http
        .get(service.url("/users/me"))
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["role"], "customer");
    assert_eq!(me["customer_id"], ada_customer.as_str());
    assert_eq!(me["user_id"], claims_of(&ada)["sub"]);
    let anonymous = service
        .http
        .get(service.url("/users/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    service.stop().await;
}
