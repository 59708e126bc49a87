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
        again
            .get("policy:pol-1")
            .await
            .unwrap()
            .map(|held| held.version()),
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
