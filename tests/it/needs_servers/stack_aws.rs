//! The whole system on DynamoDB and SNS/SQS at the emulator, and the search index on
//! OpenSearch: the newcomer's walk-through succeeds as on the embedded backends and ends
//! searchable, with every table, topic, queue, subscription and index created on the way
//! (the search service's idempotency records in a table too, no file); starting the stack
//! again on the same resources changes nothing and walks through again. Users are in
//! DynamoDB, the auth service's sessions in Redis.

use dovetail_service_kit::Shutdown;
use dovetail_stack::{Backends, StackConfig, demo};

async fn walk_through(config: &StackConfig) -> demo::DemoReport {
    let stack = dovetail_stack::start(config, Shutdown::new())
        .await
        .unwrap();
    // The first walk's start made the users; the second finds their credentials.
    let credentials = stack
        .users
        .credentials()
        .cloned()
        .expect("the users' credentials are in the data directory");
    let mut transcript = Vec::new();
    let report = demo::run(
        &demo::Services::of(&stack),
        &credentials,
        &mut transcript,
        None,
    )
    .await
    .unwrap();
    crate::stack::assert_walk_through_is_searchable(&stack, &credentials, &report).await;
    stack.stop().await.unwrap();
    report
}

#[tokio::test]
async fn the_demo_walks_through_on_aws_twice() {
    // The testkit checks that the emulator answers and says how to start it otherwise.
    dovetail_testkit::aws().await;
    let opensearch = dovetail_testkit::opensearch().await;
    let dir = std::env::temp_dir().join(format!(
        "dovetail-system-aws-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let config = StackConfig {
        backends: Backends::Aws,
        redis_url: Some(dovetail_testkit::redis().await.url().to_owned()),
        relay_poll_interval_ms: 200,
        opensearch_url: Some(opensearch.url().to_string()),
        search_alias: opensearch.fresh_index_name("stack-search"),
        // Tables, topics and queues of this run's own: the emulator may be a long-lived
        // one that an earlier run left its users in.
        aws_name_prefix: format!("{}-", dovetail_testkit::unique_name("stack")),
        ..StackConfig::on_free_ports(dir.clone())
    };
    for _ in 0..2 {
        let report = walk_through(&config).await;
        assert!(report.policy_id.starts_with("pol-") && report.claim_id.starts_with("clm-"));
        assert!(
            report.over_limit_refusal.starts_with("422"),
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
        assert!(
            report.transcript.contains("-> paid"),
            "{}",
            report.transcript
        );
    }
    for file in [
        "policy.db",
        "claim.db",
        "bus.db",
        "search",
        "auth.db",
        "auth-sessions.db",
    ] {
        assert!(
            !dir.join(file).exists(),
            "{file}: nothing is kept on disk when the backends are on AWS"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
