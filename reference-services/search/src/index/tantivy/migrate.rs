//! Moving every document into a new generation, each built again from its source event:
//! [`migrate`] when the index opened has another schema, and the rebuild
//! ([`Shared::rebuild`]), which writes to both generations until it switches `CURRENT`.

use std::path::Path;
use std::sync::Arc;

use tantivy::schema::Field;
use tantivy::{DocAddress, Index, IndexWriter, Searcher, TantivyDocument};

use super::generation::WRITER_MEMORY;
use super::layout::{generation_name, switch_pointer, sync_directory, write_pointer};
use super::schema::{STORED_FIELD, stored_json};
use super::{Inner, Shared, poisoned, unavailable};
use crate::index::{IndexError, RebuildPhase, RebuildProgress, RebuildReport};

/// Moves `old`, the live generation `generation` of `base` written with another schema,
/// into generation `generation + 1` with the current one, each document built again from
/// its source event, and names it in `CURRENT`.
pub(super) fn migrate(
    base: &Path,
    old: &Index,
    generation: u32,
) -> Result<(Inner, u32), IndexError> {
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
        let (page, fresh) = crate::index::rederive_stored(page, &origin)?;
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

/// Calls `each` with the stored JSON of every document and tombstone `searcher` sees,
/// 500 at a time (read for a rebuild with [`crate::index::rederive_stored`]).
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
            let (page, fresh) = crate::index::rederive_stored(page, origin)?;
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
}

impl Shared {
    /// Writes a new generation from the live one, every write going to both meanwhile,
    /// switches `CURRENT` to it and removes the old one; one rebuild at a time.
    pub(super) fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        let _one = self.rebuilding.try_lock().map_err(|_| {
            IndexError::Conflict("a rebuild is under way already; wait for it to finish".into())
        })?;
        let (old_generation, current) = self.live()?;
        let generation = old_generation + 1;
        let new = Arc::new(self.create_generation(generation)?);
        // From here on every write goes to both; the writes before are committed.
        self.state.write().map_err(|_| poisoned())?.shadow = Some(Arc::clone(&new));
        progress.enter(RebuildPhase::Copying);
        let origin = generation_name(old_generation);
        let (copied, rederived) = match current.copy_into(&new, &origin, progress) {
            Ok(copied) => copied,
            Err(error) => {
                self.abandon(new, generation)?;
                return Err(error);
            }
        };
        progress.enter(RebuildPhase::Switching);
        let old = self.switch_to(new, generation)?;
        drop((old, current));
        // Switched: CURRENT names the new generation. Until the directory is synced, a
        // power loss may bring the old name back, so the old generation stays until then.
        let durable = self.switch_is_durable(&origin);
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

    /// The live generation's number and index.
    fn live(&self) -> Result<(u32, Arc<Inner>), IndexError> {
        let state = self.state.read().map_err(|_| poisoned())?;
        Ok((state.generation, Arc::clone(&state.current)))
    }

    /// A new, empty `generation`: in its directory under the base, cleared of what a
    /// failed rebuild may have left, or in memory.
    fn create_generation(&self, generation: u32) -> Result<Inner, IndexError> {
        match &self.base {
            Some(base) => {
                let dir = base.join(generation_name(generation));
                // What a failed rebuild may have left.
                let _ = std::fs::remove_dir_all(&dir);
                Inner::open(&dir)
            }
            None => Inner::in_ram(),
        }
    }

    /// Stops writing to `new`, the `generation` a rebuild failed to fill, and removes it.
    fn abandon(&self, new: Arc<Inner>, generation: u32) -> Result<(), IndexError> {
        self.state.write().map_err(|_| poisoned())?.shadow = None;
        drop(new);
        if let Some(base) = &self.base {
            let _ = std::fs::remove_dir_all(base.join(generation_name(generation)));
        }
        Ok(())
    }

    /// Makes `new` the live `generation` (naming it in `CURRENT`, not synced yet), after
    /// the writes in flight; the generation it replaces.
    fn switch_to(&self, new: Arc<Inner>, generation: u32) -> Result<Arc<Inner>, IndexError> {
        let mut state = self.state.write().map_err(|_| poisoned())?;
        state.shadow = None;
        if let Some(base) = &self.base {
            write_pointer(base, generation)?;
        }
        state.generation = generation;
        Ok(std::mem::replace(&mut state.current, new))
    }

    /// Syncs the base directory after a switch: whether the switch survives a power loss
    /// (always in memory). When it may not, says so and that `kept`, the old generation,
    /// stays.
    fn switch_is_durable(&self, kept: &str) -> bool {
        self.base.as_deref().is_none_or(|base| {
            sync_directory(base)
                .map_err(|error| {
                    tracing::warn!(
                        %error,
                        kept = %kept,
                        "the switch may not survive a power loss; the old generation is \
                         kept until the next open removes whichever CURRENT does not name"
                    );
                })
                .is_ok()
        })
    }
}
