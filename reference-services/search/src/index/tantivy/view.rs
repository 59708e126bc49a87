//! The consistency views of the embedded index: digests aggregated from the
//! `entry_hash` fast field of the live documents of a bucket range, entries read from
//! the documents of a bucket range.
//!
//! # Why the digests are computed, not kept
//!
//! The digest of a range is read from the committed segments themselves, with a range
//! query on the `bucket` field and a pass over the `entry_hash` column of what it
//! matches (one `u64` per live document, no stored document read). Nothing is kept beside
//! the index, so nothing can disagree with it: a digest is exactly as current as the
//! documents a search sees, through every commit, crash, schema migration and rebuild
//! (each generation carries its own fields), with no second write to make atomic with
//! tantivy's commit. The price is a cost in the documents of the range rather than in
//! its buckets: a check reads about one pass over the index per differing key (the full
//! range, then halves of halves), which at the embedded backend's scale (a single node,
//! up to some hundreds of thousands of documents) is milliseconds. Per-bucket digests
//! kept beside the index would make a digest cost the buckets of the range, at the price
//! of a side file updated in step with every commit and rebuilt after each migration;
//! the OpenSearch backend, for large indices, aggregates in the same way inside the node.
//!
//! Indices written before these fields existed have another schema, so they are moved
//! into a new generation with the fields when opened (see `migrate.rs`).

use std::ops::Bound;

use dovetail_consistency::{BucketRange, Digest, Entry};
use tantivy::collector::{Collector, DocSetCollector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, Term};

use super::schema::ENTRY_HASH_FIELD;
use super::{Inner, TantivyIndex, unavailable};
use crate::document::DocumentType;
use crate::index::IndexError;
use crate::index::view::{ConsistencyIndex, entry_of, sort_entries};

impl ConsistencyIndex for TantivyIndex {
    fn backend(&self) -> &'static str {
        "tantivy"
    }

    async fn digest(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Digest, IndexError> {
        self.blocking(move |shared| shared.current()?.digest(doc_type, range))
            .await
    }

    async fn entries(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Vec<Entry>, IndexError> {
        self.blocking(move |shared| shared.current()?.entries(doc_type, range))
            .await
    }
}

impl Inner {
    /// See [`ConsistencyIndex::digest`].
    fn digest(&self, doc_type: DocumentType, range: BucketRange) -> Result<Digest, IndexError> {
        let query = self.view_query(doc_type, range, true);
        self.reader
            .searcher()
            .search(&query, &DigestCollector)
            .map_err(unavailable("cannot sum the digests of a range"))
    }

    /// See [`ConsistencyIndex::entries`].
    fn entries(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Vec<Entry>, IndexError> {
        let query = self.view_query(doc_type, range, false);
        let searcher = self.reader.searcher();
        let addresses = searcher
            .search(&query, &DocSetCollector)
            .map_err(unavailable("cannot list the documents of a range"))?;
        let mut entries = Vec::with_capacity(addresses.len());
        for address in addresses {
            if let Some(entry) = entry_of(&self.read(&searcher, address)?, doc_type) {
                entries.push(entry);
            }
        }
        sort_entries(&mut entries);
        Ok(entries)
    }

    /// The documents of `doc_type` in the bucket `range`, tombstones too unless
    /// `live_only`.
    fn view_query(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
        live_only: bool,
    ) -> BooleanQuery {
        let fields = self.fields;
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let mut clauses = vec![
            (Occur::Must, term(fields.doc_type, doc_type.as_str())),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_u64(
                        fields.bucket,
                        u64::from(range.start()),
                    )),
                    Bound::Excluded(Term::from_field_u64(fields.bucket, u64::from(range.end()))),
                )) as Box<dyn Query>,
            ),
        ];
        if live_only {
            clauses.push((Occur::Must, term(fields.deleted, "false")));
        }
        BooleanQuery::new(clauses)
    }
}

/// Sums the entry hashes of the documents a query matches into a [`Digest`].
struct DigestCollector;

/// [`DigestCollector`] on one segment.
struct SegmentDigest {
    hashes: Column<u64>,
    digest: Digest,
}

impl Collector for DigestCollector {
    type Fruit = Digest;
    type Child = SegmentDigest;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentDigest> {
        Ok(SegmentDigest {
            hashes: reader.fast_fields().u64(ENTRY_HASH_FIELD)?,
            digest: Digest::EMPTY,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, digests: Vec<Digest>) -> tantivy::Result<Digest> {
        Ok(digests
            .into_iter()
            .fold(Digest::EMPTY, |sum, digest| sum + digest))
    }
}

impl SegmentCollector for SegmentDigest {
    type Fruit = Digest;

    fn collect(&mut self, doc: DocId, _score: Score) {
        // Every live document has its hash (the query matches live documents only).
        if let Some(hash) = self.hashes.first(doc) {
            self.digest += Digest {
                count: 1,
                sum: hash,
            };
        }
    }

    fn harvest(self) -> Digest {
        self.digest
    }
}
