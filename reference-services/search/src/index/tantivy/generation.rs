//! One generation open ([`Inner`]): its tantivy index in a directory or in memory, its
//! reader and writer, and the document or version held under an id.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, Index, ReloadPolicy, Searcher, Term};

use super::schema::{read_stored, schema};
use super::{Inner, io_error, unavailable};
use crate::document::IndexedDocument;
use crate::index::IndexError;

/// The writer's memory budget: tantivy's minimum is 15 MB per thread.
pub(super) const WRITER_MEMORY: usize = 30_000_000;

/// Opens the index in `dir` whatever its schema, or creates one with the current schema.
pub(super) fn open_index(dir: &Path) -> Result<Index, IndexError> {
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

impl Inner {
    /// Opens or creates the index in `dir`, which must have the current schema.
    pub(super) fn open(dir: &Path) -> Result<Self, IndexError> {
        let index = open_index(dir)?;
        if index.schema() != schema().0 {
            return Err(IndexError::Corrupt(format!(
                "{} holds an index of another schema; remove it",
                dir.display()
            )));
        }
        Self::from_index(index)
    }

    /// A new, empty index in memory.
    pub(super) fn in_ram() -> Result<Self, IndexError> {
        let (schema, _) = schema();
        Self::from_index(Index::create_in_ram(schema))
    }

    /// Starts the writer and the reader of `index`, which has the current schema.
    pub(super) fn from_index(index: Index) -> Result<Self, IndexError> {
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

    /// The document (or tombstone) held under `id`, if any.
    pub(super) fn held(
        &self,
        searcher: &Searcher,
        id: &str,
    ) -> Result<Option<IndexedDocument>, IndexError> {
        self.address_of(searcher, id)?
            .map(|address| self.read(searcher, address))
            .transpose()
    }

    /// The document (or tombstone) at `address`, from its stored JSON.
    pub(super) fn read(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<IndexedDocument, IndexError> {
        read_stored(searcher, self.fields.stored, address)
    }

    /// The version held under `id`, from the fast field: no stored document is read.
    pub(super) fn held_version(
        &self,
        searcher: &Searcher,
        id: &str,
    ) -> Result<Option<u64>, IndexError> {
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
}
