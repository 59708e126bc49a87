//! The contract suite and the reordering proptest on tantivy, each test in a directory
//! of its own; and what survives a reopen.

use dovetail_contracts::policy::PolicyStatus;
use dovetail_search::document::IndexedDocument;
use dovetail_search::index::{SearchIndex, TantivyIndex};
use proptest::prelude::*;

use crate::contract::{same_contents, streams};
use crate::support::{policy, temp_dir};

async fn open() -> TantivyIndex {
    TantivyIndex::open(&temp_dir("search-tantivy")).unwrap()
}

contract_suite!(open());

/// The same suite through the batching writer the consumer uses.
mod batching {
    use dovetail_search::index::{Batching, TantivyIndex};

    async fn open() -> Batching<TantivyIndex> {
        Batching::new(super::open().await)
    }

    contract_suite!(open());
}

#[tokio::test]
async fn documents_and_versions_survive_a_reopen_and_a_second_writer_is_refused() {
    let dir = temp_dir("search-reopen");
    let index = TantivyIndex::open(&dir).unwrap();
    index
        .upsert(policy("pol-1", "cust-1", 3, PolicyStatus::Active))
        .await
        .unwrap();
    let error = TantivyIndex::open(&dir).unwrap_err();
    assert!(error.to_string().contains("another process"), "{error}");
    drop(index);
    let index = TantivyIndex::open(&dir).unwrap();
    assert_eq!(
        index
            .get("policy:pol-1")
            .await
            .unwrap()
            .map(|held| held.version()),
        Some(3)
    );
    let stale = index
        .upsert(policy("pol-1", "cust-1", 2, PolicyStatus::Draft))
        .await
        .unwrap();
    assert_eq!(stale, dovetail_search::index::UpsertOutcome::Stale);
    assert!(
        matches!(index.get("policy:pol-1").await.unwrap(), Some(IndexedDocument::Live(live)) if live.status == "active")
    );
    std::fs::remove_dir_all(&dir).ok();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn shuffled_and_duplicated_events_end_in_the_ordered_streams_index((ordered, delivered) in streams()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (in_order_dir, shuffled_dir) = (temp_dir("search-prop"), temp_dir("search-prop"));
            let in_order = TantivyIndex::open(&in_order_dir).unwrap();
            let shuffled = TantivyIndex::open(&shuffled_dir).unwrap();
            same_contents(&in_order, &shuffled, &ordered, &delivered).await;
            drop((in_order, shuffled));
            std::fs::remove_dir_all(in_order_dir).ok();
            std::fs::remove_dir_all(shuffled_dir).ok();
        });
    }
}
