//! The whole system on embedded backends, in this process: the newcomer's walk-through
//! succeeds, with the replica catching up and the rules refusing what they should.

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
        ..StackConfig::default()
    };
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let mut transcript = Vec::new();
    let report = demo::run(
        &format!("http://{}", stack.policy),
        &format!("http://{}", stack.claim),
        &mut transcript,
    )
    .await
    .unwrap();
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
    let printed = String::from_utf8(transcript).unwrap();
    assert_eq!(printed, report.transcript);
    assert!(printed.contains("-> paid"), "{printed}");
    for file in ["policy.db", "claim.db", "bus.db"] {
        assert!(
            dir.join(file).exists(),
            "{file} is under the data directory"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
