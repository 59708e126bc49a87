//! [`Batching`]: a [`SearchIndex`] that gathers the writes of concurrent callers into
//! one `upsert_batch`, so the consumer's handlers (several in flight) cost one `_bulk`
//! or one tantivy commit per batch instead of one per event.
//!
//! It adds no waiting: a batch is whatever queued up while the previous ones were being
//! written (at most [`MAX_BATCH`], a few written at once), so an idle
//! service writes each event at once. Batches in parallel are safe because every
//! backend's version check is atomic per document.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{
    BatchOutcomes, IndexError, RebuildProgress, RebuildReport, SearchIndex, SearchQuery,
    SearchResults, UpsertOutcome,
};
use crate::document::IndexedDocument;

/// The most documents one batch writes.
pub const MAX_BATCH: usize = 500;

/// The most batches written at once by [`Batching::new`]: two overlap one `_bulk`'s round
/// trip with the next on OpenSearch. tantivy commits one batch at a time anyway, so a
/// second batch only splits the queue into smaller commits: the service gives it
/// [`AnyIndex::parallel_batches`](super::AnyIndex::parallel_batches), one (the benchmark's
/// `tantivy` part: 11,500 documents/s with one at a time, 7,900/s with two).
pub const PARALLEL_BATCHES: usize = 2;

type Reply = oneshot::Sender<Result<UpsertOutcome, IndexError>>;

fn writer_stopped() -> IndexError {
    IndexError::Unavailable("the index writer stopped; restart the service".into())
}

/// `index`, with its writes batched by a task of its own (which ends when the last clone
/// is dropped).
///
/// ```
/// use dovetail_search::index::{Batching, SearchIndex, TantivyIndex};
///
/// # async fn demo() -> Result<(), dovetail_search::index::IndexError> {
/// let index = Batching::new(TantivyIndex::open_in_ram()?);
/// index.ping().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Batching<I> {
    index: I,
    queue: mpsc::UnboundedSender<(IndexedDocument, Reply)>,
}

impl<I: SearchIndex + Clone + 'static> Batching<I> {
    /// Starts the writing task (on the current tokio runtime).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(index: I) -> Self {
        Self::with_parallel_batches(index, PARALLEL_BATCHES)
    }

    /// As [`new`](Self::new), writing up to `batches` batches at once (at least one).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn with_parallel_batches(index: I, batches: usize) -> Self {
        let (queue, mut pending) = mpsc::unbounded_channel::<(IndexedDocument, Reply)>();
        let writer = index.clone();
        let permits = Arc::new(Semaphore::new(batches.max(1)));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    break;
                };
                let Some(first) = pending.recv().await else {
                    break;
                };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match pending.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (documents, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                #[allow(clippy::cast_precision_loss)]
                metrics::histogram!("search_index_batch_size").record(documents.len() as f64);
                let writer = writer.clone();
                tokio::spawn(async move {
                    let count = documents.len();
                    let outcomes = writer
                        .upsert_batch(documents)
                        .await
                        .and_then(|outcomes| super::one_each(outcomes, count));
                    match outcomes {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(outcome);
                            }
                        }
                        Err(error) => {
                            for reply in replies {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Self { index, queue }
    }

    /// The index behind.
    pub fn inner(&self) -> &I {
        &self.index
    }
}

impl<I: SearchIndex + Clone + 'static> SearchIndex for Batching<I> {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<BatchOutcomes, IndexError> {
        let mut replies = Vec::with_capacity(documents.len());
        for document in documents {
            let (reply, outcome) = oneshot::channel();
            self.queue
                .send((document, reply))
                .map_err(|_| writer_stopped())?;
            replies.push(outcome);
        }
        let mut outcomes = Vec::with_capacity(replies.len());
        for reply in replies {
            outcomes.push(reply.await.map_err(|_| writer_stopped())?);
        }
        Ok(outcomes)
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        self.index.get(id).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        self.index.search(query).await
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        self.index.refresh().await
    }

    async fn ping(&self) -> Result<(), IndexError> {
        self.index.ping().await
    }

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        self.index.rebuild(progress).await
    }
}
