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

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use super::{
    BatchOutcomes, IndexError, RebuildPhase, RebuildProgress, RebuildReport, SearchHit,
    SearchIndex, SearchQuery, SearchResults, SortOrder, UpsertOutcome, Written,
};
use crate::document::IndexedDocument;

/// The writer's memory budget: tantivy's minimum is 15 MB per thread.
const WRITER_MEMORY: usize = 30_000_000;

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    doc_type: Field,
    customer_id: Field,
    status: Field,
    deleted: Field,
    text: Field,
    date: Field,
    tiebreak: Field,
    version: Field,
    stored: Field,
}

/// The name of the field holding each document's stored JSON, in every schema so far.
const STORED_FIELD: &str = "stored";

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING),
        doc_type: builder.add_text_field("doc_type", STRING),
        customer_id: builder.add_text_field("customer_id", STRING),
        status: builder.add_text_field("status", STRING),
        deleted: builder.add_text_field("deleted", STRING),
        text: builder.add_text_field("text", TEXT | STORED),
        date: builder.add_i64_field("date", INDEXED | FAST),
        tiebreak: builder.add_u64_field("tiebreak", FAST),
        version: builder.add_u64_field("version", FAST),
        stored: builder.add_text_field(STORED_FIELD, STORED),
    };
    (builder.build(), fields)
}

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

struct Shared {
    /// The directory of the generations; `None` in memory.
    base: Option<PathBuf>,
    /// The locked `LOCK` file of `base`, held for the life of the index: no other process
    /// reads `CURRENT`, switches it or removes a generation meanwhile.
    _lock: Option<std::fs::File>,
    state: RwLock<State>,
    rebuilding: Mutex<()>,
}

struct State {
    current: Arc<Inner>,
    generation: u32,
    /// The generation a rebuild writes, which every write goes to as well meanwhile.
    shadow: Option<Arc<Inner>>,
}

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

fn unavailable(what: &str) -> impl Fn(tantivy::TantivyError) -> IndexError + '_ {
    move |error| IndexError::Unavailable(format!("tantivy: {what}: {error}"))
}

const POINTER: &str = "CURRENT";

/// The file of the base directory whose lock a [`TantivyIndex`] holds while it is open.
const LOCK: &str = "LOCK";

fn generation_name(generation: u32) -> String {
    format!("gen-{generation:06}")
}

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> IndexError {
    move |error| IndexError::Unavailable(format!("{what}: {error}"))
}

/// Takes the lock of the base directory `dir` (its `LOCK` file, created when missing),
/// held as long as the file returned is open.
///
/// # Errors
/// [`IndexError::Unavailable`] naming the directory when another process (or another
/// open index of this one) holds it, or when the file cannot be opened or locked.
fn lock_directory(dir: &Path) -> Result<std::fs::File, IndexError> {
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(format!(
            "cannot open the lock file {}",
            path.display()
        )))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(IndexError::Unavailable(format!(
            "the index directory {} is in use by another process (it holds {}): one process \
             at a time opens a directory; stop the other one, or give this one a directory of \
             its own (index.tantivy_path)",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(io_error(format!("cannot lock {}", path.display()))(error))
        }
    }
}

/// Names `generation` in `base/CURRENT`, atomically (a new file, synced, renamed over the
/// old): on `Ok` the switch is made, on `Err` it is not. It survives a power loss once
/// `base` is synced ([`sync_directory`]).
fn write_pointer(base: &Path, generation: u32) -> Result<(), IndexError> {
    let temporary = base.join(format!("{POINTER}.tmp"));
    let what = format!("cannot write {}", temporary.display());
    let mut file = std::fs::File::create(&temporary).map_err(io_error(what.clone()))?;
    file.write_all(generation_name(generation).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(what))?;
    std::fs::rename(&temporary, base.join(POINTER)).map_err(io_error(format!(
        "cannot switch {} to the new generation",
        base.join(POINTER).display()
    )))
}

/// [`write_pointer`], then [`sync_directory`].
fn switch_pointer(base: &Path, generation: u32) -> Result<(), IndexError> {
    write_pointer(base, generation)?;
    sync_directory(base)
}

/// Syncs the directory `dir` itself, so that a rename in it survives a power loss.
#[cfg(unix)]
fn sync_directory(dir: &Path) -> Result<(), IndexError> {
    std::fs::File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error(format!(
            "cannot sync the directory {}",
            dir.display()
        )))
}

/// Directories cannot be opened to be synced here: the rename is as durable as the file
/// system makes it.
#[cfg(not(unix))]
fn sync_directory(_dir: &Path) -> Result<(), IndexError> {
    Ok(())
}

/// The generation directories of `base`, sorted (for messages).
fn generations_in(base: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("gen-"))
        .collect();
    names.sort();
    names
}

/// Whether `dir` holds a tantivy index.
fn holds_index(dir: &Path) -> Result<bool, IndexError> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let cannot_open = |error: &dyn std::fmt::Display| {
        IndexError::Unavailable(format!(
            "cannot open the tantivy index in {}: {error}",
            dir.display()
        ))
    };
    let directory = MmapDirectory::open(dir).map_err(|error| cannot_open(&error))?;
    Index::exists(&directory).map_err(|error| cannot_open(&error))
}

/// Removes the generation directories of `base` other than `live`: left by a rebuild that
/// stopped before its switch, or an old generation a crash kept.
fn remove_other_generations(base: &Path, live: u32) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("gen-") && name != generation_name(live) {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(generation = name, %error, "cannot remove what a stopped rebuild left");
            } else {
                tracing::info!(generation = name, "removed what a stopped rebuild left");
            }
        }
    }
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
        let lock = lock_directory(dir)?;
        let pointer = dir.join(POINTER);
        let named = match std::fs::read_to_string(&pointer) {
            Ok(text) => Some(
                text.trim()
                    .strip_prefix("gen-")
                    .and_then(|number| number.parse::<u32>().ok())
                    .ok_or_else(|| {
                        IndexError::Corrupt(format!(
                            "{} holds {text:?}, not a generation such as gen-000001; name the \
                             live generation directory there",
                            pointer.display()
                        ))
                    })?,
            ),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(io_error(format!("cannot read {}", pointer.display()))(
                    error,
                ));
            }
        };
        let generation = named.unwrap_or(1);
        let live_dir = dir.join(generation_name(generation));
        if named.is_some() && !holds_index(&live_dir)? {
            // Creating an empty index there would lose the documents, and removing the
            // other generations might remove the one that holds them.
            let present = generations_in(dir);
            return Err(IndexError::Corrupt(format!(
                "{} names {}, but {} does not exist or holds no index (moved or removed by \
                 hand?); nothing was changed. Put it back, or write the name of the \
                 generation that holds the index into {} (the generations there: {}); with \
                 none, remove {} to start an empty index and replay the events",
                pointer.display(),
                generation_name(generation),
                live_dir.display(),
                pointer.display(),
                if present.is_empty() {
                    "none".to_owned()
                } else {
                    present.join(", ")
                },
                pointer.display(),
            )));
        }
        let live = open_index(&live_dir)?;
        if named.is_none() {
            // A new index: CURRENT names its generation once that exists, never before.
            switch_pointer(dir, generation)?;
        }
        let (current, generation) = if live.schema() == schema().0 {
            (Inner::from_index(live)?, generation)
        } else {
            migrate(dir, &live, generation)?
        };
        // This process holds the directory's lock, so no other one uses it: any other
        // generation is what a stopped rebuild left, or an old one a crash kept.
        remove_other_generations(dir, generation);
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

fn poisoned() -> IndexError {
    IndexError::Unavailable("an index writer panicked; restart the service".into())
}

impl Shared {
    fn current(&self) -> Result<Arc<Inner>, IndexError> {
        Ok(Arc::clone(
            &self.state.read().map_err(|_| poisoned())?.current,
        ))
    }

    fn write(&self, documents: &[IndexedDocument]) -> Result<BatchOutcomes, IndexError> {
        // Held across the write: a rebuild's switch waits for the writes in flight.
        let state = self.state.read().map_err(|_| poisoned())?;
        let mut outcomes = state.current.write(documents)?;
        // Committed and reloaded: searchable now.
        super::record_freshness(
            documents
                .iter()
                .zip(&outcomes)
                .filter_map(|(document, outcome)| Written::of(document, outcome)),
            time::OffsetDateTime::now_utc(),
        );
        if let Some(shadow) = &state.shadow {
            // A document the new generation did not take is not done: its event comes
            // again.
            for (outcome, shadow_outcome) in outcomes.iter_mut().zip(shadow.write(documents)?) {
                if let (Ok(_), Err(error)) = (&outcome, shadow_outcome) {
                    *outcome = Err(error);
                }
            }
        }
        Ok(outcomes)
    }

    fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        let _one = self.rebuilding.try_lock().map_err(|_| {
            IndexError::Conflict("a rebuild is under way already; wait for it to finish".into())
        })?;
        let (old_generation, current) = {
            let state = self.state.read().map_err(|_| poisoned())?;
            (state.generation, Arc::clone(&state.current))
        };
        let generation = old_generation + 1;
        let new = Arc::new(match &self.base {
            Some(base) => {
                let dir = base.join(generation_name(generation));
                // What a failed rebuild may have left.
                let _ = std::fs::remove_dir_all(&dir);
                Inner::open(&dir)?
            }
            None => Inner::in_ram()?,
        });
        // From here on every write goes to both; the writes before are committed.
        self.state.write().map_err(|_| poisoned())?.shadow = Some(Arc::clone(&new));
        progress.enter(RebuildPhase::Copying);
        let origin = generation_name(old_generation);
        let (copied, rederived) = match current.copy_into(&new, &origin, progress) {
            Ok(copied) => copied,
            Err(error) => {
                self.state.write().map_err(|_| poisoned())?.shadow = None;
                drop(new);
                if let Some(base) = &self.base {
                    let _ = std::fs::remove_dir_all(base.join(generation_name(generation)));
                }
                return Err(error);
            }
        };
        progress.enter(RebuildPhase::Switching);
        let old = {
            let mut state = self.state.write().map_err(|_| poisoned())?;
            state.shadow = None;
            if let Some(base) = &self.base {
                write_pointer(base, generation)?;
            }
            state.generation = generation;
            std::mem::replace(&mut state.current, new)
        };
        drop((old, current));
        // Switched: CURRENT names the new generation. Until the directory is synced, a
        // power loss may bring the old name back, so the old generation stays until then.
        let durable = self.base.as_deref().is_none_or(|base| {
            sync_directory(base)
                .map_err(|error| {
                    tracing::warn!(
                        %error,
                        kept = %origin,
                        "the switch may not survive a power loss; the old generation is \
                         kept until the next open removes whichever CURRENT does not name"
                    );
                })
                .is_ok()
        });
        progress.enter(RebuildPhase::DroppingOld);
        if let Some(base) = &self.base
            && durable
        {
            // Searches in flight may still read it: Unix keeps the files until they finish.
            let _ = std::fs::remove_dir_all(base.join(&origin));
        }
        Ok(RebuildReport {
            from: generation_name(old_generation),
            to: generation_name(generation),
            documents: copied,
            rederived,
        })
    }
}

/// The position after which the next page starts: the last hit's sort key.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct After {
    key: f64,
    tiebreak: u64,
}

/// A stable number per id for ties: FNV-1a, the same on every run and platform.
fn tiebreak_of(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Opens the index in `dir` whatever its schema, or creates one with the current schema.
fn open_index(dir: &Path) -> Result<Index, IndexError> {
    std::fs::create_dir_all(dir).map_err(io_error(format!(
        "cannot create the index directory {}",
        dir.display()
    )))?;
    let cannot_open = |error: &dyn std::fmt::Display| {
        IndexError::Unavailable(format!(
            "cannot open the tantivy index in {}: {error}",
            dir.display()
        ))
    };
    let directory = MmapDirectory::open(dir).map_err(|error| cannot_open(&error))?;
    let exists = Index::exists(&directory).map_err(|error| cannot_open(&error))?;
    let opened = if exists {
        Index::open(directory)
    } else {
        Index::create(directory, schema().0, tantivy::IndexSettings::default())
    };
    opened.map_err(|error| cannot_open(&error))
}

/// Moves `old`, the live generation `generation` of `base` written with another schema,
/// into generation `generation + 1` with the current one, each document built again from
/// its source event, and names it in `CURRENT`.
fn migrate(base: &Path, old: &Index, generation: u32) -> Result<(Inner, u32), IndexError> {
    let old_dir = base.join(generation_name(generation));
    let stored = old.schema().get_field(STORED_FIELD).map_err(|_| {
        IndexError::Corrupt(format!(
            "{} holds a tantivy index this service did not write (no `{STORED_FIELD}` field); \
             move it away and replay the events",
            old_dir.display()
        ))
    })?;
    // Holds the old generation's lock: no other process may use it meanwhile.
    let _lock: IndexWriter<TantivyDocument> = old
        .writer_with_num_threads(1, WRITER_MEMORY)
        .map_err(unavailable(
            "cannot lock the index to migrate it (is another process using this index directory?)",
        ))?;
    let searcher = old
        .reader()
        .map_err(unavailable("cannot read the index to migrate"))?
        .searcher();
    let next = generation + 1;
    let next_dir = base.join(generation_name(next));
    let _ = std::fs::remove_dir_all(&next_dir);
    let new = Inner::open(&next_dir)?;
    let origin = old_dir.display().to_string();
    let (mut documents, mut rederived) = (0, 0);
    for_each_page(&searcher, stored, |page| {
        let (page, fresh) = super::rederive_stored(page, &origin)?;
        for outcome in new.write(&page)? {
            outcome?;
        }
        documents += page.len();
        rederived += fresh;
        Ok(())
    })?;
    switch_pointer(base, next)?;
    tracing::info!(
        from = %old_dir.display(),
        documents,
        rederived,
        "moved the search index to the current schema"
    );
    Ok((new, next))
}

/// The stored JSON of the document at `address`.
fn stored_json(
    searcher: &Searcher,
    stored: Field,
    address: DocAddress,
) -> Result<serde_json::Value, IndexError> {
    let document: TantivyDocument = searcher
        .doc(address)
        .map_err(unavailable("cannot read a stored document"))?;
    let json = document
        .get_first(stored)
        .and_then(|value| value.as_str())
        .ok_or_else(|| IndexError::Corrupt("a document without its stored JSON".into()))?;
    serde_json::from_str(json).map_err(|error| IndexError::Corrupt(error.to_string()))
}

/// Reads the stored JSON of the document at `address`.
fn read_stored(
    searcher: &Searcher,
    stored: Field,
    address: DocAddress,
) -> Result<IndexedDocument, IndexError> {
    IndexedDocument::from_stored_json(stored_json(searcher, stored, address)?)
        .map_err(|error| IndexError::Corrupt(error.to_string()))
}

/// Calls `each` with the stored JSON of every document and tombstone `searcher` sees,
/// 500 at a time (read for a rebuild with [`super::rederive_stored`]).
fn for_each_page(
    searcher: &Searcher,
    stored: Field,
    mut each: impl FnMut(Vec<serde_json::Value>) -> Result<(), IndexError>,
) -> Result<(), IndexError> {
    const PAGE: usize = 500;
    let mut page = Vec::with_capacity(PAGE);
    for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
        let ordinal = u32::try_from(ordinal)
            .map_err(|_| IndexError::Corrupt("more segments than tantivy addresses".into()))?;
        for doc in segment.doc_ids_alive() {
            page.push(stored_json(
                searcher,
                stored,
                DocAddress::new(ordinal, doc),
            )?);
            if page.len() == PAGE {
                each(std::mem::take(&mut page))?;
            }
        }
    }
    if page.is_empty() { Ok(()) } else { each(page) }
}

impl Inner {
    /// Opens or creates the index in `dir`, which must have the current schema.
    fn open(dir: &Path) -> Result<Self, IndexError> {
        let index = open_index(dir)?;
        if index.schema() != schema().0 {
            return Err(IndexError::Corrupt(format!(
                "{} holds an index of another schema; remove it",
                dir.display()
            )));
        }
        Self::from_index(index)
    }

    fn in_ram() -> Result<Self, IndexError> {
        let (schema, _) = schema();
        Self::from_index(Index::create_in_ram(schema))
    }

    fn from_index(index: Index) -> Result<Self, IndexError> {
        let (_, fields) = schema();
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(unavailable(
                "cannot start the index writer (is another process using this index directory?)",
            ))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(unavailable("cannot open a reader"))?;
        Ok(Self {
            index,
            reader,
            reader_behind: AtomicBool::new(false),
            writer: Mutex::new(writer),
            fields,
        })
    }

    /// Writes every document and tombstone of this index (`origin` in messages) into
    /// `target` by version, documents built again from their source events; how many
    /// were copied, and of them re-derived.
    fn copy_into(
        &self,
        target: &Self,
        origin: &str,
        progress: &RebuildProgress,
    ) -> Result<(u64, u64), IndexError> {
        let (mut copied, mut rederived) = (0, 0);
        for_each_page(&self.reader.searcher(), self.fields.stored, |page| {
            let (page, fresh) = super::rederive_stored(page, origin)?;
            for outcome in target.write(&page)? {
                outcome?;
            }
            copied += page.len() as u64;
            rederived += fresh;
            progress.copied(page.len() as u64);
            Ok(())
        })?;
        Ok((copied, rederived))
    }

    /// Where the document (or tombstone) under `id` is, if anywhere.
    fn address_of(&self, searcher: &Searcher, id: &str) -> Result<Option<DocAddress>, IndexError> {
        let query = TermQuery::new(
            Term::from_field_text(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let found = searcher
            .search(&query, &TopDocs::with_limit(1).order_by_score())
            .map_err(unavailable("cannot look a document up"))?;
        Ok(found.first().map(|(_, address)| *address))
    }

    fn held(&self, searcher: &Searcher, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        self.address_of(searcher, id)?
            .map(|address| self.read(searcher, address))
            .transpose()
    }

    fn read(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<IndexedDocument, IndexError> {
        read_stored(searcher, self.fields.stored, address)
    }

    /// The version held under `id`, from the fast field: no stored document is read.
    fn held_version(&self, searcher: &Searcher, id: &str) -> Result<Option<u64>, IndexError> {
        let Some(address) = self.address_of(searcher, id)? else {
            return Ok(None);
        };
        let versions = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("version")
            .map_err(unavailable("cannot read the versions"))?;
        versions
            .first(address.doc_id)
            .map(Some)
            .ok_or_else(|| IndexError::Corrupt(format!("{id} is held without a version")))
    }

    fn tantivy_document(&self, indexed: &IndexedDocument) -> TantivyDocument {
        let fields = self.fields;
        let mut document = TantivyDocument::default();
        let stored = indexed.to_stored_json().to_string();
        match indexed {
            IndexedDocument::Live(live) => {
                document.add_text(fields.id, &live.id);
                document.add_text(fields.doc_type, live.doc_type.as_str());
                document.add_text(fields.customer_id, &live.customer_id);
                document.add_text(fields.status, &live.status);
                document.add_text(fields.deleted, "false");
                document.add_text(fields.text, &live.text);
                document.add_i64(fields.date, i64::from(live.date.to_julian_day()));
                document.add_u64(fields.tiebreak, tiebreak_of(&live.id));
            }
            IndexedDocument::Deleted(tombstone) => {
                document.add_text(fields.id, &tombstone.id);
                document.add_text(fields.deleted, "true");
                document.add_i64(fields.date, 0);
                document.add_u64(fields.tiebreak, tiebreak_of(&tombstone.id));
            }
        }
        document.add_u64(fields.version, indexed.version());
        document.add_text(fields.stored, stored);
        document
    }

    fn write(&self, documents: &[IndexedDocument]) -> Result<BatchOutcomes, IndexError> {
        let mut writer = self.writer.lock().map_err(|_| {
            IndexError::Unavailable("a writer panicked; restart the service".into())
        })?;
        if self.reader_behind.load(Ordering::Acquire) {
            self.reader.reload().map_err(unavailable(
                "cannot reload the reader, so the versions held cannot be checked",
            ))?;
            self.reader_behind.store(false, Ordering::Release);
        }
        let searcher = self.reader.searcher();
        // Versions written by this batch, not committed yet.
        let mut pending: HashMap<&str, u64> = HashMap::new();
        let mut outcomes = Vec::with_capacity(documents.len());
        for document in documents {
            let id = document.id();
            let held = match pending.get(id) {
                Some(version) => Some(*version),
                None => match self.held_version(&searcher, id) {
                    Ok(held) => held,
                    Err(error) => {
                        outcomes.push(Err(error));
                        continue;
                    }
                },
            };
            if held.is_some_and(|held| held >= document.version()) {
                outcomes.push(Ok(UpsertOutcome::Stale));
                continue;
            }
            writer.delete_term(Term::from_field_text(self.fields.id, id));
            if let Err(error) = writer.add_document(self.tantivy_document(document)) {
                // Nothing of the batch is kept: its operations queued so far would
                // otherwise be committed by the next batch, unchecked.
                let _ = writer.rollback();
                return Err(unavailable("cannot add a document")(error));
            }
            pending.insert(id, document.version());
            outcomes.push(Ok(UpsertOutcome::Applied));
        }
        if !pending.is_empty() {
            if let Err(error) = writer.commit() {
                // Nothing of the batch is kept: the next write starts clean.
                let _ = writer.rollback();
                return Err(unavailable("cannot commit")(error));
            }
            if let Err(error) = self.reader.reload() {
                // Committed, but not visible to the next version check: it reloads first.
                self.reader_behind.store(true, Ordering::Release);
                return Err(unavailable("cannot reload the reader after a commit")(
                    error,
                ));
            }
        }
        Ok(outcomes)
    }

    fn term(&self, field: Field, text: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::Basic,
        ))
    }

    fn query(&self, query: &SearchQuery) -> Result<(Box<dyn Query>, bool), IndexError> {
        use tantivy::tokenizer::{TokenStream as _, Tokenizer as _};

        let fields = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, self.term(fields.deleted, "false"))];
        if let Some(customer) = query.customer_term()? {
            clauses.push((Occur::Must, self.term(fields.customer_id, customer)));
        }
        if let Some(doc_type) = query.doc_type {
            clauses.push((Occur::Must, self.term(fields.doc_type, doc_type.as_str())));
        }
        if let Some(status) = &query.status {
            clauses.push((Occur::Must, self.term(fields.status, status)));
        }
        if query.date_from.is_some() || query.date_to.is_some() {
            let bound = |date: Option<time::Date>| {
                date.map_or(Bound::Unbounded, |date| {
                    Bound::Included(Term::from_field_i64(
                        fields.date,
                        i64::from(date.to_julian_day()),
                    ))
                })
            };
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(
                    bound(query.date_from),
                    bound(query.date_to),
                )),
            ));
        }
        // Blank text is no text query, as on OpenSearch.
        let text = query.text.as_deref().filter(|text| !text.trim().is_empty());
        let Some(text) = text else {
            clauses.push((Occur::Must, Box::new(AllQuery)));
            return Ok((Box::new(BooleanQuery::new(clauses)), false));
        };
        let mut tokenizer = self
            .index
            .tokenizer_for_field(fields.text)
            .map_err(unavailable("no tokenizer for the text field"))?;
        // Every word must match. Each word (split as the text field's tokenizer splits:
        // at anything but a letter or digit) goes through that tokenizer on its own, so a
        // word it drops is seen: the default tokenizer drops words of 40 bytes or more,
        // from documents too, so such a word can never match and the query matches
        // nothing (as OpenSearch answers it), rather than the other words alone or, with
        // no other word, everything in scope.
        let mut words = tantivy::tokenizer::SimpleTokenizer::default();
        let mut words = words.token_stream(text);
        let mut terms = 0;
        let mut unmatchable = false;
        while let Some(word) = words.next() {
            let mut tokens = tokenizer.token_stream(&word.text);
            let mut indexed = false;
            while let Some(token) = tokens.next() {
                indexed = true;
                terms += 1;
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        Term::from_field_text(fields.text, &token.text),
                        IndexRecordOption::WithFreqs,
                    )),
                ));
            }
            unmatchable |= !indexed;
        }
        if unmatchable || terms == 0 {
            return Ok((Box::new(tantivy::query::EmptyQuery), false));
        }
        Ok((Box::new(BooleanQuery::new(clauses)), true))
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        let after: Option<After> = query
            .after
            .as_deref()
            .map(|after| {
                serde_json::from_str(after).map_err(|_| {
                    IndexError::BadCursor(format!(
                        "cursor position {after:?} is not one this index gave out; pass the \
                         previous page's cursor unchanged"
                    ))
                })
            })
            .transpose()?;
        let (tantivy_query, has_text) = self.query(query)?;
        let searcher = self.reader.searcher();
        let sort = query.sort;
        let limit = query.limit.max(1);
        // Results go by a descending key (key, tiebreak); a page after the cursor keeps only
        // the keys below the cursor's, the others get `None`, which sorts last.
        let collector =
            TopDocs::with_limit(limit + 1).tweak_score(move |segment: &tantivy::SegmentReader| {
                let dates = segment
                    .fast_fields()
                    .i64("date")
                    .ok()
                    .map(|column| column.first_or_default_col(0));
                let tiebreaks = segment
                    .fast_fields()
                    .u64("tiebreak")
                    .ok()
                    .map(|column| column.first_or_default_col(0));
                move |doc: tantivy::DocId, score: tantivy::Score| {
                    let date = dates.as_ref().map_or(0, |dates| dates.get_val(doc));
                    let key = match sort {
                        SortOrder::Relevance => f64::from(score),
                        #[allow(clippy::cast_precision_loss)]
                        SortOrder::DateDescending => date as f64,
                        #[allow(clippy::cast_precision_loss)]
                        SortOrder::DateAscending => -(date as f64),
                    };
                    // Ascending by tiebreak within a key.
                    let tiebreak =
                        u64::MAX - tiebreaks.as_ref().map_or(0, |column| column.get_val(doc));
                    let position = (key, tiebreak);
                    match after {
                        Some(after) if position >= (after.key, after.tiebreak) => None,
                        _ => Some(position),
                    }
                }
            });
        let found = searcher
            .search(&*tantivy_query, &collector)
            .map_err(unavailable("the search failed"))?;
        let mut found: Vec<((f64, u64), DocAddress)> = found
            .into_iter()
            .filter_map(|(key, address)| key.map(|key| (key, address)))
            .collect();
        let more = found.len() > limit;
        found.truncate(limit);
        let mut snippets = if has_text {
            let mut generator =
                SnippetGenerator::create(&searcher, &*tantivy_query, self.fields.text)
                    .map_err(unavailable("cannot build highlights"))?;
            generator.set_max_num_chars(150);
            Some(generator)
        } else {
            None
        };
        let mut hits = Vec::with_capacity(found.len());
        for ((key, _), address) in &found {
            let IndexedDocument::Live(document) = self.read(&searcher, *address)? else {
                continue;
            };
            let highlights = match snippets.as_mut() {
                Some(generator) => {
                    let mut snippet = generator.snippet(&document.text);
                    snippet.set_snippet_prefix_postfix("<em>", "</em>");
                    if snippet.is_empty() {
                        Vec::new()
                    } else {
                        vec![snippet.to_html()]
                    }
                }
                None => Vec::new(),
            };
            #[allow(clippy::cast_possible_truncation)]
            let score = (sort == SortOrder::Relevance).then_some(*key as f32);
            hits.push(SearchHit {
                document,
                score,
                highlights,
            });
        }
        let next = if more {
            found.last().map(|((key, tiebreak), _)| {
                serde_json::to_string(&After {
                    key: *key,
                    tiebreak: *tiebreak,
                })
                .unwrap_or_default()
            })
        } else {
            None
        };
        Ok(SearchResults { hits, next })
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
