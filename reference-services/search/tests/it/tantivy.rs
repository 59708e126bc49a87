//! The contract suite and the reordering proptest on tantivy, each test in a directory
//! of its own; what survives a reopen; and what an open refuses (a directory another
//! process holds, a `CURRENT` naming a generation that is not there) without removing
//! anything.

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
    assert!(
        error.to_string().contains(&dir.display().to_string()),
        "names the directory: {error}"
    );
    drop(index);
    let index = TantivyIndex::open(&dir).unwrap();
    assert_eq!(
        crate::support::held_version(&index, "policy:pol-1").await,
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

#[tokio::test]
async fn an_index_of_an_older_schema_is_moved_to_the_current_one_when_opened() {
    use tantivy::schema::{STORED, STRING, Schema};

    // What an older version of the service left: another schema, a document whose text
    // was built another way, with its source event.
    let dir = temp_dir("search-migrate");
    let old_dir = dir.join("gen-000001");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::write(dir.join("CURRENT"), "gen-000001").unwrap();
    let mut builder = Schema::builder();
    let id = builder.add_text_field("id", STRING);
    let stored = builder.add_text_field("stored", STORED);
    let old = tantivy::Index::create_in_dir(&old_dir, builder.build()).unwrap();
    let current = crate::support::policy_from_event("pol-1", "cust-1", 3);
    let mut older = current.clone();
    older.text = "pol-1".into();
    let mut writer: tantivy::IndexWriter = old.writer_with_num_threads(1, 15_000_000).unwrap();
    let mut document = tantivy::TantivyDocument::default();
    document.add_text(id, "policy:pol-1");
    document.add_text(
        stored,
        IndexedDocument::Live(older).to_stored_json().to_string(),
    );
    writer.add_document(document).unwrap();
    // One stored without a field the current code requires (as if that field came after
    // it was written): its event builds it again.
    let unreadable = crate::support::policy_from_event("pol-2", "cust-1", 4);
    let mut json = IndexedDocument::Live(unreadable.clone()).to_stored_json();
    json.as_object_mut().unwrap().remove("policy_id");
    assert!(IndexedDocument::from_stored_json(json.clone()).is_err());
    let mut document = tantivy::TantivyDocument::default();
    document.add_text(id, "policy:pol-2");
    document.add_text(stored, json.to_string());
    writer.add_document(document).unwrap();
    writer.commit().unwrap();
    drop((writer, old));

    let index = TantivyIndex::open(&dir).unwrap();
    assert_eq!(
        index.get("policy:pol-1").await.unwrap(),
        Some(IndexedDocument::Live(current)),
        "built again from its event with the current code"
    );
    assert_eq!(
        index.get("policy:pol-2").await.unwrap(),
        Some(IndexedDocument::Live(unreadable)),
        "built again from its event, though its stored form no longer reads"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("CURRENT")).unwrap(),
        "gen-000002"
    );
    assert!(!old_dir.exists(), "the old generation is removed");
    // The new generation has the consistency fields the old one lacked.
    {
        use dovetail_consistency::{BucketRange, Digest, Entry, View};
        use dovetail_search::document::DocumentType;
        use dovetail_search::index::IndexView;

        let view = IndexView::new(index.clone(), DocumentType::Policy);
        let mut expected = vec![Entry::live("pol-1", 3), Entry::live("pol-2", 4)];
        expected.sort_by_key(|entry| (entry.bucket(), entry.key.clone()));
        assert_eq!(view.entries(BucketRange::FULL).await.unwrap(), expected);
        assert_eq!(
            view.digest(BucketRange::FULL).await.unwrap(),
            Digest::of(&expected)
        );
    }
    // Versions hold in the new generation.
    let stale = policy("pol-1", "cust-1", 2, PolicyStatus::Active);
    assert_eq!(
        index.upsert(stale).await.unwrap(),
        dovetail_search::index::UpsertOutcome::Stale
    );
}

#[tokio::test]
async fn what_a_rebuild_killed_before_its_switch_left_is_removed_at_open() {
    let dir = temp_dir("search-killed-rebuild");
    let index = TantivyIndex::open(&dir).unwrap();
    index
        .upsert(policy("pol-1", "cust-1", 2, PolicyStatus::Active))
        .await
        .unwrap();
    drop(index);
    // A rebuild killed while it copied: its half-built generation, never named in CURRENT.
    let half_built = dir.join("gen-000002");
    std::fs::create_dir_all(&half_built).unwrap();
    std::fs::write(half_built.join("meta.json"), "{}").unwrap();

    let index = TantivyIndex::open(&dir).unwrap();
    assert!(!half_built.exists(), "the half-built generation is removed");
    assert_eq!(
        std::fs::read_to_string(dir.join("CURRENT")).unwrap(),
        "gen-000001"
    );
    assert_eq!(
        crate::support::held_version(&index, "policy:pol-1").await,
        Some(2)
    );
    // And the next rebuild uses that generation's name afresh.
    let report = index
        .rebuild(&dovetail_search::index::RebuildProgress::default())
        .await
        .unwrap();
    assert_eq!(report.to, "gen-000002");
}

#[tokio::test]
async fn a_second_open_is_refused_before_it_reads_current_so_it_removes_nothing() {
    let dir = temp_dir("search-overlap");
    let first = TantivyIndex::open(&dir).unwrap();
    first
        .upsert(policy("pol-1", "cust-1", 1, PolicyStatus::Active))
        .await
        .unwrap();
    // The first process's rebuild has written its new generation and is about to switch
    // to it: another process opening the directory now must not take it for what a
    // stopped rebuild left.
    let in_flight = dir.join("gen-000002");
    std::fs::create_dir_all(&in_flight).unwrap();
    std::fs::write(in_flight.join("meta.json"), "{}").unwrap();
    let error = TantivyIndex::open(&dir).unwrap_err();
    assert!(
        matches!(error, dovetail_search::index::IndexError::Unavailable(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("LOCK"), "{error}");
    assert!(in_flight.exists(), "the other generation is left alone");
    assert_eq!(
        std::fs::read_to_string(dir.join("CURRENT")).unwrap(),
        "gen-000001"
    );
    drop(first);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn current_naming_a_generation_that_is_not_there_is_refused_and_nothing_is_removed() {
    let dir = temp_dir("search-missing-generation");
    let index = TantivyIndex::open(&dir).unwrap();
    index
        .upsert(policy("pol-1", "cust-1", 3, PolicyStatus::Active))
        .await
        .unwrap();
    drop(index);
    // CURRENT names a generation someone moved away.
    std::fs::write(dir.join("CURRENT"), "gen-000007").unwrap();

    let error = TantivyIndex::open(&dir).unwrap_err();
    assert!(
        matches!(error, dovetail_search::index::IndexError::Corrupt(_)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("gen-000007"), "{message}");
    assert!(
        message.contains("gen-000001"),
        "lists what is there: {message}"
    );
    assert!(dir.join("gen-000001").exists(), "nothing is removed");
    assert!(!dir.join("gen-000007").exists(), "no empty index is made");
    assert_eq!(
        std::fs::read_to_string(dir.join("CURRENT")).unwrap(),
        "gen-000007"
    );

    // Named again, the generation opens with its documents.
    std::fs::write(dir.join("CURRENT"), "gen-000001").unwrap();
    let index = TantivyIndex::open(&dir).unwrap();
    assert_eq!(
        crate::support::held_version(&index, "policy:pol-1").await,
        Some(3)
    );
    drop(index);
    std::fs::remove_dir_all(&dir).ok();
}
