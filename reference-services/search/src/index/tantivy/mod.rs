//! [`TantivyIndex`]: the embedded backend, a tantivy index in a directory (by default
//! `data/search/`), no server.
//!
//! tantivy has no external versions, so this backend keeps them itself: every write takes
//! the one writer's lock, reads the version held under each id from the committed index
//! (a fast field: no stored document is read to check it),
//! writes only the newer documents (delete the id's term, add the document), commits and
//! reloads the reader before letting go of the lock. The check and the write are atomic
//! with respect to every other writer of the process. One process at a time uses the
//! directory: a [`TantivyIndex`] holds an exclusive lock on its `LOCK` file from before it
//! reads which generation is live until it is dropped, so no other process reads,
//! switches or removes generations meanwhile (tantivy's own lock covers one generation
//! only). A committed write is searchable when the call returns.
//!
//! An index written with another schema (an older version of the service) is moved into a
//! new generation with the current one when it is opened: each document is built again
//! from its source event, as a rebuild does.
//!
//! # Files
//!
//! This file holds the index's types, opening and the [`SearchIndex`] port; the rest is
//! one file per job:
//!
//! - `schema.rs`: the schema of every generation, and documents to and from tantivy;
//! - `layout.rs`: the base directory on disk (generation directories, `CURRENT`, `LOCK`);
//! - `generation.rs`: one generation open (index, reader, writer) and lookups by id;
//! - `write.rs`: writes checked against the versions held, to both generations in a
//!   rebuild;
//! - `migrate.rs`: moving every document into a new generation, at open (another schema)
//!   and in a rebuild;
//! - `search.rs`: the query of a [`SearchQuery`], its pages and highlights;
//! - `view.rs`: the consistency views, digests and entries of a bucket range.

mod generation;
mod layout;
mod migrate;
mod schema;
mod search;
mod view;
mod write;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument};

use self::schema::Fields;
use super::{
    BatchOutcomes, IndexError, RebuildProgress, RebuildReport, SearchIndex, SearchQuery,
    SearchResults,
};
use crate::document::IndexedDocument;

/// The embedded search index.
///
/// The index lives in a generation directory under the directory it is opened with
/// (`gen-000001`, ...); the file `CURRENT` names the live one. [`rebuild`] writes a new
/// generation and switches `CURRENT` atomically. The index holds a lock on the file
/// `LOCK` there while it is open: a second open of the directory, from this process or
/// another, is refused until it is dropped.
///
/// [`rebuild`]: SearchIndex::rebuild
///
/// ```
/// use dovetail_search::index::TantivyIndex;
///
/// let dir = std::env::temp_dir().join(format!("search-doc-{}", std::process::id()));
/// let index = TantivyIndex::open(&dir)?;
/// assert!(dir.join("CURRENT").exists());
/// # drop(index); std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), dovetail_search::index::IndexError>(())
/// ```
#[derive(Clone)]
pub struct TantivyIndex {
    shared: Arc<Shared>,
}

/// What every clone of a [`TantivyIndex`] shares.
struct Shared {
    /// The directory of the generations; `None` in memory.
    base: Option<PathBuf>,
    /// The locked `LOCK` file of `base`, held for the life of the index: no other process
    /// reads `CURRENT`, switches it or removes a generation meanwhile.
    _lock: Option<std::fs::File>,
    state: RwLock<State>,
    rebuilding: Mutex<()>,
}

/// The generations in use: the live one, and the one a rebuild writes.
struct State {
    current: Arc<Inner>,
    generation: u32,
    /// The generation a rebuild writes, which every write goes to as well meanwhile.
    shadow: Option<Arc<Inner>>,
}

/// One generation open: its tantivy index, reader and writer.
struct Inner {
    index: Index,
    reader: IndexReader,
    /// Set when a commit could not be reloaded: the reader is behind the index, so the
    /// next write reloads it before it checks any version against it.
    reader_behind: AtomicBool,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    fields: Fields,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex")
            .field("base", &self.shared.base)
            .finish_non_exhaustive()
    }
}

/// Turns a tantivy error into [`IndexError::Unavailable`], saying `what` failed.
fn unavailable(what: &str) -> impl Fn(tantivy::TantivyError) -> IndexError + '_ {
    move |error| IndexError::Unavailable(format!("tantivy: {what}: {error}"))
}

/// Turns an I/O error into [`IndexError::Unavailable`], saying `what` failed.
fn io_error(what: String) -> impl FnOnce(std::io::Error) -> IndexError {
    move |error| IndexError::Unavailable(format!("{what}: {error}"))
}

/// The error of a lock a panicking writer left poisoned.
fn poisoned() -> IndexError {
    IndexError::Unavailable("an index writer panicked; restart the service".into())
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating the directory and the index when missing, and
    /// holds the directory's lock until the index is dropped.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the directory cannot be created or opened, or
    /// another process has it open (the lock on its `LOCK` file: one process per
    /// directory); [`IndexError::Corrupt`] when it holds an index this service did not
    /// write, or `CURRENT` names a generation that is not there (nothing is removed then;
    /// the message says what to do).
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir).map_err(io_error(format!(
            "cannot create the index directory {}",
            dir.display()
        )))?;
        // Before CURRENT is read: from here until the index is dropped, no other process
        // switches or removes a generation.
        let lock = layout::lock_directory(dir)?;
        let named = layout::read_pointer(dir)?;
        let generation = named.unwrap_or(1);
        let live_dir = dir.join(layout::generation_name(generation));
        if named.is_some() && !layout::holds_index(&live_dir)? {
            // Creating an empty index there would lose the documents, and removing the
            // other generations might remove the one that holds them.
            return Err(layout::missing_generation(dir, generation));
        }
        let live = generation::open_index(&live_dir)?;
        if named.is_none() {
            // A new index: CURRENT names its generation once that exists, never before.
            layout::switch_pointer(dir, generation)?;
        }
        let (current, generation) = if live.schema() == schema::schema().0 {
            (Inner::from_index(live)?, generation)
        } else {
            migrate::migrate(dir, &live, generation)?
        };
        // This process holds the directory's lock, so no other one uses it: any other
        // generation is what a stopped rebuild left, or an old one a crash kept.
        layout::remove_other_generations(dir, generation);
        Ok(Self::with(
            Some(dir.to_owned()),
            Some(lock),
            current,
            generation,
        ))
    }

    /// An index in memory (tests, examples).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when tantivy cannot start a writer.
    pub fn open_in_ram() -> Result<Self, IndexError> {
        Ok(Self::with(None, None, Inner::in_ram()?, 1))
    }

    /// The index of `current`, generation `generation` of `base` (locked by `lock`).
    fn with(
        base: Option<PathBuf>,
        lock: Option<std::fs::File>,
        current: Inner,
        generation: u32,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                base,
                _lock: lock,
                state: RwLock::new(State {
                    current: Arc::new(current),
                    generation,
                    shadow: None,
                }),
                rebuilding: Mutex::new(()),
            }),
        }
    }

    /// Runs `work` on the shared index in a blocking task (tantivy's I/O blocks).
    async fn blocking<T, F>(&self, work: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T, IndexError> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || work(&shared))
            .await
            .map_err(|error| IndexError::Unavailable(format!("an index task failed: {error}")))?
    }
}

impl Shared {
    /// The live generation.
    fn current(&self) -> Result<Arc<Inner>, IndexError> {
        Ok(Arc::clone(
            &self.state.read().map_err(|_| poisoned())?.current,
        ))
    }
}

impl SearchIndex for TantivyIndex {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<BatchOutcomes, IndexError> {
        self.blocking(move |shared| shared.write(&documents)).await
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        let id = id.to_owned();
        self.blocking(move |shared| {
            let current = shared.current()?;
            current.held(&current.reader.searcher(), &id)
        })
        .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        let query = query.clone();
        self.blocking(move |shared| shared.current()?.search(&query))
            .await
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        // Every write commits and reloads before it returns.
        Ok(())
    }

    async fn ping(&self) -> Result<(), IndexError> {
        use std::sync::TryLockError;

        // Never waits for a commit or a rebuild's switch: a lock held means the index is
        // at work, which is healthy; only a poisoned one (a writer panicked) is not.
        let current = match self.shared.state.try_read() {
            Ok(state) => Arc::clone(&state.current),
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
        };
        match current.writer.try_lock() {
            Ok(_) | Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Poisoned(_)) => return Err(poisoned()),
        }
        // The last committed state can be searched (an atomic load, no I/O).
        let _searcher = current.reader.searcher();
        Ok(())
    }

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        let progress = progress.clone();
        self.blocking(move |shared| shared.rebuild(&progress)).await
    }
}
