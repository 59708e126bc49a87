//! The whole system on embedded backends, in this process: the newcomer's walk-through
//! succeeds, with the replica catching up and the rules refusing what they should, and
//! the search service indexes it.

use dovetail_service_kit::Shutdown;
use dovetail_stack::users::{Credentials, Seeding};
use dovetail_stack::{StackConfig, demo};

#[tokio::test]
async fn the_demo_walks_from_policy_to_paid_claim_and_a_cancelled_policy_refuses_claims() {
    let dir =
        std::env::temp_dir().join(format!("dovetail-system-{}", uuid::Uuid::new_v4().simple()));
    let config = StackConfig::on_free_ports(dir.clone());
    let mut stack = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    let credentials = match &stack.users {
        Seeding::Created(credentials) => credentials.clone(),
        other => panic!("a fresh data directory gets new users, not {other:?}"),
    };
    let mut transcript = Vec::new();
    let services = demo::Services::of(&stack);
    let report = demo::run(&services, &credentials, &mut transcript, None)
        .await
        .unwrap();
    assert_walk_through_is_searchable(&stack, &credentials, &report).await;
    // The walk again, ending with the search service stopped: the dashboard answers in
    // part.
    let mut again = Vec::new();
    let second = demo::run(&services, &credentials, &mut again, Some(&mut stack))
        .await
        .unwrap();
    stack.stop().await.unwrap();
    assert_eq!(report.partial_answer, None);
    let partial = second.partial_answer.clone().unwrap_or_default();
    assert!(
        partial.contains("policies ok") && partial.contains("activity unavailable"),
        "{partial}"
    );
    // Read-your-writes: with the token, the page saw both copies at version 2.
    assert_eq!(
        report.read_your_writes,
        "claim_service ok at version 2, search ok at version 2"
    );
    assert!(
        report.dashboard.contains(&"policies ok".to_owned())
            && report.dashboard.contains(&"activity ok".to_owned()),
        "{:?}",
        report.dashboard
    );

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
    // Identity: no token is a 401, a customer may not approve, and the walk's customer is
    // a new one the auth service named.
    assert!(
        report.anonymous_refusal.starts_with("401"),
        "{}",
        report.anonymous_refusal
    );
    assert!(
        report.customer_approval_refusal.starts_with("403")
            && report.customer_approval_refusal.contains("staff"),
        "{}",
        report.customer_approval_refusal
    );
    assert!(report.customer_id.starts_with("cust-") && report.customer_id != "cust-demo");
    let printed = String::from_utf8(transcript).unwrap();
    assert_eq!(printed, report.transcript);
    assert!(printed.contains("-> paid"), "{printed}");
    for file in [
        "policy.db",
        "claim.db",
        "bus.db",
        "search",
        "auth.db",
        "auth-sessions.db",
        "auth-keys",
        "credentials.json",
        "gateway-consistency.key",
    ] {
        assert!(
            dir.join(file).exists(),
            "{file} is under the data directory"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the credentials are the owner's only");
    }
    // A second start on the same directory keeps the users and their passwords.
    let again = dovetail_stack::start(&config, Shutdown::new())
        .await
        .unwrap();
    assert_eq!(again.users, Seeding::Existing(credentials.clone()));
    staff_client(&format!("http://{}", again.auth), &credentials).await;
    again.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that sends the stack's staff user's bearer token, logged in at the auth
/// service `auth_url`.
pub(crate) async fn staff_client(auth_url: &str, credentials: &Credentials) -> reqwest::Client {
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("{auth_url}/sessions"))
        .json(&serde_json::json!({
            "email": credentials.staff.email, "password": credentials.staff.password
        }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The search service indexed the walk-through from the events: the paid claim and the
/// cancelled policy, each at its newest version (within ten seconds), as staff see it.
pub(crate) async fn assert_walk_through_is_searchable(
    stack: &dovetail_stack::RunningStack,
    credentials: &Credentials,
    report: &dovetail_stack::demo::DemoReport,
) {
    let staff = staff_client(&format!("http://{}", stack.auth), credentials).await;
    let search = format!("http://{}/search?limit=100", stack.search);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found: serde_json::Value = staff
            .get(&search)
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
