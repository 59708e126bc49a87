//! The index's consistency views against the testkit's consistency contract, for each
//! document type, written through the index's own port (`upsert`, `delete`): tantivy
//! here, OpenSearch in `needs_servers::opensearch_views`. And the views of the two types
//! kept apart in one index.

use dovetail_consistency::{BucketRange, Digest, Entry, View};
use dovetail_contracts::claim::ClaimStatus;
use dovetail_contracts::policy::PolicyStatus;
use dovetail_search::document::{DocumentType, IndexedDocument, Tombstone};
use dovetail_search::index::{ConsistencyIndex, IndexView, SearchIndex};
use dovetail_testkit::consistency_contract::{DeleteFixture, ViewFixture};

use crate::support::{claim, lineage, policy};

/// A fresh index and the view of one of its document types, written as its events
/// would write it.
pub(crate) struct IndexFixture<I> {
    index: I,
    view: IndexView<I>,
}

impl<I: SearchIndex + ConsistencyIndex + Clone> IndexFixture<I> {
    pub(crate) fn new(index: I, doc_type: DocumentType) -> Self {
        Self {
            view: IndexView::new(index.clone(), doc_type),
            index,
        }
    }

    fn id(&self, key: &str) -> String {
        self.view.doc_type().document_id(key)
    }

    async fn held_version(&self, key: &str) -> u64 {
        self.index
            .get(&self.id(key))
            .await
            .unwrap()
            .expect("written before")
            .version()
    }

    /// Writes the document of `key` at `version`, searchable when it returns.
    async fn upsert(&self, key: &str, version: u64) {
        let document = match self.view.doc_type() {
            DocumentType::Policy => policy(key, "cust-1", version, PolicyStatus::Active),
            DocumentType::Claim => claim(
                key,
                "cust-1",
                "a burst pipe",
                version,
                ClaimStatus::Submitted,
            ),
        };
        self.index.upsert(document).await.unwrap();
        self.index.refresh().await.unwrap();
    }
}

impl<I: SearchIndex + ConsistencyIndex + Clone> ViewFixture for IndexFixture<I> {
    type View = IndexView<I>;

    fn view(&self) -> &IndexView<I> {
        &self.view
    }

    async fn create(&self, n: u32) -> Entry {
        // Versions of their own per key, as events reach an index.
        let key = format!("key-{n:03}");
        let version = u64::from(n % 4) + 1;
        self.upsert(&key, version).await;
        Entry::live(key, version)
    }

    async fn update(&self, key: &str) -> Entry {
        let version = self.held_version(key).await + 1;
        self.upsert(key, version).await;
        Entry::live(key, version)
    }
}

impl<I: SearchIndex + ConsistencyIndex + Clone> DeleteFixture for IndexFixture<I> {
    async fn delete(&self, key: &str) -> Entry {
        let version = self.held_version(key).await + 1;
        let tombstone = Tombstone {
            id: self.id(key),
            version,
            lineage: lineage("policy-service", "policy.deleted", version),
        };
        self.index.delete(tombstone).await.unwrap();
        self.index.refresh().await.unwrap();
        Entry::tombstone(key, version)
    }
}

/// The contract for the views of both document types of the index `$open` makes.
macro_rules! view_contract {
    ($open:expr) => {
        mod policies {
            #[allow(unused_imports)]
            use super::*;
            use dovetail_search::document::DocumentType;

            dovetail_testkit::consistency_contract_tests!(|| async {
                crate::views::IndexFixture::new($open.await, DocumentType::Policy)
            });
            dovetail_testkit::consistency_contract_delete_tests!(|| async {
                crate::views::IndexFixture::new($open.await, DocumentType::Policy)
            });
        }

        mod claims {
            #[allow(unused_imports)]
            use super::*;
            use dovetail_search::document::DocumentType;

            dovetail_testkit::consistency_contract_tests!(|| async {
                crate::views::IndexFixture::new($open.await, DocumentType::Claim)
            });
            dovetail_testkit::consistency_contract_delete_tests!(|| async {
                crate::views::IndexFixture::new($open.await, DocumentType::Claim)
            });
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_views_of_the_two_types_are_apart() {
            crate::views::the_views_of_the_two_types_are_apart($open.await).await;
        }
    };
}

/// A policy and a claim of one id, a tombstone of each type: each view holds its own
/// type only, and the freshness probe (a document of no type) is in neither.
pub(crate) async fn the_views_of_the_two_types_are_apart<I>(index: I)
where
    I: SearchIndex + ConsistencyIndex + Clone,
{
    index
        .upsert(policy("same-1", "cust-1", 3, PolicyStatus::Active))
        .await
        .unwrap();
    index
        .upsert(claim(
            "same-1",
            "cust-1",
            "a burst pipe",
            5,
            ClaimStatus::Submitted,
        ))
        .await
        .unwrap();
    for (id, version) in [("policy:gone-1", 2), ("claim:gone-2", 4)] {
        let tombstone = Tombstone {
            id: id.to_owned(),
            version,
            lineage: lineage("policy-service", "policy.deleted", version),
        };
        index.delete(tombstone).await.unwrap();
    }
    index.refresh().await.unwrap();
    assert!(matches!(
        index.get("policy:same-1").await.unwrap(),
        Some(IndexedDocument::Live(_))
    ));

    let policies = IndexView::new(index.clone(), DocumentType::Policy);
    let claims = IndexView::new(index, DocumentType::Claim);
    let mut expected = vec![Entry::live("same-1", 3), Entry::tombstone("gone-1", 2)];
    expected.sort_by_key(|e| (e.bucket(), e.key.clone()));
    assert_eq!(policies.entries(BucketRange::FULL).await.unwrap(), expected);
    let mut expected = vec![Entry::live("same-1", 5), Entry::tombstone("gone-2", 4)];
    expected.sort_by_key(|e| (e.bucket(), e.key.clone()));
    assert_eq!(claims.entries(BucketRange::FULL).await.unwrap(), expected);
    assert_eq!(
        policies.digest(BucketRange::FULL).await.unwrap(),
        Digest::of([&Entry::live("same-1", 3)])
    );
    assert_eq!(
        claims.digest(BucketRange::FULL).await.unwrap(),
        Digest::of([&Entry::live("same-1", 5)])
    );
}
