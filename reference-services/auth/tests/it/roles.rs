//! `POST /users/{user_id}/role`: staff promote and demote with a `user.role_changed`
//! event and the next token carries the new role; a customer gets 403 naming the role;
//! an unknown user 404; staff cannot change their own role; a disabled user or another
//! customer is a 409; bad bodies are problems saying what to fix.

use serde_json::{Value, json};

use crate::support::{PASSWORD, Service, assert_problem, claims_of};

/// A service with a customer user `ada` (cust-1) and a staff user; their tokens and ids.
struct Users {
    ada: String,
    ada_id: String,
    staff: String,
    staff_id: String,
}

async fn users(service: &Service) -> Users {
    service.register("ada@example.com", "cust-1").await;
    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let ada = service.token("ada@example.com", PASSWORD).await;
    let staff = service.token("staff@example.com", PASSWORD).await;
    let ada_id = claims_of(&ada)["sub"].as_str().unwrap().to_owned();
    let staff_id = claims_of(&staff)["sub"].as_str().unwrap().to_owned();
    Users {
        ada,
        ada_id,
        staff,
        staff_id,
    }
}

#[tokio::test]
async fn staff_promote_and_demote_a_user_and_each_change_is_an_event() {
    let service = Service::start().await;
    let users = users(&service).await;
    let path = format!("/users/{}/role", users.ada_id);

    let promoted = service
        .post_as(&users.staff, &path, &json!({"role": "staff"}))
        .await;
    assert_eq!(promoted.status(), 200);
    let user: Value = promoted.json().await.unwrap();
    assert_eq!(user["role"], "staff");
    assert_eq!(user["customer_id"], Value::Null);
    assert_eq!(user["version"], 2);
    assert!(user.get("password_hash").is_none());
    let token = service.token("ada@example.com", PASSWORD).await;
    assert_eq!(claims_of(&token)["roles"], json!(["staff"]));

    // Asking again for the role the user has changes nothing.
    let again = service
        .post_as(&users.staff, &path, &json!({"role": "staff"}))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["version"], 2);

    let demoted = service
        .post_as(
            &users.staff,
            &path,
            &json!({"role": "customer", "customer_id": " cust-9 "}),
        )
        .await;
    assert_eq!(demoted.status(), 200);
    let user: Value = demoted.json().await.unwrap();
    assert_eq!(user["role"], "customer");
    assert_eq!(user["customer_id"], "cust-9");
    assert_eq!(user["version"], 3);

    let events = service.events(4).await;
    let types: Vec<&str> = events.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(
        types,
        [
            "user.registered",
            "user.registered",
            "user.role_changed",
            "user.role_changed"
        ]
    );
    let promotion = events[2].payload();
    assert_eq!(events[2].aggregate_id().as_str(), users.ada_id);
    assert_eq!(promotion["previous_role"], "customer");
    assert_eq!(promotion["user"]["role"], "staff");
    assert_eq!(events[3].payload()["previous_role"], "staff");
    assert_eq!(events[3].payload()["user"]["customer_id"], "cust-9");
    for event in &events {
        let text = serde_json::to_string(event).unwrap().to_lowercase();
        assert!(
            !text.contains("password") && !text.contains("argon2"),
            "{text}"
        );
    }
    service.stop().await;
}

#[tokio::test]
async fn a_customer_is_forbidden_an_unknown_user_is_404_and_a_token_is_needed() {
    let service = Service::start().await;
    let users = users(&service).await;
    let staff_path = format!("/users/{}/role", users.staff_id);

    let forbidden = service
        .post_as(&users.ada, &staff_path, &json!({"role": "staff"}))
        .await;
    assert_problem(forbidden, 403, "staff role").await;
    let own = service
        .post_as(
            &users.ada,
            &format!("/users/{}/role", users.ada_id),
            &json!({"role": "staff"}),
        )
        .await;
    assert_problem(own, 403, "staff role").await;
    let anonymous = service.post(&staff_path, &json!({"role": "staff"})).await;
    assert_eq!(anonymous.status(), 401);

    let missing = service
        .post_as(
            &users.staff,
            "/users/usr-nobody/role",
            &json!({"role": "staff"}),
        )
        .await;
    assert_problem(missing, 404, "usr-nobody").await;
    service.stop().await;
}

#[tokio::test]
async fn staff_cannot_change_their_own_role() {
    let service = Service::start().await;
    let users = users(&service).await;
    let own = service
        .post_as(
            &users.staff,
            &format!("/users/{}/role", users.staff_id),
            &json!({"role": "customer", "customer_id": "cust-1"}),
        )
        .await;
    let body = assert_problem(own, 403, "own role").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("another staff user"),
        "{body}"
    );
    let token = service.token("staff@example.com", PASSWORD).await;
    assert_eq!(claims_of(&token)["roles"], json!(["staff"]));
    service.stop().await;
}

#[tokio::test]
async fn a_disabled_user_or_another_customer_is_a_conflict() {
    let service = Service::start().await;
    let users = users(&service).await;
    let path = format!("/users/{}/role", users.ada_id);

    let moved = service
        .post_as(
            &users.staff,
            &path,
            &json!({"role": "customer", "customer_id": "cust-2"}),
        )
        .await;
    let body = assert_problem(moved, 409, "cust-1").await;
    assert!(
        body["detail"].as_str().unwrap().contains("cust-2"),
        "{body}"
    );

    let disabled = service
        .post_as(
            &users.staff,
            &format!("/users/{}/disable", users.ada_id),
            &json!({}),
        )
        .await;
    assert_eq!(disabled.status(), 200);
    let refused = service
        .post_as(&users.staff, &path, &json!({"role": "staff"}))
        .await;
    assert_problem(refused, 409, "disabled").await;
    service.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_problems_that_say_what_to_fix() {
    let service = Service::start().await;
    let users = users(&service).await;
    let path = format!("/users/{}/role", users.ada_id);

    let unknown_role = service
        .post_as(&users.staff, &path, &json!({"role": "admin"}))
        .await;
    let body = assert_problem(unknown_role, 422, "role").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("customer") && detail.contains("staff"),
        "names the roles there are: {body}"
    );
    let no_customer = service
        .post_as(&users.staff, &path, &json!({"role": "customer"}))
        .await;
    let body = assert_problem(no_customer, 422, "customer_id").await;
    assert_eq!(body["errors"][0]["field"], "customer_id");
    let staff_with_customer = service
        .post_as(
            &users.staff,
            &path,
            &json!({"role": "staff", "customer_id": "cust-1"}),
        )
        .await;
    assert_problem(staff_with_customer, 422, "leave customer_id out").await;
    let empty_customer = service
        .post_as(
            &users.staff,
            &path,
            &json!({"role": "customer", "customer_id": "  "}),
        )
        .await;
    assert_problem(empty_customer, 422, "1 to 100 characters").await;
    let no_role = service.post_as(&users.staff, &path, &json!({})).await;
    assert_problem(no_role, 422, "role").await;
    let unknown_field = service
        .post_as(
            &users.staff,
            &path,
            &json!({"role": "staff", "admin": true}),
        )
        .await;
    assert_problem(unknown_field, 422, "admin").await;
    let not_json = service
        .http
        .post(service.url(&path))
        .bearer_auth(&users.staff)
        .header("content-type", "application/json")
        .body("{role: staff")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);

    // None of it changed the user.
    let token = service.token("ada@example.com", PASSWORD).await;
    assert_eq!(claims_of(&token)["roles"], json!(["customer"]));
    service.stop().await;
}
