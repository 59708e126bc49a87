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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use time::Date;

use crate::document::{DocumentType, IndexedDocument, SearchDocument, Tombstone};

pub mod batch;
#[cfg(feature = "opensearch")]
pub mod opensearch;
pub mod tantivy;
pub mod view;

pub use self::batch::Batching;
#[cfg(feature = "opensearch")]
pub use self::opensearch::OpenSearchIndex;
pub use self::tantivy::TantivyIndex;
pub use self::view::{ConsistencyIndex, IndexView};

/// The outcome of each document of a batch, in the batch's order: one document the index
/// refuses does not fail the others.
pub type BatchOutcomes = Vec<Result<UpsertOutcome, IndexError>>;

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
///
/// Ties go in a fixed order of the ids, which differs by backend: by id on OpenSearch,
/// by a stable hash of the id on tantivy. Pages continue after the previous page's last
/// position ([`SearchQuery::after`]): while nothing is written, every document comes
/// once. By date, a document that did not change keeps its position, so it is never
/// repeated or skipped whatever else is written; by relevance, scores depend on
/// statistics of the whole index (how many documents hold a word, how long they are),
/// so a write between two pages can move unchanged documents across the position, and
/// one may come twice or not at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortOrder {
    /// Best match first (all documents score alike without a text query), ties in the
    /// backend's order of ids.
    #[default]
    Relevance,
    /// By [`SearchDocument::date`], oldest first, ties in the backend's order of ids.
    DateAscending,
    /// By [`SearchDocument::date`], newest first, ties in the backend's order of ids.
    DateDescending,
}

/// A search, already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Who asks: enforced inside the backend's query.
    pub scope: Scope,
    /// Words every result must contain (in its text), if any. A word of 40 bytes or more
    /// is one no document can hold (tantivy drops such words when it indexes), so a text
    /// with one matches nothing, on both backends; blank text is no text query.
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
    /// The documents and tombstones copied from the old index (live writes during the
    /// rebuild not counted; OpenSearch's second copy of late writes counted again).
    pub documents: u64,
    /// Of those, the documents built again from their source event with the current code
    /// (the others, tombstones and documents without a source event, copied as stored).
    pub rederived: u64,
}

/// The steps of a rebuild, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebuildPhase {
    /// Taking the rebuild's lease (one at a time, across every instance) and creating the new
    /// index.
    Starting,
    /// Waiting until every instance writes to both indices (OpenSearch).
    WaitingForWriters,
    /// Copying the old index into the new one by version, documents re-derived.
    Copying,
    /// Switching searches and writes to the new index in one step.
    Switching,
    /// Closing the old index to writes and copying what reached it around the switch
    /// (OpenSearch).
    CopyingLateWrites,
    /// Deleting the old index.
    DroppingOld,
}

/// How far a rebuild is: the rebuild reports into it, whoever started it watches it.
/// Clones share one state.
#[derive(Debug, Clone)]
pub struct RebuildProgress {
    phase: Arc<tokio::sync::watch::Sender<RebuildPhase>>,
    copied: Arc<AtomicU64>,
}

impl Default for RebuildProgress {
    fn default() -> Self {
        Self {
            phase: Arc::new(tokio::sync::watch::Sender::new(RebuildPhase::Starting)),
            copied: Arc::default(),
        }
    }
}

impl RebuildProgress {
    /// The step the rebuild is at.
    pub fn phase(&self) -> RebuildPhase {
        *self.phase.borrow()
    }

    /// Documents copied so far.
    pub fn documents_copied(&self) -> u64 {
        self.copied.load(Ordering::Relaxed)
    }

    /// Returns once the rebuild is past [`RebuildPhase::Starting`]: it holds the lease
    /// and the new index exists. Never returns for a rebuild that fails before; race it
    /// with the rebuild itself.
    pub async fn leased(&self) {
        let mut phases = self.phase.subscribe();
        let _ = phases
            .wait_for(|phase| *phase != RebuildPhase::Starting)
            .await;
    }

    /// Reports that the rebuild is at `phase` (a [`SearchIndex`] implementation calls it;
    /// leaving [`RebuildPhase::Starting`] says the rebuild holds its lease).
    pub fn enter(&self, phase: RebuildPhase) {
        tracing::info!(?phase, "rebuild");
        self.phase.send_replace(phase);
    }

    /// Reports `documents` more copied (a [`SearchIndex`] implementation calls it).
    pub fn copied(&self, documents: u64) {
        self.copied.fetch_add(documents, Ordering::Relaxed);
    }
}

/// Reads a page of the stored JSON of the index a rebuild copies
/// ([`IndexedDocument::for_rebuild`]): each document built again from its source event
/// when the current code can, read as stored otherwise (so a document stored by an older
/// version of the service, which the current one can no longer read, is rebuilt from its
/// event); how many were built again.
///
/// # Errors
/// [`IndexError::Corrupt`], starting with `origin` (the index or directory read), for
/// JSON that is neither a document the current code can build again or read, nor a
/// tombstone.
pub(crate) fn rederive_stored(
    page: impl IntoIterator<Item = serde_json::Value>,
    origin: &str,
) -> Result<(Vec<IndexedDocument>, u64), IndexError> {
    let mut rederived = 0;
    let documents = page
        .into_iter()
        .map(|stored| {
            let (document, fresh) = IndexedDocument::for_rebuild(stored)
                .map_err(|error| IndexError::Corrupt(format!("{origin}: {error}")))?;
            rederived += u64::from(fresh);
            Ok(document)
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    Ok((documents, rederived))
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
    /// The index holds something this service cannot read.
    ///
    /// ### Handling
    /// Not retriable. A document written by an older version of the service is read
    /// again by a rebuild (which builds it again from its source event); anything else
    /// was not written by this service: remove it.
    #[error("the search index holds an unreadable document: {0}")]
    Corrupt(String),
    /// The index refused one document for good (a mapping conflict, a document too
    /// large): writing it again would fail again.
    ///
    /// ### Handling
    /// Not retriable: the consumer sends the event to the dead letters with this reason;
    /// the other documents of its batch are written.
    #[error("the search index refused a document: {0}")]
    Refused(String),
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
    /// Writes `documents` where each is newer than what is held; the outcome of each, in
    /// the same order (exactly one per document). Atomic per document against concurrent
    /// writers: of two writes of one id, the higher version stays whatever the order they
    /// arrive in. A document the index refuses ([`IndexError::Refused`]) or cannot check
    /// ([`IndexError::Corrupt`]) fails alone.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index failed as a whole; some of the documents
    /// may be written (writing them again is harmless).
    fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> impl Future<Output = Result<BatchOutcomes, IndexError>> + Send;

    /// Writes one document unless the index holds its version or a higher one.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the index failed; [`IndexError::Refused`] or
    /// [`IndexError::Corrupt`] for this document.
    fn upsert(
        &self,
        document: SearchDocument,
    ) -> impl Future<Output = Result<UpsertOutcome, IndexError>> + Send {
        async move {
            only(
                self.upsert_batch(vec![IndexedDocument::Live(document)])
                    .await?,
            )
        }
    }

    /// Deletes a document, keeping a tombstone at the deletion's version, unless the index
    /// holds that version or a higher one.
    ///
    /// # Errors
    /// As [`upsert`](Self::upsert).
    fn delete(
        &self,
        tombstone: Tombstone,
    ) -> impl Future<Output = Result<UpsertOutcome, IndexError>> + Send {
        async move {
            only(
                self.upsert_batch(vec![IndexedDocument::Deleted(tombstone)])
                    .await?,
            )
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
    /// atomically, while writes go on, reporting its steps into `progress`.
    ///
    /// Every document is built again from the source event it holds, with the current
    /// code and mapping ([`IndexedDocument::for_rebuild`]); tombstones and documents
    /// without a source event are copied as stored. From the moment the new index exists
    /// every write goes to both (on OpenSearch, every instance's: each looks for a
    /// rebuild under way at least every `opensearch::REBUILD_DISCOVERY`,
    /// and the rebuild waits that long before copying); the copy is by version, so it
    /// never overwrites a newer live write; the switch (an alias swap on OpenSearch, the
    /// `CURRENT` generation file on tantivy) happens in one step. No document is lost or
    /// moves back to an older version across it. The old index is deleted.
    ///
    /// One rebuild at a time: on OpenSearch across every instance (the new index's
    /// rebuild alias is the lease; a lease whose instance stopped heartbeating is taken
    /// over).
    ///
    /// # Errors
    /// [`IndexError::Conflict`] while another rebuild runs; [`IndexError::Unavailable`]
    /// when the index fails (before the switch, searches and writes stay on the old index
    /// and the new one is removed).
    fn rebuild(
        &self,
        progress: &RebuildProgress,
    ) -> impl Future<Output = Result<RebuildReport, IndexError>> + Send;

    /// Whether the index answers (for `/readyz`).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] saying why not.
    fn ping(&self) -> impl Future<Output = Result<(), IndexError>> + Send;
}

/// The one outcome of a batch of one document.
fn only(outcomes: BatchOutcomes) -> Result<UpsertOutcome, IndexError> {
    let count = outcomes.len();
    let mut outcomes = outcomes.into_iter();
    match (outcomes.next(), count) {
        (Some(outcome), 1) => outcome,
        _ => Err(IndexError::Unavailable(format!(
            "the index answered {count} outcomes for one document"
        ))),
    }
}

/// Checks that a backend answered one outcome per document.
///
/// # Errors
/// [`IndexError::Unavailable`] saying how many it answered.
pub(crate) fn one_each<T>(outcomes: Vec<T>, documents: usize) -> Result<Vec<T>, IndexError> {
    if outcomes.len() == documents {
        Ok(outcomes)
    } else {
        Err(IndexError::Unavailable(format!(
            "the index answered {} outcomes for {documents} documents",
            outcomes.len()
        )))
    }
}

/// An applied document, as the freshness metric needs it: its type and when its event
/// occurred.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    doc_type: DocumentType,
    occurred_at: time::OffsetDateTime,
}

impl Written {
    /// The freshness facts of `document` when its write was applied (tombstones and
    /// stale writes have none).
    pub(crate) fn of(
        document: &IndexedDocument,
        outcome: &Result<UpsertOutcome, IndexError>,
    ) -> Option<Self> {
        let (IndexedDocument::Live(live), Ok(UpsertOutcome::Applied)) = (document, outcome) else {
            return None;
        };
        let occurred_at = time::OffsetDateTime::parse(
            &live.lineage.occurred_at,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        Some(Self {
            doc_type: live.doc_type,
            occurred_at,
        })
    }
}

/// Records `search_freshness_seconds{doc_type}`, the time from each applied document's
/// event to `searchable_at`, when searches first see it. Each backend calls it where it
/// knows that moment.
pub(crate) fn record_freshness(
    written: impl IntoIterator<Item = Written>,
    searchable_at: time::OffsetDateTime,
) {
    for Written {
        doc_type,
        occurred_at,
    } in written
    {
        let seconds = (searchable_at - occurred_at).as_seconds_f64().max(0.0);
        metrics::histogram!("search_freshness_seconds", "doc_type" => doc_type.as_str())
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

impl AnyIndex {
    /// How many batches [`Batching`] should write at once on this backend: one on
    /// tantivy (its commits are serial; more batches only make them smaller),
    /// [`batch::PARALLEL_BATCHES`] on OpenSearch.
    pub fn parallel_batches(&self) -> usize {
        match self {
            Self::Tantivy(_) => 1,
            #[cfg(feature = "opensearch")]
            Self::OpenSearch(_) => batch::PARALLEL_BATCHES,
        }
    }
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
    ) -> Result<BatchOutcomes, IndexError> {
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

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        delegate!(self, index => index.rebuild(progress).await)
    }
}
