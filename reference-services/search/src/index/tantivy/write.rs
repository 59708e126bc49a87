//! Writing: a batch checked against the versions held and committed under the writer's
//! lock, searchable when it returns; during a rebuild, written to both generations.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use tantivy::{IndexWriter, TantivyDocument, Term};

use super::{Inner, Shared, poisoned, unavailable};
use crate::document::IndexedDocument;
use crate::index::{BatchOutcomes, IndexError, UpsertOutcome, Written};

impl Shared {
    /// Writes `documents` to the live generation, and to the one a rebuild writes if any;
    /// records the freshness of what the live one took.
    pub(super) fn write(&self, documents: &[IndexedDocument]) -> Result<BatchOutcomes, IndexError> {
        // Held across the write: a rebuild's switch waits for the writes in flight.
        let state = self.state.read().map_err(|_| poisoned())?;
        let mut outcomes = state.current.write(documents)?;
        // Committed and reloaded: searchable now.
        crate::index::record_freshness(
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
}

impl Inner {
    /// Writes the documents of `documents` newer than the versions held, commits and
    /// reloads the reader, all under the writer's lock; the outcome of each.
    pub(super) fn write(&self, documents: &[IndexedDocument]) -> Result<BatchOutcomes, IndexError> {
        let mut writer = self.writer.lock().map_err(|_| {
            IndexError::Unavailable("a writer panicked; restart the service".into())
        })?;
        self.catch_up_reader()?;
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
            if let Err(error) = writer.add_document(self.fields.tantivy_document(document)) {
                // Nothing of the batch is kept: its operations queued so far would
                // otherwise be committed by the next batch, unchecked.
                let _ = writer.rollback();
                return Err(unavailable("cannot add a document")(error));
            }
            pending.insert(id, document.version());
            outcomes.push(Ok(UpsertOutcome::Applied));
        }
        if !pending.is_empty() {
            self.commit(&mut writer)?;
        }
        Ok(outcomes)
    }

    /// Reloads the reader if a commit left it behind, so that versions are checked
    /// against everything committed.
    fn catch_up_reader(&self) -> Result<(), IndexError> {
        if self.reader_behind.load(Ordering::Acquire) {
            self.reader.reload().map_err(unavailable(
                "cannot reload the reader, so the versions held cannot be checked",
            ))?;
            self.reader_behind.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Commits what `writer` holds and reloads the reader: searchable on `Ok`.
    fn commit(&self, writer: &mut IndexWriter<TantivyDocument>) -> Result<(), IndexError> {
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
        Ok(())
    }
}
