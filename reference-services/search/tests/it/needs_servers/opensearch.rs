//! The contract suite and the reordering proptest on OpenSearch.

use dovetail_search::index::OpenSearchIndex;
use dovetail_search::index::opensearch::OpenSearchSettings;
use proptest::prelude::*;

use crate::contract::{same_contents, streams};

async fn open() -> OpenSearchIndex {
    let fixture = dovetail_testkit::opensearch().await;
    let settings = OpenSearchSettings {
        alias: fixture.fresh_index_name("search"),
        refresh_interval: "1s".into(),
        replicas: 0,
    };
    OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap()
}

contract_suite!(open());

#[tokio::test]
async fn opening_an_existing_alias_again_keeps_its_documents() {
    use dovetail_contracts::policy::PolicyStatus;
    use dovetail_search::index::SearchIndex;

    let fixture = dovetail_testkit::opensearch().await;
    let settings = OpenSearchSettings {
        alias: fixture.fresh_index_name("search-reopen"),
        refresh_interval: "1s".into(),
        replicas: 0,
    };
    let index = OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap();
    index
        .upsert(crate::support::policy(
            "pol-1",
            "cust-1",
            2,
            PolicyStatus::Active,
        ))
        .await
        .unwrap();
    let again = OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap();
    assert_eq!(
        crate::support::held_version(&again, "policy:pol-1").await,
        Some(2)
    );
}

proptest! {
    // Each case creates two indices on the node: a modest count.
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn shuffled_and_duplicated_events_end_in_the_ordered_streams_index((ordered, delivered) in streams()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let in_order = open().await;
            let shuffled = open().await;
            same_contents(&in_order, &shuffled, &ordered, &delivered).await;
        });
    }
}

#[tokio::test]
async fn a_write_is_followed_by_a_freshness_probe_that_records_event_to_searchable() {
    use dovetail_contracts::policy::PolicyStatus;
    use dovetail_search::index::SearchIndex;
    use serde_json::Value;

    let metrics = dovetail_service_kit::ops::prometheus();
    let count = || {
        metrics
            .render()
            .lines()
            .filter(|line| line.starts_with("search_freshness_seconds_count"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    let before = count();
    let fixture = dovetail_testkit::opensearch().await;
    let index = open().await;
    index
        .upsert(crate::support::policy(
            "pol-fresh",
            "cust-1",
            1,
            PolicyStatus::Active,
        ))
        .await
        .unwrap();
    // The probe returns once a refresh made the document searchable; it is a tombstone:
    // in the index, never in a search.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        let found: Value = fixture
            .client()
            .search(opensearch::SearchParts::Index(&[index.alias()]))
            .body(serde_json::json!({ "query": { "prefix": { "id": "probe:" } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if found["hits"]["hits"][0].is_object() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no probe in 10 s: {found}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // Recorded right after the probe returned (other tests may record too, so only more).
    while count() <= before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no freshness recorded in 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let probe = &found["hits"]["hits"][0]["_source"];
    assert_eq!(probe["deleted"], true, "{found}");
    let listed = index
        .search(&dovetail_search::index::SearchQuery::new(
            dovetail_search::index::Scope::Staff,
        ))
        .await
        .unwrap();
    let ids: Vec<String> = listed.hits.into_iter().map(|hit| hit.document.id).collect();
    assert_eq!(ids, ["policy:pol-fresh"]);
}

#[tokio::test]
async fn a_version_beyond_opensearchs_range_is_refused_alone() {
    use dovetail_contracts::policy::PolicyStatus;
    use dovetail_search::document::IndexedDocument;
    use dovetail_search::index::{IndexError, SearchIndex, UpsertOutcome};

    let index = open().await;
    let mut huge = crate::support::policy("pol-huge", "cust-1", 1, PolicyStatus::Active);
    huge.version = u64::MAX;
    let outcomes = index
        .upsert_batch(vec![
            IndexedDocument::Live(crate::support::policy(
                "pol-a",
                "cust-1",
                1,
                PolicyStatus::Active,
            )),
            IndexedDocument::Live(huge),
            IndexedDocument::Live(crate::support::policy(
                "pol-b",
                "cust-1",
                1,
                PolicyStatus::Active,
            )),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0], Ok(UpsertOutcome::Applied));
    assert!(
        matches!(&outcomes[1], Err(IndexError::Refused(message)) if message.contains("pol-huge")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Ok(UpsertOutcome::Applied));
    assert_eq!(index.get("policy:pol-huge").await.unwrap(), None);
}
