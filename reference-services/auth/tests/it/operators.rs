//! The staff-only operator actions under `/admin`, behind this service's own token
//! verification: the alert pages' "unpark the outbox" works here as on every service;
//! without a token it is a 401, for a customer a 403 naming the role.

use serde_json::Value;

use crate::support::{PASSWORD, Service, assert_problem};

#[tokio::test]
async fn staff_unpark_the_outbox_and_read_the_dead_letters_others_are_refused() {
    let service = Service::start().await;
    service.register("ada@example.com", "cust-1").await;
    service
        .admin
        .register_staff("staff@example.com", PASSWORD)
        .await
        .unwrap();
    let customer = service.token("ada@example.com", PASSWORD).await;
    let staff = service.token("staff@example.com", PASSWORD).await;
    let unpark = service.url("/admin/outbox/unpark");
    let http = reqwest::Client::new();

    let anonymous = http.post(&unpark).send().await.unwrap();
    assert_problem(anonymous, 401, "token").await;
    let forged = http
        .post(&unpark)
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_problem(forged, 401, "token").await;
    let refused = http
        .post(&unpark)
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_problem(refused, 403, "staff").await;

    let unparked = http.post(&unpark).bearer_auth(&staff).send().await.unwrap();
    assert_eq!(unparked.status(), 200);
    let body: Value = unparked.json().await.unwrap();
    assert_eq!(body["unparked"], 0, "nothing was parked: {body}");

    // The auth service consumes no events: no queue has dead letters to show.
    let dead_letters = http
        .get(service.url("/admin/dead-letters"))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(dead_letters.status(), 200);
    assert_eq!(
        dead_letters.json::<Value>().await.unwrap(),
        serde_json::json!([])
    );
    service.stop().await;
}
