//! The contract suite of [`SearchIndex`]: every check takes a fresh, empty index, and
//! `contract_suite!` turns them into one test each for a backend.

use std::collections::BTreeMap;

use dovetail_contracts::claim::ClaimStatus;
use dovetail_contracts::policy::PolicyStatus;
use dovetail_search::document::{IndexedDocument, SearchDocument, Tombstone};
use dovetail_search::index::{
    IndexError, RebuildPhase, RebuildProgress, Scope, SearchIndex, SearchQuery, SortOrder,
    UpsertOutcome,
};
use proptest::prelude::*;
use time::macros::date;

use crate::support::{claim, lineage, policy, policy_from_event, policy_on};

/// One `#[tokio::test]` per check of this module, each on the index `$open` makes.
macro_rules! contract_suite {
    ($open:expr) => {
        contract_suite!(@tests $open;
            a_newer_version_replaces_an_older_one_and_never_the_reverse,
            a_redelivery_is_stale_and_changes_nothing,
            a_cancelled_policy_stays_searchable_as_cancelled,
            a_deletion_leaves_a_tombstone_that_an_older_event_cannot_undo,
            a_customer_only_ever_sees_their_own_documents,
            filters_narrow_by_type_status_customer_and_dates,
            pages_follow_the_sort_and_cover_every_document_once,
            pages_by_relevance_with_differing_scores_cover_every_document_once,
            full_text_finds_every_word_and_highlights_it,
            a_word_longer_than_the_index_keeps_matches_nothing,
            concurrent_writers_of_one_document_leave_the_highest_version,
            a_batch_with_several_versions_of_one_document_keeps_the_highest,
            a_rebuild_while_writes_go_on_loses_nothing_and_moves_nothing_back,
            a_rebuild_builds_each_document_again_from_its_source_event,
        );
    };
    (@tests $open:expr; $($check:ident,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let index = $open.await;
            crate::contract::$check(&index).await;
        }
    )*};
}

async fn held<I: SearchIndex>(index: &I, id: &str) -> Option<IndexedDocument> {
    index.get(id).await.unwrap()
}

async fn ids<I: SearchIndex>(index: &I, query: &SearchQuery) -> Vec<String> {
    index.refresh().await.unwrap();
    index
        .search(query)
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|hit| hit.document.id)
        .collect()
}

fn staff() -> SearchQuery {
    SearchQuery::new(Scope::Staff)
}

pub(crate) async fn a_newer_version_replaces_an_older_one_and_never_the_reverse<I: SearchIndex>(
    index: &I,
) {
    let v2 = policy("pol-1", "cust-1", 2, PolicyStatus::Active);
    assert_eq!(
        index.upsert(v2.clone()).await.unwrap(),
        UpsertOutcome::Applied
    );
    let v1 = policy("pol-1", "cust-1", 1, PolicyStatus::Draft);
    assert_eq!(index.upsert(v1).await.unwrap(), UpsertOutcome::Stale);
    assert_eq!(
        held(index, "policy:pol-1").await,
        Some(IndexedDocument::Live(v2))
    );
    let v3 = policy("pol-1", "cust-1", 3, PolicyStatus::Active);
    assert_eq!(
        index.upsert(v3.clone()).await.unwrap(),
        UpsertOutcome::Applied
    );
    // Lineage and exact amounts come back as written.
    let Some(IndexedDocument::Live(back)) = held(index, "policy:pol-1").await else {
        panic!("policy:pol-1 is not live");
    };
    assert_eq!(back.lineage.sequence, 3);
    assert_eq!(back.lineage.source, "policy-service");
    assert_eq!(back.premium.as_deref(), Some("103.50"));
    assert_eq!(back, v3);
    assert_eq!(ids(index, &staff()).await, ["policy:pol-1"]);
    assert_eq!(held(index, "policy:none").await, None);
}

pub(crate) async fn a_redelivery_is_stale_and_changes_nothing<I: SearchIndex>(index: &I) {
    let document = claim("clm-1", "cust-1", "burst pipe", 1, ClaimStatus::Submitted);
    assert_eq!(
        index.upsert(document.clone()).await.unwrap(),
        UpsertOutcome::Applied
    );
    let mut redelivered = document.clone();
    redelivered.description = Some("changed on the way".into());
    assert_eq!(
        index.upsert(redelivered).await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        held(index, "claim:clm-1").await,
        Some(IndexedDocument::Live(document))
    );
}

pub(crate) async fn a_cancelled_policy_stays_searchable_as_cancelled<I: SearchIndex>(index: &I) {
    index
        .upsert(policy("pol-1", "cust-1", 2, PolicyStatus::Active))
        .await
        .unwrap();
    index
        .upsert(policy("pol-1", "cust-1", 3, PolicyStatus::Cancelled))
        .await
        .unwrap();
    let mut query = staff();
    query.status = Some("cancelled".into());
    assert_eq!(ids(index, &query).await, ["policy:pol-1"]);
    query.status = Some("active".into());
    assert!(ids(index, &query).await.is_empty());
}

pub(crate) async fn a_deletion_leaves_a_tombstone_that_an_older_event_cannot_undo<
    I: SearchIndex,
>(
    index: &I,
) {
    index
        .upsert(policy("pol-1", "cust-1", 2, PolicyStatus::Active))
        .await
        .unwrap();
    index
        .upsert(policy("pol-2", "cust-1", 1, PolicyStatus::Active))
        .await
        .unwrap();
    let tombstone = Tombstone {
        id: "policy:pol-1".into(),
        version: 5,
        lineage: lineage("policy-service", "policy.erased", 5),
    };
    assert_eq!(
        index.delete(tombstone.clone()).await.unwrap(),
        UpsertOutcome::Applied
    );
    assert_eq!(
        index.delete(tombstone.clone()).await.unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        index
            .upsert(policy("pol-1", "cust-1", 4, PolicyStatus::Active))
            .await
            .unwrap(),
        UpsertOutcome::Stale
    );
    assert_eq!(
        held(index, "policy:pol-1").await,
        Some(IndexedDocument::Deleted(tombstone))
    );
    assert_eq!(ids(index, &staff()).await, ["policy:pol-2"]);
    // A newer version (the id reused) is a document again.
    index
        .upsert(policy("pol-1", "cust-1", 6, PolicyStatus::Draft))
        .await
        .unwrap();
    let mut query = staff();
    query.sort = SortOrder::DateAscending;
    let mut found = ids(index, &query).await;
    found.sort();
    assert_eq!(found, ["policy:pol-1", "policy:pol-2"]);
}

pub(crate) async fn a_customer_only_ever_sees_their_own_documents<I: SearchIndex>(index: &I) {
    let documents = [
        policy("pol-a", "alice", 1, PolicyStatus::Active),
        claim(
            "clm-a",
            "alice",
            "hail on the roof",
            1,
            ClaimStatus::Submitted,
        ),
        policy("pol-b", "bob", 1, PolicyStatus::Active),
        claim("clm-b", "bob", "hail on the car", 1, ClaimStatus::Submitted),
    ];
    index
        .upsert_batch(documents.into_iter().map(IndexedDocument::Live).collect())
        .await
        .unwrap();
    let mut alice = SearchQuery::new(Scope::Customer("alice".into()));
    let mut found = ids(index, &alice).await;
    found.sort();
    assert_eq!(found, ["claim:clm-a", "policy:pol-a"]);
    // Text that only bob's documents hold finds nothing for alice.
    alice.text = Some("car".into());
    assert!(ids(index, &alice).await.is_empty());
    alice.text = Some("hail".into());
    assert_eq!(ids(index, &alice).await, ["claim:clm-a"]);
    // Naming another customer is refused, naming oneself is fine.
    alice.customer_id = Some("bob".into());
    assert!(matches!(
        index.search(&alice).await,
        Err(IndexError::Forbidden(_))
    ));
    alice.customer_id = Some("alice".into());
    assert_eq!(ids(index, &alice).await, ["claim:clm-a"]);
    let mut staff = staff();
    staff.text = Some("hail".into());
    assert_eq!(ids(index, &staff).await.len(), 2);
    staff.customer_id = Some("bob".into());
    assert_eq!(ids(index, &staff).await, ["claim:clm-b"]);
}

pub(crate) async fn filters_narrow_by_type_status_customer_and_dates<I: SearchIndex>(index: &I) {
    let documents = vec![
        policy_on("pol-jan", "cust-1", date!(2026 - 01 - 15)),
        policy_on("pol-feb", "cust-1", date!(2026 - 02 - 15)),
        policy_on("pol-mar", "cust-2", date!(2026 - 03 - 15)),
        // Incident 2026-03-14.
        claim("clm-1", "cust-1", "flood", 2, ClaimStatus::UnderReview),
    ];
    index
        .upsert_batch(documents.into_iter().map(IndexedDocument::Live).collect())
        .await
        .unwrap();
    let mut query = staff();
    query.sort = SortOrder::DateAscending;
    query.doc_type = Some(dovetail_search::document::DocumentType::Policy);
    assert_eq!(
        ids(index, &query).await,
        ["policy:pol-jan", "policy:pol-feb", "policy:pol-mar"]
    );
    query.date_from = Some(date!(2026 - 02 - 01));
    query.date_to = Some(date!(2026 - 03 - 15));
    assert_eq!(
        ids(index, &query).await,
        ["policy:pol-feb", "policy:pol-mar"]
    );
    query.customer_id = Some("cust-1".into());
    assert_eq!(ids(index, &query).await, ["policy:pol-feb"]);
    query.doc_type = None;
    query.sort = SortOrder::DateDescending;
    assert_eq!(ids(index, &query).await, ["claim:clm-1", "policy:pol-feb"]);
    query.status = Some("under_review".into());
    assert_eq!(ids(index, &query).await, ["claim:clm-1"]);
    query.date_to = Some(date!(2026 - 03 - 13));
    assert!(ids(index, &query).await.is_empty());
}

pub(crate) async fn pages_follow_the_sort_and_cover_every_document_once<I: SearchIndex>(index: &I) {
    // Several documents share a date: ties must not repeat or drop a document.
    let documents: Vec<SearchDocument> = (0..23)
        .map(|n| {
            let day = 1 + (n % 5);
            policy_on(
                &format!("pol-{n:02}"),
                "cust-1",
                time::Date::from_calendar_date(2026, time::Month::April, day).unwrap(),
            )
        })
        .collect();
    index
        .upsert_batch(
            documents
                .iter()
                .cloned()
                .map(IndexedDocument::Live)
                .collect(),
        )
        .await
        .unwrap();
    index.refresh().await.unwrap();
    for sort in [
        SortOrder::DateAscending,
        SortOrder::DateDescending,
        SortOrder::Relevance,
    ] {
        let mut query = SearchQuery::new(Scope::Customer("cust-1".into()));
        query.sort = sort;
        query.limit = 4;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = index.search(&query).await.unwrap();
            pages += 1;
            assert!(page.hits.len() <= 4);
            seen.extend(page.hits.into_iter().map(|hit| hit.document));
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let mut ids: Vec<&str> = seen.iter().map(|document| document.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 23, "{sort:?}: every document once");
        assert_eq!(seen.len(), 23, "{sort:?}: no document twice");
        let dates: Vec<time::Date> = seen.iter().map(|document| document.date).collect();
        match sort {
            SortOrder::DateAscending => assert!(dates.is_sorted()),
            SortOrder::DateDescending => assert!(dates.iter().rev().is_sorted()),
            SortOrder::Relevance => {}
        }
    }
    let mut query = staff();
    query.after = Some("not a position".into());
    assert!(matches!(
        index.search(&query).await,
        Err(IndexError::BadCursor(_))
    ));
}

pub(crate) async fn pages_by_relevance_with_differing_scores_cover_every_document_once<
    I: SearchIndex,
>(
    index: &I,
) {
    // Scores differ with how often `water` occurs and how long the text is; documents of
    // the same shape tie.
    for n in 0..14usize {
        let description = format!("{}{}", "water ".repeat(1 + n % 4), "leak ".repeat(n % 3));
        index
            .upsert(claim(
                &format!("clm-{n:02}"),
                "cust-1",
                description.trim_end(),
                1,
                ClaimStatus::Submitted,
            ))
            .await
            .unwrap();
    }
    index
        .upsert(claim(
            "clm-dry",
            "cust-1",
            "Stolen bicycle",
            1,
            ClaimStatus::Submitted,
        ))
        .await
        .unwrap();
    index.refresh().await.unwrap();
    let mut query = SearchQuery::new(Scope::Customer("cust-1".into()));
    query.text = Some("water".into());
    query.sort = SortOrder::Relevance;
    query.limit = 3;
    let mut seen: Vec<(String, f32)> = Vec::new();
    let mut pages = 0;
    loop {
        let page = index.search(&query).await.unwrap();
        pages += 1;
        assert!(page.hits.len() <= 3);
        for hit in page.hits {
            let score = hit.score.expect("a score with sort=relevance");
            seen.push((hit.document.id, score));
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    for pair in seen.windows(2) {
        assert!(pair[0].1 >= pair[1].1, "best first across pages: {seen:?}");
    }
    let mut scores: Vec<u32> = seen.iter().map(|(_, score)| score.to_bits()).collect();
    scores.dedup();
    assert!(scores.len() >= 3, "the scores should differ: {seen:?}");
    let mut ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), seen.len(), "no document twice: {seen:?}");
    assert_eq!(ids.len(), 14, "every matching document: {seen:?}");
    assert!(!ids.contains(&"claim:clm-dry"));
}

pub(crate) async fn full_text_finds_every_word_and_highlights_it<I: SearchIndex>(index: &I) {
    let documents = vec![
        claim(
            "clm-1",
            "cust-1",
            "Water damage in the kitchen",
            1,
            ClaimStatus::Submitted,
        ),
        claim(
            "clm-2",
            "cust-1",
            "Water in the basement <script>",
            1,
            ClaimStatus::Submitted,
        ),
        claim(
            "clm-3",
            "cust-1",
            "Stolen bicycle",
            1,
            ClaimStatus::Submitted,
        ),
        policy("pol-9", "cust-1", 1, PolicyStatus::Active),
    ];
    index
        .upsert_batch(documents.into_iter().map(IndexedDocument::Live).collect())
        .await
        .unwrap();
    index.refresh().await.unwrap();
    let mut query = SearchQuery::new(Scope::Customer("cust-1".into()));
    query.text = Some("water kitchen".into());
    let results = index.search(&query).await.unwrap();
    assert_eq!(results.hits.len(), 1, "every word must match");
    let hit = &results.hits[0];
    assert_eq!(hit.document.id, "claim:clm-1");
    assert!(hit.score.is_some_and(|score| score > 0.0));
    let highlight = hit.highlights.join(" ");
    assert!(highlight.contains("<em>Water</em>"), "{highlight}");
    assert!(highlight.contains("<em>kitchen</em>"), "{highlight}");

    query.text = Some("basement".into());
    let results = index.search(&query).await.unwrap();
    let highlight = results.hits[0].highlights.join(" ");
    assert!(
        !highlight.contains("<script>"),
        "highlights are escaped: {highlight}"
    );
    // And the escaped text is there (the check above also passes without highlights).
    assert!(
        highlight.contains("<em>basement</em>") && highlight.contains("&lt;script"),
        "highlights are escaped: {highlight}"
    );

    // Ids and product lines are searchable too.
    query.text = Some("pol-9".into());
    assert_eq!(ids(index, &query).await, ["policy:pol-9"]);
    query.text = Some("HOME".into());
    assert_eq!(ids(index, &query).await, ["policy:pol-9"]);
    query.text = Some("WATER".into());
    assert_eq!(ids(index, &query).await.len(), 2);
}

/// The semantics of a word the index cannot hold: tantivy's tokenizer drops words of 40
/// bytes or more (from documents and queries alike), so such a word never matches; on
/// both backends a `text` with such a word matches nothing, whatever its other words.
pub(crate) async fn a_word_longer_than_the_index_keeps_matches_nothing<I: SearchIndex>(index: &I) {
    // 44 bytes; 17 CJK characters without a space (51 bytes); 39 bytes, the longest kept.
    const LONG: &str = "Rindfleischetikettierungsüberwachungsgesetz";
    const CJK: &str = "火災保険金請求書類確認手続完了報告";
    let longest_kept = "k".repeat(39);
    for (id, description) in [
        ("clm-1", format!("Water damage under the {LONG}")),
        ("clm-2", format!("Water in the basement {CJK}")),
        ("clm-3", format!("Water and {longest_kept}")),
        ("clm-4", "Stolen bicycle".to_owned()),
    ] {
        index
            .upsert(claim(id, "cust-1", &description, 1, ClaimStatus::Submitted))
            .await
            .unwrap();
    }
    let mut query = SearchQuery::new(Scope::Customer("cust-1".into()));
    query.text = Some("water".into());
    let mut found = ids(index, &query).await;
    found.sort();
    assert_eq!(found, ["claim:clm-1", "claim:clm-2", "claim:clm-3"]);
    for text in [
        LONG.to_owned(),
        CJK.to_owned(),
        format!("water {LONG}"),
        format!("{LONG} water"),
        format!("water {CJK}"),
    ] {
        for sort in [SortOrder::Relevance, SortOrder::DateDescending] {
            query.sort = sort;
            query.text = Some(text.clone());
            assert!(
                ids(index, &query).await.is_empty(),
                "{text:?} ({sort:?}) matches nothing"
            );
        }
    }
    query.sort = SortOrder::Relevance;
    query.text = Some(longest_kept.to_uppercase());
    assert_eq!(ids(index, &query).await, ["claim:clm-3"]);
    query.text = Some(format!("water {longest_kept}"));
    assert_eq!(ids(index, &query).await, ["claim:clm-3"]);
    // Text without any word matches nothing; blank text is no text query.
    query.text = Some("!!".into());
    assert!(ids(index, &query).await.is_empty());
    query.text = Some("  ".into());
    assert_eq!(ids(index, &query).await.len(), 4);
}

pub(crate) async fn concurrent_writers_of_one_document_leave_the_highest_version<
    I: SearchIndex + Clone + 'static,
>(
    index: &I,
) {
    let mut versions: Vec<u64> = (1..=24).collect();
    // A fixed shuffle: the highest version is neither first nor last.
    versions.sort_by_key(|version| (version * 7919) % 31);
    let tasks: Vec<_> = versions
        .into_iter()
        .map(|version| {
            let index = index.clone();
            tokio::spawn(async move {
                index
                    .upsert(claim(
                        "clm-race",
                        "cust-1",
                        "race",
                        version,
                        ClaimStatus::Submitted,
                    ))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        if task.await.unwrap() == UpsertOutcome::Applied {
            applied += 1;
        }
    }
    assert!(applied >= 1);
    assert_eq!(
        held(index, "claim:clm-race")
            .await
            .map(|held| held.version()),
        Some(24)
    );
}

pub(crate) async fn a_batch_with_several_versions_of_one_document_keeps_the_highest<
    I: SearchIndex,
>(
    index: &I,
) {
    let outcomes = index
        .upsert_batch(
            [2, 5, 3, 5, 1]
                .into_iter()
                .map(|version| {
                    IndexedDocument::Live(policy("pol-1", "cust-1", version, PolicyStatus::Active))
                })
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 5);
    assert_eq!(outcomes[1], Ok(UpsertOutcome::Applied));
    assert_eq!(&outcomes[2..], [const { Ok(UpsertOutcome::Stale) }; 3]);
    assert_eq!(
        held(index, "policy:pol-1").await.map(|held| held.version()),
        Some(5)
    );
}

pub(crate) async fn a_rebuild_while_writes_go_on_loses_nothing_and_moves_nothing_back<
    I: SearchIndex + Clone + 'static,
>(
    index: &I,
) {
    // Before: 30 policies at version 1, one of them deleted.
    let seed: Vec<IndexedDocument> = (0..30)
        .map(|n| {
            IndexedDocument::Live(policy(
                &format!("pol-{n}"),
                "cust-1",
                1,
                PolicyStatus::Active,
            ))
        })
        .collect();
    index.upsert_batch(seed).await.unwrap();
    let tombstone = Tombstone {
        id: "policy:pol-29".into(),
        version: 2,
        lineage: lineage("policy-service", "policy.erased", 2),
    };
    index.delete(tombstone.clone()).await.unwrap();

    let load = RebuildLoad::default();
    let (writer, reader) = (load.writer(index), load.reader(index, 50));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let progress = RebuildProgress::default();
    let report = index.rebuild(&progress).await.unwrap();
    load.switched();
    assert_eq!(progress.documents_copied(), report.documents);
    assert_ne!(report.from, report.to);
    assert!(report.documents >= 30, "{report:?}");
    writer.await.unwrap();
    reader.await.unwrap();

    let last = load.last_version();
    for n in 0..29 {
        let expected = if n < 10 { last } else { 1 };
        let held = index.get(&format!("policy:pol-{n}")).await.unwrap();
        assert_eq!(held.map(|held| held.version()), Some(expected), "pol-{n}");
    }
    assert_eq!(
        held(index, "policy:pol-29").await,
        Some(IndexedDocument::Deleted(tombstone))
    );
    let mut query = staff();
    query.limit = 100;
    index.refresh().await.unwrap();
    let listed = index.search(&query).await.unwrap().hits;
    assert_eq!(listed.len(), 29);
    // After the switch versions still hold: a late event is stale, the tombstone stays.
    let late = policy("pol-29", "cust-1", 1, PolicyStatus::Active);
    assert_eq!(index.upsert(late).await.unwrap(), UpsertOutcome::Stale);
    // And the index can be rebuilt again.
    let again = index.rebuild(&RebuildProgress::default()).await.unwrap();
    assert_eq!(again.from, report.to);
    assert_eq!(ids(index, &query).await.len(), 29);
}

pub(crate) async fn a_rebuild_builds_each_document_again_from_its_source_event<I: SearchIndex>(
    index: &I,
) {
    // A document an older version of the service wrote: less text, no product line.
    let current = policy_from_event("pol-old", "cust-1", 3);
    let mut older = current.clone();
    older.text = "pol-old".into();
    older.product_line = None;
    // One written without its source event, and a tombstone: copied as they are.
    let bare = policy("pol-bare", "cust-1", 2, PolicyStatus::Active);
    let tombstone = Tombstone {
        id: "policy:pol-gone".into(),
        version: 4,
        lineage: lineage("policy-service", "policy.erased", 4),
    };
    index
        .upsert_batch(vec![
            IndexedDocument::Live(older.clone()),
            IndexedDocument::Live(bare.clone()),
            IndexedDocument::Deleted(tombstone.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(
        held(index, "policy:pol-old").await,
        Some(IndexedDocument::Live(older)),
        "the source event is stored with the document"
    );
    let mut query = staff();
    query.text = Some("home".into());
    assert_eq!(ids(index, &query).await, ["policy:pol-bare"]);

    let progress = RebuildProgress::default();
    let report = index.rebuild(&progress).await.unwrap();
    assert!(report.rederived >= 1, "{report:?}");
    assert!(report.documents >= 3, "{report:?}");
    assert_eq!(progress.documents_copied(), report.documents);
    assert_eq!(progress.phase(), RebuildPhase::DroppingOld);

    assert_eq!(
        held(index, "policy:pol-old").await,
        Some(IndexedDocument::Live(current)),
        "built again from its event by the current code, at the same version"
    );
    assert_eq!(
        held(index, "policy:pol-bare").await,
        Some(IndexedDocument::Live(bare))
    );
    assert_eq!(
        held(index, "policy:pol-gone").await,
        Some(IndexedDocument::Deleted(tombstone))
    );
    let mut found = ids(index, &query).await;
    found.sort();
    assert_eq!(found, ["policy:pol-bare", "policy:pol-old"]);
}

/// Writes and reads around a rebuild, as the live service would: [`writer`](Self::writer)
/// moves policies 0 to 9 up a version each round, each followed by a late older event,
/// until three rounds after [`switched`](Self::switched); [`reader`](Self::reader) checks
/// that the versions it reads never go down, across the switch too.
#[derive(Debug, Clone, Default)]
pub(crate) struct RebuildLoad {
    rebuilt: std::sync::Arc<std::sync::atomic::AtomicBool>,
    last: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RebuildLoad {
    /// Starts the writer on `index`.
    pub(crate) fn writer<I: SearchIndex + Clone + 'static>(
        &self,
        index: &I,
    ) -> tokio::task::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let (index, load) = (index.clone(), self.clone());
        tokio::spawn(async move {
            let (mut version, mut after_switch) = (1, 0);
            while after_switch < 3 {
                version += 1;
                for n in 0..10 {
                    let id = format!("pol-{n}");
                    let outcome = index
                        .upsert(policy(&id, "cust-1", version, PolicyStatus::Active))
                        .await
                        .unwrap();
                    assert_eq!(outcome, UpsertOutcome::Applied, "{id} v{version}");
                    index
                        .upsert(policy(&id, "cust-1", version - 1, PolicyStatus::Draft))
                        .await
                        .unwrap();
                }
                load.last.store(version, Ordering::SeqCst);
                if load.rebuilt.load(Ordering::SeqCst) {
                    after_switch += 1;
                }
            }
        })
    }

    /// Starts the reader on `index`; it reads `after_switch` more rounds once switched.
    pub(crate) fn reader<I: SearchIndex + Clone + 'static>(
        &self,
        index: &I,
        after_switch: usize,
    ) -> tokio::task::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let (index, load) = (index.clone(), self.clone());
        tokio::spawn(async move {
            let (mut seen, mut reads) = ([0u64; 10], 0);
            while !load.rebuilt.load(Ordering::SeqCst) || reads < after_switch {
                for (n, seen) in seen.iter_mut().enumerate() {
                    let held = index
                        .get(&format!("policy:pol-{n}"))
                        .await
                        .unwrap()
                        .unwrap();
                    assert!(
                        held.version() >= *seen,
                        "pol-{n} went back from {seen} to {}",
                        held.version()
                    );
                    *seen = held.version();
                }
                if load.rebuilt.load(Ordering::SeqCst) {
                    reads += 1;
                }
            }
        })
    }

    /// Tells writer and reader the rebuild has switched.
    pub(crate) fn switched(&self) {
        self.rebuilt
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The version the writer last moved policies 0 to 9 to.
    pub(crate) fn last_version(&self) -> u64 {
        self.last.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// One write of the proptest streams: a version of one of a few aggregates, or a deletion.
#[derive(Debug, Clone)]
pub(crate) enum Write {
    Policy { id: u8, version: u64, status: u8 },
    Claim { id: u8, version: u64, status: u8 },
    Delete { id: u8, version: u64 },
}

impl Write {
    pub(crate) fn indexed(&self) -> IndexedDocument {
        const POLICY: [PolicyStatus; 4] = [
            PolicyStatus::Draft,
            PolicyStatus::Active,
            PolicyStatus::Cancelled,
            PolicyStatus::Expired,
        ];
        const CLAIM: [ClaimStatus; 5] = [
            ClaimStatus::Submitted,
            ClaimStatus::UnderReview,
            ClaimStatus::Approved,
            ClaimStatus::Rejected,
            ClaimStatus::Paid,
        ];
        match *self {
            Self::Policy {
                id,
                version,
                status,
            } => IndexedDocument::Live(policy(
                &format!("pol-{id}"),
                &format!("cust-{}", id % 2),
                version,
                POLICY[usize::from(status) % POLICY.len()],
            )),
            Self::Claim {
                id,
                version,
                status,
            } => IndexedDocument::Live(claim(
                &format!("clm-{id}"),
                &format!("cust-{}", id % 2),
                &format!("description of version {version}"),
                version,
                CLAIM[usize::from(status) % CLAIM.len()],
            )),
            Self::Delete { id, version } => IndexedDocument::Deleted(Tombstone {
                id: format!("policy:pol-{id}"),
                version,
                lineage: lineage("policy-service", "policy.erased", version),
            }),
        }
    }
}

/// The ids the streams touch.
pub(crate) fn stream_ids() -> Vec<String> {
    (0..3u8)
        .flat_map(|id| [format!("policy:pol-{id}"), format!("claim:clm-{id}")])
        .collect()
}

/// An ordered stream of events (each aggregate's versions 1, 2, ... with a random status,
/// a policy sometimes deleted at its last version), and the same events shuffled with
/// duplicates.
pub(crate) fn streams() -> impl Strategy<Value = (Vec<Write>, Vec<Write>)> {
    let aggregate = (
        0..3u8,
        any::<bool>(),
        1..6u64,
        proptest::collection::vec(any::<u8>(), 6),
        any::<bool>(),
    );
    proptest::collection::vec(aggregate, 1..6)
        .prop_map(|aggregates| {
            let mut seen = std::collections::BTreeSet::new();
            let mut ordered = Vec::new();
            for (id, is_policy, versions, statuses, deleted) in aggregates {
                if !seen.insert((id, is_policy)) {
                    continue;
                }
                for version in 1..=versions {
                    let status = statuses[usize::try_from(version).unwrap() % statuses.len()];
                    ordered.push(
                        match (is_policy, deleted && version == versions && version > 1) {
                            (true, true) => Write::Delete { id, version },
                            (true, false) => Write::Policy {
                                id,
                                version,
                                status,
                            },
                            (false, _) => Write::Claim {
                                id,
                                version,
                                status,
                            },
                        },
                    );
                }
            }
            ordered
        })
        .prop_flat_map(|ordered| {
            let len = ordered.len();
            let duplicates = proptest::collection::vec(0..len, 0..=len);
            (Just(ordered), duplicates)
        })
        .prop_flat_map(|(ordered, duplicates)| {
            let mut delivered = ordered.clone();
            delivered.extend(duplicates.into_iter().map(|at| ordered[at].clone()));
            (Just(ordered), Just(delivered).prop_shuffle())
        })
}

/// What an index holds of the streams' ids, and what a staff search lists.
pub(crate) async fn contents<I: SearchIndex>(
    index: &I,
) -> (
    BTreeMap<String, Option<IndexedDocument>>,
    Vec<(String, u64)>,
) {
    let mut held = BTreeMap::new();
    for id in stream_ids() {
        held.insert(id.clone(), index.get(&id).await.unwrap());
    }
    index.refresh().await.unwrap();
    let mut query = staff();
    query.limit = 100;
    let mut listed: Vec<(String, u64)> = index
        .search(&query)
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|hit| (hit.document.id, hit.document.version))
        .collect();
    listed.sort();
    (held, listed)
}

/// Writes `ordered` one by one into `in_order`, `delivered` (in batches of up to three, so
/// batches hold several versions of one document) into `shuffled`, and checks both end
/// with the same contents.
pub(crate) async fn same_contents<I: SearchIndex>(
    in_order: &I,
    shuffled: &I,
    ordered: &[Write],
    delivered: &[Write],
) {
    for write in ordered {
        assert_eq!(
            in_order.upsert_batch(vec![write.indexed()]).await.unwrap(),
            [Ok(UpsertOutcome::Applied)]
        );
    }
    for batch in delivered.chunks(3) {
        shuffled
            .upsert_batch(batch.iter().map(Write::indexed).collect())
            .await
            .unwrap();
    }
    assert_eq!(contents(shuffled).await, contents(in_order).await);
}
