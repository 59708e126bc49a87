//! The replica of policies keeps the newest version whatever the order and number of
//! deliveries, and says it in the `ETag` of its copy; an unknown event type goes to the
//! dead letters.

use dovetail_contracts::policy::{
    PolicyCancelled, PolicyDrafted, PolicyIssued, PolicyStatus, PolicyUpdated,
};

use crate::support::{Service, policy};

#[tokio::test]
async fn late_and_duplicated_policy_events_never_move_the_replica_back() {
    let service = Service::start().await;
    let draft = policy("pol-order", PolicyStatus::Draft, 1);
    let active = policy("pol-order", PolicyStatus::Active, 2);
    let mut updated = policy("pol-order", PolicyStatus::Active, 3);
    updated.premium = "150.00".parse().unwrap();

    // Version 3 arrives first, then 2 and 1 late, then 3 again.
    let third = service
        .publish(
            &updated,
            &PolicyUpdated {
                policy: updated.clone(),
            },
        )
        .await;
    service.replica_version("pol-order", 3).await;
    service
        .publish(
            &active,
            &PolicyIssued {
                policy: active.clone(),
            },
        )
        .await;
    service
        .publish(
            &draft,
            &PolicyDrafted {
                policy: draft.clone(),
            },
        )
        .await;
    service.republish(&third).await;
    let mut cancelled = updated.clone();
    cancelled.status = PolicyStatus::Cancelled;
    cancelled.version = 4;
    // A marker event after the late ones: once it is applied, they were all handled.
    service
        .publish(
            &cancelled,
            &PolicyCancelled {
                policy: cancelled.clone(),
                reason: None,
            },
        )
        .await;
    let copy = service.replica_version("pol-order", 4).await;
    assert_eq!(copy["policy"]["premium"], "150.00");
    assert_eq!(copy["policy"]["status"], "cancelled");
    // The header a gateway polls says the same, and never an older version.
    let response = service
        .http
        .get(service.url("/replica/policies/pol-order"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"4\"");
    service.stop().await;
}

#[tokio::test]
async fn an_unknown_event_type_goes_to_the_dead_letters_with_a_reason() {
    let service = Service::start().await;
    #[derive(serde::Serialize, serde::Deserialize)]
    struct PolicyRenamed {
        name: String,
    }
    impl dovetail_events::envelope::Event for PolicyRenamed {
        const TYPE: &'static str = "policy.renamed";
        const VERSION: u32 = 1;
    }
    let snapshot = policy("pol-odd", PolicyStatus::Draft, 1);
    service
        .publish(&snapshot, &PolicyRenamed { name: "x".into() })
        .await;
    for _ in 0..500 {
        let dead = service
            .bus
            .dead_letters("claim-service-policy-events")
            .await
            .unwrap();
        if let Some(letter) = dead.first() {
            assert!(
                format!("{letter:?}").contains("unknown event type \\\"policy.renamed\\\""),
                "{letter:?}"
            );
            service.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the unknown event never reached the dead letters");
}
