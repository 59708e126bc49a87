//! The consistency views of the embedded index: digests aggregated from the
//! `entry_hash` fast field of the live documents of a bucket range, entries read from
//! the documents of a bucket range.
//!
//! # Why the digests are computed, not kept
//!
//! The digest of a range is read from the committed segments themselves: a query on the
//! `bucket` field and a pass over the `entry_hash` column of what it matches (one `u64`
//! per live document, no stored document read). Nothing is kept beside the index, so
//! nothing can disagree with it: a digest is exactly as current as the documents a search
//! sees, through every commit, crash, schema migration and rebuild (each generation
//! carries its own fields), with no second write to make atomic with tantivy's commit.
//!
//! The price is a cost in documents rather than in buckets. A range of a quarter of the
//! key space or more is read by a scan of the bucket column (about the same cost for any
//! width); a narrower one by the postings of its buckets' terms (a cost in its own
//! documents). Measured once on 100,000 policies in a debug build (`cargo test`, two
//! shared cores): the full range about 5 ms by the column scan (60 ms by the postings),
//! half of it 10 to 20 ms by the scan (about 33 ms by the postings), one bucket 0.4 ms by
//! the postings (about 10 ms by the scan); the entries of one bucket about 1 ms. A check
//! reads about a dozen digests per differing key, most of them narrow: tens of
//! milliseconds at the embedded backend's scale (one node). Per-bucket digests kept
//! beside the index would cost the buckets of a range, at the price of a side file
//! updated in step with every commit and rebuilt after each migration; OpenSearch, the
//! backend for large indices, aggregates inside the node.
//!
//! Indices written before these fields existed have another schema, so they are moved
//! into a new generation with the fields when opened (see `migrate.rs`).

use std::ops::Bound;

use dovetail_consistency::{BUCKETS, BucketRange, Digest, Entry};
use tantivy::collector::{Collector, DocSetCollector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, InvertedIndexRangeQuery, Occur, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader, Term};

use super::schema::ENTRY_HASH_FIELD;
use super::{Inner, TantivyIndex, unavailable};
use crate::document::DocumentType;
use crate::index::IndexError;
use crate::index::view::{ConsistencyIndex, entry_of, sort_entries};

/// From how many buckets a range is read by a scan of the bucket column rather than by
/// the postings of its buckets: a quarter of the key space, about where the two cost
/// the same.
const WIDE_RANGE: u32 = BUCKETS / 4;

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
        let (from, to) = (
            Bound::Included(Term::from_field_u64(
                fields.bucket,
                u64::from(range.start()),
            )),
            Bound::Excluded(Term::from_field_u64(fields.bucket, u64::from(range.end()))),
        );
        // A wide range scans the bucket column (a cost in the segment's documents, the
        // same for any width); a narrow one reads the postings of its buckets' terms (a
        // cost in the range's documents). See the module's docs for the figures.
        let buckets: Box<dyn Query> = if range.len() >= WIDE_RANGE {
            Box::new(RangeQuery::new(from, to))
        } else {
            Box::new(InvertedIndexRangeQuery::new(from, to))
        };
        let mut clauses = vec![
            (Occur::Must, term(fields.doc_type, doc_type.as_str())),
            (Occur::Must, buckets),
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
