//! The port: [`SearchIndex`], what the service asks of an index, and its two backends,
//! [`tantivy`](TantivyIndex) (embedded, the default) and OpenSearch (feature
//! `opensearch`), chosen at run time through [`AnyIndex`].
//!
//! # Versions
//!
//! Every write carries the aggregate's sequence as an external version. A write whose
//! version is not higher than the one held is *stale*: it changes nothing and is
//! acknowledged ([`UpsertOutcome::Stale`]), so redeliveries and late events are harmless
//! and any order of the same events ends in the same index. A deletion is a
//! [`Tombstone`] with a version, held like a document: a late older event cannot bring
//! the document back.

use std::future::Future;

use time::Date;

use crate::document::{DocumentType, IndexedDocument, SearchDocument, Tombstone};

pub mod batch;
#[cfg(feature = "opensearch")]
pub mod opensearch;
pub mod tantivy;

pub use self::batch::Batching;
#[cfg(feature = "opensearch")]
pub use self::opensearch::OpenSearchIndex;
pub use self::tantivy::TantivyIndex;

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// The index now holds this version.
    Applied,
    /// The index held this version or a higher one already; nothing changed.
    Stale,
}

/// Who is searching: the authorization scope every backend puts inside its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A customer: sees only documents whose `customer_id` is theirs.
    Customer(String),
    /// Staff: sees every customer's documents.
    Staff,
}

/// The order of results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Best match first (all documents score alike without a text query), ties by id.
    #[default]
    Relevance,
    /// By [`SearchDocument::date`], oldest first, ties by id.
    DateAscending,
    /// By [`SearchDocument::date`], newest first, ties by id.
    DateDescending,
}

/// A search, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Who asks: enforced inside the backend's query.
    pub scope: Scope,
    /// Words every result must contain (in its text), if any.
    pub text: Option<String>,
    /// Only this type.
    pub doc_type: Option<DocumentType>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this customer (staff only; a customer's scope is their own already).
    pub customer_id: Option<String>,
    /// Only documents whose date is on or after this day.
    pub date_from: Option<Date>,
    /// Only documents whose date is on or before this day.
    pub date_to: Option<Date>,
    /// The order.
    pub sort: SortOrder,
    /// At most this many results.
    pub limit: usize,
    /// Continue after this position: the `next` of the previous page, unchanged.
    pub after: Option<String>,
}

impl SearchQuery {
    /// A query of `scope` for everything it may see, in relevance order, 20 a page.
    pub fn new(scope: Scope) -> Self {
        Self {
            scope,
            text: None,
            doc_type: None,
            status: None,
            customer_id: None,
            date_from: None,
            date_to: None,
            sort: SortOrder::default(),
            limit: 20,
            after: None,
        }
    }

    /// The customers whose documents the query may return: the scope's, narrowed by the
    /// `customer_id` filter. `Err` when a customer asks for another's documents.
    ///
    /// # Errors
    /// When the scope is a customer and the filter names someone else.
    pub fn customer_term(&self) -> Result<Option<&str>, IndexError> {
        match (&self.scope, &self.customer_id) {
            (Scope::Customer(own), Some(asked)) if own != asked => {
                Err(IndexError::Forbidden(format!(
                    "customer {own} may only search their own documents, not customer {asked}'s"
                )))
            }
            (Scope::Customer(own), _) => Ok(Some(own)),
            (Scope::Staff, asked) => Ok(asked.as_deref()),
        }
    }
}

/// One result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// The document.
    pub document: SearchDocument,
    /// Its relevance, when the order is by relevance.
    pub score: Option<f32>,
    /// Fragments of its text with the matched words in `<em>`, when there was a text
    /// query.
    pub highlights: Vec<String>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResults {
    /// The hits, in the query's order.
    pub hits: Vec<SearchHit>,
    /// Where the next page starts (pass as [`SearchQuery::after`]); absent on the last.
    pub next: Option<String>,
}

/// What a [`SearchIndex::rebuild`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The index (OpenSearch) or generation (tantivy) searched before.
    pub from: String,
    /// The one searched now.
    pub to: String,
    /// The documents and tombstones copied (live writes during the rebuild not counted).
    pub documents: u64,
}

/// Why an index operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The index cannot be reached or failed.
    ///
    /// ### Handling
    /// Retriable: a consumer leaves the event to be redelivered; the API answers 503.
    #[error("the search index is unavailable: {0}")]
    Unavailable(String),
    /// The `after` position is not one this index gave out.
    ///
    /// ### Handling
    /// The caller's mistake: a 400 saying to pass the previous page's cursor unchanged.
    #[error("{0}")]
    BadCursor(String),
    /// The scope does not allow what was asked.
    ///
    /// ### Handling
    /// A 403.
    #[error("{0}")]
    Forbidden(String),
    /// The operation cannot run now, such as a second rebuild while one runs.
    ///
    /// ### Handling
    /// A 409: wait for the other to finish.
    #[error("{0}")]
    Conflict(String),
    /// The index holds something this service did not write.
    ///
    /// ### Handling
    /// Not retriable: rebuild the index from the events.
    #[error("the search index holds an unreadable document: {0}")]
    Corrupt(String),
}

/// The port: what the search service asks of an index. Both backends pass the contract
/// suite in `tests/it/contract.rs`.
///
/// ```
/// use dovetail_search::index::{Scope, SearchIndex, SearchQuery, TantivyIndex, UpsertOutcome};
///
/// # async fn demo(document: dovetail_search::document::SearchDocument) -> Result<(), dovetail_search::index::IndexError> {
/// let index = TantivyIndex::open_in_ram()?;
/// assert_eq!(index.upsert(document.clone()).await?, UpsertOutcome::Applied);
/// assert_eq!(index.upsert(document.clone()).await?, UpsertOutcome::Stale); // a redelivery
/// index.refresh().await?;
/// let results = index.search(&SearchQuery::new(Scope::Customer(document.customer_id.clone()))).await?;
/// assert_eq!(results.hits.len(), 1);
/// # Ok(())
/// # }
/// ```
pub trait SearchIndex: Send + Sync {
    /// Writes `documents` where each is newer than what is held; the outcomes in the same
    /// order. Atomic per document against concurrent writers: of two writes of one id,
    /// the higher version stays whatever the order they arrive in.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index failed; some of the documents may be
    /// written (writing them again is harmless).
    fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> impl Future<Output = Result<Vec<UpsertOutcome>, IndexError>> + Send;

    /// Writes one document unless the index holds its version or a higher one.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index failed.
    fn upsert(
        &self,
        document: SearchDocument,
    ) -> impl Future<Output = Result<UpsertOutcome, IndexError>> + Send {
        async move {
            let outcomes = self
                .upsert_batch(vec![IndexedDocument::Live(document)])
                .await?;
            Ok(outcomes.first().copied().unwrap_or(UpsertOutcome::Stale))
        }
    }

    /// Deletes a document, keeping a tombstone at the deletion's version, unless the index
    /// holds that version or a higher one.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index failed.
    fn delete(
        &self,
        tombstone: Tombstone,
    ) -> impl Future<Output = Result<UpsertOutcome, IndexError>> + Send {
        async move {
            let outcomes = self
                .upsert_batch(vec![IndexedDocument::Deleted(tombstone)])
                .await?;
            Ok(outcomes.first().copied().unwrap_or(UpsertOutcome::Stale))
        }
    }

    /// What the index holds under `id` (written, refreshed or not).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] or [`IndexError::Corrupt`].
    fn get(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<IndexedDocument>, IndexError>> + Send;

    /// The live documents `query` matches, within its scope.
    ///
    /// # Errors
    /// [`IndexError::BadCursor`], [`IndexError::Forbidden`], [`IndexError::Unavailable`].
    fn search(
        &self,
        query: &SearchQuery,
    ) -> impl Future<Output = Result<SearchResults, IndexError>> + Send;

    /// Makes every write so far searchable (tests; the service relies on the backend's
    /// own refresh).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`].
    fn refresh(&self) -> impl Future<Output = Result<(), IndexError>> + Send;

    /// Re-indexes everything into a new index and switches searches and writes to it
    /// atomically, while writes go on: from the moment the new index exists every write
    /// goes to both, then the old index's documents are copied in by version (a copy
    /// never overwrites a newer live write), then the switch (an alias swap on
    /// OpenSearch, the `CURRENT` generation file on tantivy) waits for the writes in
    /// flight and happens in one step. No document is lost or moves back to an older
    /// version across it. The old index is deleted.
    ///
    /// # Errors
    /// [`IndexError::Conflict`] while another rebuild runs; [`IndexError::Unavailable`]
    /// when the index fails (searches and writes stay on the old index).
    fn rebuild(&self) -> impl Future<Output = Result<RebuildReport, IndexError>> + Send;

    /// Whether the index answers (for `/readyz`).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] saying why not.
    fn ping(&self) -> impl Future<Output = Result<(), IndexError>> + Send;
}

/// Records `search_freshness_seconds{doc_type}`, the time from each applied document's
/// event (`lineage.occurred_at`) to `searchable_at`, when searches first see it. Each
/// backend calls it where it knows that moment.
pub(crate) fn record_freshness<'a>(
    applied: impl IntoIterator<Item = &'a IndexedDocument>,
    searchable_at: time::OffsetDateTime,
) {
    for document in applied {
        let IndexedDocument::Live(live) = document else {
            continue;
        };
        let Ok(occurred_at) = time::OffsetDateTime::parse(
            &live.lineage.occurred_at,
            &time::format_description::well_known::Rfc3339,
        ) else {
            continue;
        };
        let seconds = (searchable_at - occurred_at).as_seconds_f64().max(0.0);
        metrics::histogram!("search_freshness_seconds", "doc_type" => live.doc_type.as_str())
            .record(seconds);
    }
}

/// The index the configuration picked.
// One per process, cloned per consumer and request: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AnyIndex {
    /// tantivy, embedded.
    Tantivy(TantivyIndex),
    /// OpenSearch.
    #[cfg(feature = "opensearch")]
    OpenSearch(OpenSearchIndex),
}

macro_rules! delegate {
    ($self:ident, $index:ident => $call:expr) => {
        match $self {
            AnyIndex::Tantivy($index) => $call,
            #[cfg(feature = "opensearch")]
            AnyIndex::OpenSearch($index) => $call,
        }
    };
}

impl SearchIndex for AnyIndex {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<Vec<UpsertOutcome>, IndexError> {
        delegate!(self, index => index.upsert_batch(documents).await)
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        delegate!(self, index => index.get(id).await)
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        delegate!(self, index => index.search(query).await)
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        delegate!(self, index => index.refresh().await)
    }

    async fn ping(&self) -> Result<(), IndexError> {
        delegate!(self, index => index.ping().await)
    }

    async fn rebuild(&self) -> Result<RebuildReport, IndexError> {
        delegate!(self, index => index.rebuild().await)
    }
}
