//! What a well-behaved client sees: the lifecycle, its events in order, idempotent
//! creation, pagination, operations endpoints and a graceful shutdown.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{Service, assert_problem, terms};

#[tokio::test]
async fn a_policy_goes_from_draft_to_cancelled_and_each_change_publishes_its_event_in_order() {
    let service = Service::start().await;
    let drafted = service.draft("cust-1").await;
    let id = drafted["policy_id"].as_str().unwrap().to_owned();
    assert_eq!(
        (drafted["status"].as_str(), drafted["version"].as_u64()),
        (Some("draft"), Some(1))
    );
    assert_eq!(drafted["coverage_limit"], "10000.00");

    let url = service.url(&format!("/policies/{id}"));
    let read = service.http.get(&url).send().await.unwrap();
    assert_eq!(read.headers()["etag"], "\"1\"");

    let issued = service
        .http
        .post(format!("{url}/issue"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    assert_eq!(issued.headers()["etag"], "\"2\"");
    let issued: Value = issued.json().await.unwrap();
    assert_eq!(issued["status"], "active");

    let updated = service
        .http
        .patch(&url)
        .header("if-match", "\"2\"")
        .json(&json!({ "premium": "150.5" }))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(
        (updated["premium"].as_str(), updated["version"].as_u64()),
        (Some("150.50"), Some(3))
    );

    let cancelled = service
        .http
        .post(format!("{url}/cancel"))
        .header("if-match", "\"3\"")
        .json(&json!({ "reason": "moved abroad" }))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);

    let events = service.events(4).await;
    let seen: Vec<(String, u64)> = events
        .iter()
        .map(|e| (e.event_type().as_str().to_owned(), e.sequence().get()))
        .collect();
    assert_eq!(
        seen,
        [
            ("policy.drafted".to_owned(), 1),
            ("policy.issued".to_owned(), 2),
            ("policy.updated".to_owned(), 3),
            ("policy.cancelled".to_owned(), 4)
        ]
    );
    assert!(events.iter().all(|e| e.aggregate_id().as_str() == id));
    assert_eq!(events[3].payload()["reason"], "moved abroad");
    assert_eq!(events[3].payload()["policy"]["status"], "cancelled");
    service.stop().await;
}

#[tokio::test]
async fn a_retried_creation_with_the_same_key_returns_the_first_answer_and_publishes_once() {
    let service = Service::start().await;
    let send = |body: Value| {
        service
            .http
            .post(service.url("/policies"))
            .header("idempotency-key", "9b2c6a1e-create-1")
            .json(&body)
            .send()
    };
    let first = send(terms("cust-idem")).await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();

    let again = send(terms("cust-idem")).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["policy_id"], first["policy_id"]);

    let mut other = terms("cust-idem");
    other["premium"] = "99.00".into();
    assert_problem(send(other).await.unwrap(), 422, "already used").await;

    let listed: Value = service
        .http
        .get(service.url("/policies?customer_id=cust-idem"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "one policy, not two"
    );
    assert_eq!(service.events(1).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        service.events.lock().unwrap().len(),
        1,
        "one event, not two"
    );
    service.stop().await;
}

#[tokio::test]
async fn a_customers_policies_come_in_pages_each_once_in_creation_order() {
    let service = Service::start().await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            service.draft("cust-pages").await["policy_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    service.draft("someone-else").await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = service.url("/policies?customer_id=cust-pages&limit=2");
        if let Some(cursor) = &cursor {
            url.push_str(&format!("&cursor={cursor}"));
        }
        let page: Value = service
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["policy_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    service.stop().await;
}

#[tokio::test]
async fn operations_endpoints_answer_and_the_openapi_document_covers_every_route() {
    let service = Service::start().await;
    let health = service
        .http
        .get(service.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
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
    service.draft("cust-metrics").await;
    let metrics = service
        .http
        .get(service.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("http_requests_total{service=\"policy-service\",method=\"POST\",route=\"/policies\",status=\"201\"}"),
        "{metrics}"
    );
    let openapi: Value = service
        .http
        .get(service.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let documented: BTreeSet<&str> = openapi["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let served: BTreeSet<&str> = [
        "/policies",
        "/policies/{policy_id}",
        "/policies/{policy_id}/issue",
        "/policies/{policy_id}/cancel",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
    ]
    .into();
    assert_eq!(documented, served);
    service.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_policies_and_publishes_nothing_twice_out_of_order() {
    let service = Service::start().await;
    let id = service.draft("cust-restart").await["policy_id"]
        .as_str()
        .unwrap()
        .to_owned();
    service.events(1).await;
    let dir = service.stop().await;

    let service = Service::start_in(dir).await;
    let read: Value = service
        .http
        .get(service.url(&format!("/policies/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["version"], 1);
    let issued = service
        .http
        .post(service.url(&format!("/policies/{id}/issue")))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(issued.status(), 200);
    let events = service.events(1).await;
    assert_eq!(events.last().unwrap().sequence().get(), 2);
    service.stop().await;
}

const BURST: usize = 200;

#[tokio::test]
async fn a_shutdown_during_a_burst_answers_what_it_accepted_and_publishes_every_accepted_event() {
    let service = Service::start().await;
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..BURST {
        let (http, url) = (service.http.clone(), service.url("/policies"));
        let answered = std::sync::Arc::clone(&answered);
        requests.spawn(async move {
            let status = http
                .post(url)
                .json(&terms(&format!("burst-{n}")))
                .send()
                .await
                .ok()
                .map(|response| response.status());
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            status
        });
    }
    // Stop once the burst is under way: some requests answered, others in flight.
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let first_run = std::sync::Arc::clone(&service.events);
    let dir = service.stop().await;
    let mut accepted = 0;
    while let Some(answer) = requests.join_next().await {
        // None: refused before it was accepted; the client may retry it.
        if let Some(status) = answer.unwrap() {
            assert_eq!(
                status, 201,
                "a request the server took was answered in full"
            );
            accepted += 1;
        }
    }

    // Whatever was accepted is stored, and its event is published: before the stop or,
    // left in the outbox by it, after the restart.
    let service = Service::start_in(dir).await;
    let mut stored = 0;
    for n in 0..BURST {
        let page: Value = service
            .http
            .get(service.url(&format!("/policies?customer_id=burst-{n}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stored += page["items"].as_array().unwrap().len();
    }
    assert_eq!(stored, accepted);
    let before = first_run.lock().unwrap().len();
    let after = if accepted > before {
        service.events(accepted - before).await.len()
    } else {
        0
    };
    assert_eq!(
        before + after,
        accepted,
        "one event per accepted policy, none lost"
    );
    println!(
        "{accepted} of {BURST} accepted; {before} events published before the stop, {after} after \
         the restart"
    );
    service.stop().await;
}
