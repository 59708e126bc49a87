//! The search service on SNS/SQS, OpenSearch and DynamoDB (the idempotency records), end
//! to end: policy and claim events published to their topics (a claim event twice, an
//! older one late) reach the index through the service's one queue, at their newest
//! versions.

use std::time::Duration;

use dovetail_contracts::claim::{ClaimApproved, ClaimFiled, ClaimStatus};
use dovetail_contracts::policy::{PolicyIssued, PolicyStatus};
use dovetail_events::envelope::{AggregateRef, Envelope, Event, EventMetadata, Sequence, Source};
use dovetail_events::publish::Publisher;
use dovetail_search::config::{IdempotencyBackend, IndexBackend};
use dovetail_search::document::IndexedDocument;
use dovetail_search::index::SearchIndex;
use dovetail_search::{Application, SearchConfig};
use dovetail_service_kit::Shutdown;
use dovetail_service_kit::config::EventsBackend;
use dovetail_service_kit::events::{EventsPublisher, Transport};

use crate::support::{claim_snapshot, policy_snapshot};

fn envelope<E: Event>(source: &str, aggregate: (&str, &str), version: u64, event: &E) -> Envelope {
    Envelope::new(
        Source::parse(source).unwrap(),
        AggregateRef::parse(aggregate.0, aggregate.1).unwrap(),
        Sequence::new(version).unwrap(),
        event,
        EventMetadata::default(),
    )
    .unwrap()
}

async fn publish(publisher: &EventsPublisher, envelope: &Envelope) {
    publisher.publish(envelope).await.unwrap();
}

#[tokio::test]
async fn policy_and_claim_events_on_sns_reach_the_opensearch_index_at_their_newest_versions() {
    let clients = super::clients().await;
    let search = dovetail_testkit::opensearch().await;
    let prefix = format!("{}-", dovetail_testkit::unique_name("search-e2e"));
    let mut config = SearchConfig::default();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.index.backend = IndexBackend::Opensearch;
    config.index.opensearch_url = search.url().to_string();
    config.index.opensearch_alias = search.fresh_index_name("search-e2e");
    config.events.backend = EventsBackend::Aws;
    config.events.aws_name_prefix = prefix;
    // The idempotency records in DynamoDB too, in `<prefix>search-service-idempotency`.
    config.idempotency.backend = IdempotencyBackend::Dynamodb;
    let policy_topic = config
        .events
        .transport_name(dovetail_contracts::policy::TOPIC);
    let claim_topic = config
        .events
        .transport_name(dovetail_contracts::claim::TOPIC);
    let app = Application::build(config, &Transport::Aws(clients.clone()))
        .await
        .unwrap();
    let index = app.index().clone();
    let shutdown = Shutdown::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let transport = clients.transport("");
    let policies = transport.publisher(&policy_topic).await.unwrap();
    let claims = transport.publisher(&claim_topic).await.unwrap();
    let policy = policy_snapshot("pol-e2e", "cust-e2e", "motor", 2, PolicyStatus::Active);
    publish(
        &policies,
        &envelope(
            "policy-service",
            ("policy", "pol-e2e"),
            2,
            &PolicyIssued { policy },
        ),
    )
    .await;
    let approved = envelope(
        "claim-service",
        ("claim", "clm-e2e"),
        3,
        &ClaimApproved {
            claim: claim_snapshot(
                "clm-e2e",
                "cust-e2e",
                "Windscreen",
                3,
                ClaimStatus::Approved,
            ),
        },
    );
    publish(&claims, &approved).await;
    publish(&claims, &approved).await;
    publish(
        &claims,
        &envelope(
            "claim-service",
            ("claim", "clm-e2e"),
            1,
            &ClaimFiled {
                claim: claim_snapshot(
                    "clm-e2e",
                    "cust-e2e",
                    "Windscreen",
                    1,
                    ClaimStatus::Submitted,
                ),
            },
        ),
    )
    .await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let policy = index.get("policy:pol-e2e").await.unwrap();
        let claim = index.get("claim:clm-e2e").await.unwrap();
        if policy.as_ref().map(IndexedDocument::version) == Some(2)
            && claim.as_ref().map(IndexedDocument::version) == Some(3)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not indexed in 30 s: policy {policy:?}, claim {claim:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The late filing arrives, or has arrived, and changes nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Some(IndexedDocument::Live(claim)) = index.get("claim:clm-e2e").await.unwrap() else {
        panic!("the claim is not live");
    };
    assert_eq!(claim.status, "approved");
    assert_eq!(claim.lineage.event_id, approved.id().to_string());
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
