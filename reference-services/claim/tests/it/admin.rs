//! The operator actions the claim service serves (`dovetail_service_kit::admin`): its
//! outbox and its policy consumer's dead letters, for staff only.

use serde_json::{Value, json};

use crate::support::{Service, assert_problem};

const QUEUE: &str = "claim-service-policy-events";

#[tokio::test]
async fn staff_see_and_act_on_the_outbox_and_the_policy_consumer() {
    let service = Service::start().await;

    let listed: Value = service
        .http
        .get(service.url("/admin/dead-letters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([{ "queue": QUEUE, "depth": 0 }]));

    let unparked = service
        .http
        .post(service.url("/admin/outbox/unpark"))
        .send()
        .await
        .unwrap();
    assert_eq!(unparked.status(), 200);
    assert_eq!(
        unparked.json::<Value>().await.unwrap(),
        json!({ "unparked": 0 })
    );

    let redriven = service
        .http
        .post(service.url(&format!("/admin/dead-letters/{QUEUE}/redrive")))
        .send()
        .await
        .unwrap();
    assert_eq!(redriven.status(), 200);
    assert_eq!(
        redriven.json::<Value>().await.unwrap(),
        json!({ "queue": QUEUE, "redriven": 0 })
    );
    service.stop().await;
}

#[tokio::test]
async fn customers_are_refused_403_and_callers_without_a_token_401() {
    let service = Service::start().await;
    let customer = service.customer("cust-1");
    for path in [
        "/admin/outbox/unpark",
        "/admin/dead-letters/claim-service-policy-events/redrive",
    ] {
        let refused = service
            .anonymous
            .post(service.url(path))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap();
        assert_problem(refused, 403, "staff role").await;
        let anonymous = service
            .anonymous
            .post(service.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
    }
    service.stop().await;
}
