//! What a consistency check reads of the index: [`ConsistencyIndex`], the digests and
//! entries of one document type's keys, which both backends implement, and
//! [`IndexView`], the [`View`] of one type over any of them, to check the index against
//! the policy service's or the claim service's own view.
//!
//! # Keys, buckets, versions
//!
//! A document `policy:pol-1` is the entry of key `pol-1` (the aggregate id, as its owner
//! names it) in the view of policies, at the document's version (the aggregate's
//! sequence, as every write carries it). Each document and tombstone is written with its
//! key's [`bucket`](dovetail_consistency::bucket), its type (a tombstone's read from
//! its id), and, when live, its [`entry_hash`](dovetail_consistency::entry_hash): a range
//! of buckets is then a range query, and its digest an aggregation of the hashes of its
//! live documents. Tombstones appear in [`entries`](ConsistencyIndex::entries) and in no
//! [`digest`](ConsistencyIndex::digest). Documents of no type (the OpenSearch freshness
//! probe) are in no view.

use std::future::Future;

use dovetail_consistency::{BucketRange, Digest, Entry, View, ViewError, bucket, entry_hash};

use super::{AnyIndex, IndexError};
use crate::document::{DocumentType, IndexedDocument};

/// What a consistency check reads of an index, for one document type at a time.
pub trait ConsistencyIndex: Send + Sync {
    /// The backend's name, for errors (`tantivy`, `OpenSearch`).
    fn backend(&self) -> &'static str;

    /// The digest of the live documents of `doc_type` whose key's bucket is in `range`.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index cannot be read (on OpenSearch, also an
    /// index made before the consistency fields: rebuild it).
    fn digest(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> impl Future<Output = Result<Digest, IndexError>> + Send;

    /// The documents and tombstones of `doc_type` whose key's bucket is in `range`, as
    /// entries in (bucket, key) order.
    ///
    /// # Errors
    /// As [`digest`](Self::digest); [`IndexError::Corrupt`] for a stored document that
    /// does not read.
    fn entries(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> impl Future<Output = Result<Vec<Entry>, IndexError>> + Send;
}

/// The [`View`] of one document type of an index: the replica side of a check against
/// that type's owner.
///
/// ```
/// use dovetail_consistency::{BucketRange, Digest, View};
/// use dovetail_search::document::DocumentType;
/// use dovetail_search::index::{IndexView, TantivyIndex};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let index = TantivyIndex::open_in_ram()?;
/// let policies = IndexView::new(index, DocumentType::Policy);
/// assert_eq!(policies.digest(BucketRange::FULL).await?, Digest::EMPTY);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IndexView<I> {
    index: I,
    doc_type: DocumentType,
}

impl<I: ConsistencyIndex> IndexView<I> {
    /// The view of the documents of `doc_type` in `index`.
    pub fn new(index: I, doc_type: DocumentType) -> Self {
        Self { index, doc_type }
    }

    /// The document type this view holds.
    pub fn doc_type(&self) -> DocumentType {
        self.doc_type
    }
}

impl<I: ConsistencyIndex> View for IndexView<I> {
    async fn digest(&self, range: BucketRange) -> Result<Digest, ViewError> {
        self.index
            .digest(self.doc_type, range)
            .await
            .map_err(|error| ViewError::new(self.index.backend(), error))
    }

    async fn entries(&self, range: BucketRange) -> Result<Vec<Entry>, ViewError> {
        self.index
            .entries(self.doc_type, range)
            .await
            .map_err(|error| ViewError::new(self.index.backend(), error))
    }
}

impl AnyIndex {
    /// The [`View`] of the documents of `doc_type` in this index.
    pub fn consistency_view(&self, doc_type: DocumentType) -> IndexView<Self> {
        IndexView::new(self.clone(), doc_type)
    }
}

impl ConsistencyIndex for AnyIndex {
    fn backend(&self) -> &'static str {
        match self {
            Self::Tantivy(index) => index.backend(),
            #[cfg(feature = "opensearch")]
            Self::OpenSearch(index) => index.backend(),
        }
    }

    async fn digest(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Digest, IndexError> {
        match self {
            Self::Tantivy(index) => index.digest(doc_type, range).await,
            #[cfg(feature = "opensearch")]
            Self::OpenSearch(index) => index.digest(doc_type, range).await,
        }
    }

    async fn entries(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Vec<Entry>, IndexError> {
        match self {
            Self::Tantivy(index) => index.entries(doc_type, range).await,
            #[cfg(feature = "opensearch")]
            Self::OpenSearch(index) => index.entries(doc_type, range).await,
        }
    }
}

/// What a document is written with for the views: its type, its key's bucket, and, when
/// live, its entry hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keyed {
    pub(crate) doc_type: DocumentType,
    pub(crate) bucket: u32,
    /// `None` for a tombstone, which no digest counts.
    pub(crate) hash: Option<u64>,
}

impl Keyed {
    /// The view fields of `document`; `None` for an id of no document type.
    pub(crate) fn of(document: &IndexedDocument) -> Option<Self> {
        let (doc_type, key) = key_of(document.id())?;
        Some(Self {
            doc_type,
            bucket: bucket(key),
            hash: match document {
                IndexedDocument::Live(_) => Some(entry_hash(key, document.version())),
                IndexedDocument::Deleted(_) => None,
            },
        })
    }
}

/// The type and key of the document id `id` (`policy:pol-1` is `pol-1` of the
/// policies), or `None` for an id of no document type.
pub(crate) fn key_of(id: &str) -> Option<(DocumentType, &str)> {
    let (doc_type, key) = id.split_once(':')?;
    Some((DocumentType::parse(doc_type).ok()?, key))
}

/// The entry of `document` in the view of `doc_type`, or `None` when it is of another
/// type.
pub(crate) fn entry_of(document: &IndexedDocument, doc_type: DocumentType) -> Option<Entry> {
    let (of_type, key) = key_of(document.id())?;
    (of_type == doc_type).then(|| match document {
        IndexedDocument::Live(_) => Entry::live(key, document.version()),
        IndexedDocument::Deleted(_) => Entry::tombstone(key, document.version()),
    })
}

/// Puts `entries` in the check's order: by bucket, then key.
pub(crate) fn sort_entries(entries: &mut [Entry]) {
    entries.sort_by(|a, b| (a.bucket(), &a.key).cmp(&(b.bucket(), &b.key)));
}

#[cfg(test)]
mod tests {
    use super::key_of;
    use crate::document::DocumentType;

    #[test]
    fn document_ids_are_keys_of_their_type() {
        assert_eq!(
            key_of("policy:pol-1"),
            Some((DocumentType::Policy, "pol-1"))
        );
        assert_eq!(
            key_of("claim:clm:odd"),
            Some((DocumentType::Claim, "clm:odd"))
        );
        assert_eq!(key_of("probe:freshness"), None, "the probe is in no view");
        assert_eq!(key_of("no-type"), None);
    }
}
