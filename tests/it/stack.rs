//! The whole system on embedded backends, in this process: the newcomer's walk-through
//! succeeds, with the replica catching up and the rules refusing what they should, and
//! the search service indexes it.

use dovetail_service_kit::Shutdown;
use dovetail_stack::{StackConfig, demo};

#[tokio::test]
async fn the_demo_walks_from_policy_to_paid_claim_and_a_cancelled_policy_refuses_claims() {
    let dir =
        std::env::temp_dir().join(format!("dovetail-system-{}", uuid::Uuid::new_v4().simple()));
    let config = StackConfig {
        data_dir: dir.clone(),
        policy_port: 0,
        claim_port: 0,
        search_port: 0,
        ..StackConfig::default()
    };
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let mut transcript = Vec::new();
    let report = demo::run(&demo::Services::of(&stack), &mut transcript)
        .await
        .unwrap();
    assert_walk_through_is_searchable(stack.search, &report).await;
    stack.stop().await.unwrap();

    assert!(report.policy_id.starts_with("pol-") && report.claim_id.starts_with("clm-"));
    assert!(
        report.over_limit_refusal.starts_with("422"),
        "{}",
        report.over_limit_refusal
    );
    assert!(
        report.over_limit_refusal.contains("at most 9750.00"),
        "{}",
        report.over_limit_refusal
    );
    assert!(
        report
            .cancelled_refusal
            .contains(&format!("policy {} was cancelled", report.policy_id)),
        "{}",
        report.cancelled_refusal
    );
    // The customer finds the paid claim by its words; another customer finds nothing.
    assert_eq!(
        report.customer_search,
        [format!("claim:{} paid", report.claim_id)]
    );
    assert_eq!(report.other_customer_hits, 0);
    let printed = String::from_utf8(transcript).unwrap();
    assert_eq!(printed, report.transcript);
    assert!(printed.contains("-> paid"), "{printed}");
    for file in ["policy.db", "claim.db", "bus.db", "search"] {
        assert!(
            dir.join(file).exists(),
            "{file} is under the data directory"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The search service indexed the walk-through from the events: the paid claim and the
/// cancelled policy, each at its newest version (within ten seconds).
pub(crate) async fn assert_walk_through_is_searchable(
    search: std::net::SocketAddr,
    report: &dovetail_stack::demo::DemoReport,
) {
    let search = format!("http://{search}/search?limit=100");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: serde_json::Value = reqwest::Client::new()
            .get(&search)
            .header("x-dovetail-scope", "staff")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = |id: String| {
            found["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|item| item["id"] == id)
                .map(|item| item["status"].clone())
        };
        let claim = status(format!("claim:{}", report.claim_id));
        let policy = status(format!("policy:{}", report.policy_id));
        if claim == Some("paid".into()) && policy == Some("cancelled".into()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the search service has claim {claim:?} and policy {policy:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
