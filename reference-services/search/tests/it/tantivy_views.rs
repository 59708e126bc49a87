//! The consistency views of tantivy against the testkit's contract, each test on an index
//! in a directory of its own; drift against the policy and claim stores found and
//! repaired through them (`drift.rs`); and the digests after a reopen.

use dovetail_search::index::TantivyIndex;

use crate::support::temp_dir;

async fn open() -> TantivyIndex {
    TantivyIndex::open(&temp_dir("search-tantivy-views")).unwrap()
}

view_contract!(open());
drift_suite!(open());

/// The digests are read from the committed index: after a reopen they are what they
/// were.
#[tokio::test]
async fn digests_and_entries_survive_a_reopen() {
    use dovetail_consistency::{BucketRange, View};
    use dovetail_contracts::policy::PolicyStatus;
    use dovetail_search::document::DocumentType;
    use dovetail_search::index::{IndexView, SearchIndex};

    let dir = temp_dir("search-tantivy-views-reopen");
    let index = TantivyIndex::open(&dir).unwrap();
    for i in 0..50 {
        let document = crate::support::policy(
            &format!("pol-{i}"),
            "cust-1",
            i % 3 + 1,
            PolicyStatus::Active,
        );
        index.upsert(document).await.unwrap();
    }
    let view = IndexView::new(index.clone(), DocumentType::Policy);
    let (digest, entries) = (
        view.digest(BucketRange::FULL).await.unwrap(),
        view.entries(BucketRange::FULL).await.unwrap(),
    );
    assert_eq!(digest.count, 50);
    drop((view, index));
    let index = TantivyIndex::open(&dir).unwrap();
    let view = IndexView::new(index, DocumentType::Policy);
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap(), digest);
    assert_eq!(view.entries(BucketRange::FULL).await.unwrap(), entries);
}
