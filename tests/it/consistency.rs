//! The stack's consistency runner end to end, on embedded backends: drift left in the
//! claim service's policy replica (as a restore from an old backup would leave it) is
//! found by `stack check`, the claim-policy invariant reports the claim whose policy went
//! missing, the policy service repairs through its outbox, and the next runs find only
//! what republishing cannot fix; the metrics say so; only staff may ask.

use std::time::Duration;

use dovetail_consistency::RunStatus;
use dovetail_service_kit::Shutdown;
use dovetail_stack::check::{self, Endpoints};
use dovetail_stack::users::Seeding;
use dovetail_stack::{StackConfig, demo};
use reqwest::StatusCode;

#[tokio::test]
async fn drift_in_the_claim_replica_is_found_repaired_through_the_owner_and_breaks_the_invariant_until_then()
 {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-consistency-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = StackConfig::on_free_ports(dir.clone());
    config.consistency.expected_lag = Duration::ZERO;
    config.consistency.interval = Duration::from_secs(3600);
    config.relay_poll_interval_ms = 100;
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let credentials = match &stack.users {
        Seeding::Created(credentials) => credentials.clone(),
        other => panic!("a fresh data directory gets new users, not {other:?}"),
    };
    let walk = demo::run(
        &demo::Services::of(&stack),
        &credentials,
        &mut Vec::new(),
        None,
    )
    .await
    .unwrap();
    let other = demo::run(
        &demo::Services::of(&stack),
        &credentials,
        &mut Vec::new(),
        None,
    )
    .await
    .unwrap();
    let clean = check::run(&Endpoints::of(&stack), &credentials, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(clean.status, RunStatus::Succeeded, "{clean:?}");
    assert_eq!(
        clean.findings(),
        0,
        "the demo leaves the replica in step: {clean:?}"
    );
    stack.stop().await.unwrap();

    // The replica as an old backup would leave it: the walk's policy gone (its claim now
    // points nowhere), another policy one version back, a policy the owner never had.
    let replica = rusqlite::Connection::open(dir.join("claim.db")).unwrap();
    let behind = other.policy_id;
    replica
        .execute_batch(&format!(
            "DELETE FROM policy_replica WHERE policy_id = '{policy}';
             UPDATE policy_replica SET version = version - 1 WHERE policy_id = '{behind}';
             INSERT INTO policy_replica (policy_id, version, snapshot, event_id, replicated_at_ms)
                 SELECT 'pol-never-issued', 1, snapshot, event_id, replicated_at_ms
                 FROM policy_replica WHERE policy_id = '{behind}';
             DROP TABLE policy_replica_buckets;",
            policy = walk.policy_id
        ))
        .unwrap();
    drop(replica);

    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let endpoints = Endpoints::of(&stack);
    let mut printed = Vec::new();
    let found = check::run(&endpoints, &credentials, &mut printed)
        .await
        .unwrap();
    let printed = String::from_utf8(printed).unwrap();
    assert_eq!(found.status, RunStatus::Succeeded, "{printed}");
    let pair = &found.pairs[0];
    assert_eq!(
        (pair.source.as_str(), pair.replica.as_str()),
        ("policy-service", "claim-service")
    );
    assert_eq!(
        (
            pair.counts.missing_in_replica,
            pair.counts.replica_behind,
            pair.counts.extra_in_replica
        ),
        (1, 1, 1),
        "{printed}"
    );
    let mut republished = pair.repair.republished.clone();
    republished.sort();
    let mut expected = vec![walk.policy_id.clone(), behind.clone()];
    expected.sort();
    assert_eq!(republished, expected, "{printed}");
    assert_eq!(pair.repair.skipped[0].key, "pol-never-issued", "{printed}");
    let invariant = &found.invariants[0];
    assert_eq!(invariant.name, "claim-policy");
    assert!(
        invariant
            .violations
            .iter()
            .any(|v| v.key == walk.claim_id && v.kind == "claim_policy_missing"),
        "{printed}"
    );
    assert!(
        printed.contains("missing_in_replica 1") && printed.contains("claim_policy_missing"),
        "{printed}"
    );

    // The republished events reach the replica through its ordinary consumer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let settled = loop {
        let run = check::run(&endpoints, &credentials, &mut Vec::new())
            .await
            .unwrap();
        let only_extra =
            run.pairs[0].counts.total() == 1 && run.pairs[0].counts.extra_in_replica == 1;
        if only_extra && run.invariants[0].violations_found == 0 {
            break run;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not repaired in 30 s: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        settled.pairs[0].repair.republished.is_empty(),
        "nothing left to republish"
    );

    // The metrics recorder is the process's, shared with the stacks other tests in this
    // binary start (each runs a check when it starts): read the gauges right after a run
    // of ours, and again after another if a neighbour's run came in between.
    let http = reqwest::Client::new();
    let gauge = |metrics: &str, kind: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("dovetail_consistency_drift{")
                    && line.contains("source=\"policy-service\"")
                    && line.contains("replica=\"claim-service\"")
                    && line.contains(&format!("kind=\"{kind}\""))
            })
            .unwrap_or_else(|| panic!("no drift gauge of {kind} in:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    let mut attempts = 0;
    let metrics = loop {
        check::run(&endpoints, &credentials, &mut Vec::new())
            .await
            .unwrap();
        let metrics = http
            .get(format!("{}/metrics", endpoints.consistency))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let read = (
            gauge(&metrics, "extra_in_replica"),
            gauge(&metrics, "missing_in_replica"),
        );
        attempts += 1;
        if read == ("1".to_owned(), "0".to_owned()) {
            break metrics;
        }
        assert!(
            attempts < 5,
            "the gauges say {read:?} after {attempts} runs:\n{metrics}"
        );
    };
    for series in [
        "dovetail_consistency_runs_total",
        "dovetail_consistency_repairs_total",
        "dovetail_consistency_last_success_timestamp_seconds",
        "dovetail_consistency_run_seconds",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }

    // Only staff start runs.
    let runs = format!("{}/admin/consistency/runs", endpoints.consistency);
    let anonymous = http.post(&runs).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let session: serde_json::Value = http
        .post(format!("{}/auth/sessions", endpoints.gateway))
        .json(&serde_json::json!({
            "email": credentials.customer.email,
            "password": credentials.customer.password,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let customer = http
        .post(&runs)
        .bearer_auth(session["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(customer.status(), StatusCode::FORBIDDEN);
    stack.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn checks_during_a_write_load_report_no_false_drift() {
    let dir = std::env::temp_dir().join(format!(
        "dovetail-consistency-load-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = StackConfig::on_free_ports(dir.clone());
    // Longer than the stack's replica lag (a relay poll and a bus delivery), far shorter
    // than the load.
    config.consistency.expected_lag = Duration::from_secs(3);
    config.consistency.interval = Duration::from_secs(3600);
    let stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let credentials = match &stack.users {
        Seeding::Created(credentials) => credentials.clone(),
        other => panic!("a fresh data directory gets new users, not {other:?}"),
    };
    let services = demo::Services::of(&stack);
    let loading = std::sync::atomic::AtomicBool::new(true);
    // Three walks at a time, twice: policies issued, updated and cancelled, claims filed
    // and paid, while the checks run.
    let load = async {
        for _ in 0..2 {
            let walk = || async {
                demo::run(&services, &credentials, &mut Vec::new(), None)
                    .await
                    .unwrap();
            };
            tokio::join!(walk(), walk(), walk());
        }
        loading.store(false, std::sync::atomic::Ordering::SeqCst);
    };
    let endpoints = Endpoints::of(&stack);
    let checks = async {
        let mut runs = Vec::new();
        while loading.load(std::sync::atomic::Ordering::SeqCst) {
            let run = check::run(&endpoints, &credentials, &mut Vec::new())
                .await
                .unwrap();
            assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
            assert_eq!(
                run.pairs[0].counts.total(),
                0,
                "false drift during the load: {run:?}"
            );
            runs.push(run);
        }
        runs
    };
    let ((), runs) = tokio::join!(load, checks);
    assert!(
        runs.len() >= 2,
        "the checks ran during the load: {}",
        runs.len()
    );
    stack.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
