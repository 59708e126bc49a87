//! The schema of every generation, and documents to and from tantivy: the fields of an
//! [`IndexedDocument`], and its stored JSON read back.

use tantivy::schema::{FAST, Field, INDEXED, STORED, STRING, Schema, TEXT, Value};
use tantivy::{DocAddress, Searcher, TantivyDocument};

use crate::document::IndexedDocument;
use crate::index::IndexError;
use crate::index::view::{Keyed, key_of};

/// The fields of the current schema.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    pub(super) id: Field,
    pub(super) doc_type: Field,
    pub(super) customer_id: Field,
    pub(super) status: Field,
    pub(super) deleted: Field,
    pub(super) text: Field,
    pub(super) date: Field,
    tiebreak: Field,
    version: Field,
    /// The bucket of the document's key (see `index::view`), tombstones' too.
    pub(super) bucket: Field,
    /// The entry hash of a live document's key and version; none on a tombstone.
    pub(super) entry_hash: Field,
    pub(super) stored: Field,
}

/// The name of the field of live documents' entry hashes, read by the digests.
pub(super) const ENTRY_HASH_FIELD: &str = "entry_hash";

/// The name of the field holding each document's stored JSON, in every schema so far.
pub(super) const STORED_FIELD: &str = "stored";

/// The current schema and its fields.
pub(super) fn schema() -> (Schema, Fields) {
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
        bucket: builder.add_u64_field("bucket", INDEXED | FAST),
        entry_hash: builder.add_u64_field(ENTRY_HASH_FIELD, FAST),
        stored: builder.add_text_field(STORED_FIELD, STORED),
    };
    (builder.build(), fields)
}

impl Fields {
    /// The tantivy document of `indexed`: its fields, its version and its stored JSON.
    pub(super) fn tantivy_document(&self, indexed: &IndexedDocument) -> TantivyDocument {
        let mut document = TantivyDocument::default();
        let stored = indexed.to_stored_json().to_string();
        match indexed {
            IndexedDocument::Live(live) => {
                document.add_text(self.id, &live.id);
                document.add_text(self.doc_type, live.doc_type.as_str());
                document.add_text(self.customer_id, &live.customer_id);
                document.add_text(self.status, &live.status);
                document.add_text(self.deleted, "false");
                document.add_text(self.text, &live.text);
                document.add_i64(self.date, i64::from(live.date.to_julian_day()));
                document.add_u64(self.tiebreak, tiebreak_of(&live.id));
            }
            IndexedDocument::Deleted(tombstone) => {
                document.add_text(self.id, &tombstone.id);
                // For the views: a tombstone is listed with its type's entries.
                if let Some((doc_type, _)) = key_of(&tombstone.id) {
                    document.add_text(self.doc_type, doc_type.as_str());
                }
                document.add_text(self.deleted, "true");
                document.add_i64(self.date, 0);
                document.add_u64(self.tiebreak, tiebreak_of(&tombstone.id));
            }
        }
        document.add_u64(self.version, indexed.version());
        if let Some(keyed) = Keyed::of(indexed) {
            document.add_u64(self.bucket, u64::from(keyed.bucket));
            if let Some(hash) = keyed.hash {
                document.add_u64(self.entry_hash, hash);
            }
        }
        document.add_text(self.stored, stored);
        document
    }
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

/// The stored JSON of the document at `address`.
pub(super) fn stored_json(
    searcher: &Searcher,
    stored: Field,
    address: DocAddress,
) -> Result<serde_json::Value, IndexError> {
    let document: TantivyDocument = searcher
        .doc(address)
        .map_err(super::unavailable("cannot read a stored document"))?;
    let json = document
        .get_first(stored)
        .and_then(|value| value.as_str())
        .ok_or_else(|| IndexError::Corrupt("a document without its stored JSON".into()))?;
    serde_json::from_str(json).map_err(|error| IndexError::Corrupt(error.to_string()))
}

/// Reads the stored JSON of the document at `address`.
pub(super) fn read_stored(
    searcher: &Searcher,
    stored: Field,
    address: DocAddress,
) -> Result<IndexedDocument, IndexError> {
    IndexedDocument::from_stored_json(stored_json(searcher, stored, address)?)
        .map_err(|error| IndexError::Corrupt(error.to_string()))
}
