//! The consistency views on OpenSearch: each document is written with a `consistency`
//! object (its type, its key's bucket, a live document's entry hash in four 16-bit
//! parts); a digest is a filtered count and four `sum` aggregations over a bucket range,
//! entries a range query sorted by bucket, then id.
//!
//! # Why four 16-bit sums
//!
//! A digest's sum is a wrapping sum of 64-bit hashes. OpenSearch's `sum` aggregation adds
//! in doubles, which hold integers exactly only below 2^53, and a scripted metric (which
//! could add longs, wrapping) needs inline scripts, which clusters often disable. So the
//! hash is kept as four parts of 16 bits: each part's sum is exact for up to 2^37
//! documents in a range, and the digest's sum is the parts' sums shifted into place,
//! wrapping. One request per digest, computed inside the node, whatever the size of the
//! range.
//!
//! # Indices made before the fields
//!
//! Documents are written with the fields by this version of the service on; an index made
//! before does not map them (the mapping is `dynamic: false`), and its documents lack
//! them. Such an index would show every document as missing, and republishing would not
//! help (a document at its version is a stale write), so the view refuses it with an
//! error that says to rebuild: a rebuild (`POST /admin/rebuilds`) creates a new index
//! with the current mapping and writes every document again, with the fields.
//!
//! What the view sees is what searches see: a write is in digests and entries after the
//! next refresh (`index.refresh_interval`), which a check's expected lag covers.

use std::sync::atomic::Ordering;

use dovetail_consistency::{BucketRange, Digest, Entry};
use opensearch::SearchParts;
use opensearch::indices::IndicesGetFieldMappingParts;
use serde_json::{Value, json};

use super::{OpenSearchIndex, json_answer};
use crate::document::{DocumentType, IndexedDocument};
use crate::index::IndexError;
use crate::index::view::{ConsistencyIndex, Keyed, key_of, sort_entries};

/// How many entries one request of [`ConsistencyIndex::entries`] reads; a range holding
/// more is read in pages.
const ENTRIES_PAGE: usize = 1_000;

/// The mapping of the `consistency` object.
pub(super) fn mapping() -> Value {
    json!({
        "properties": {
            "doc_type": { "type": "keyword" },
            "bucket": { "type": "integer" },
            "h0": { "type": "integer" },
            "h1": { "type": "integer" },
            "h2": { "type": "integer" },
            "h3": { "type": "integer" }
        }
    })
}

/// The stored JSON of `document` with its `consistency` object (none for an id of no
/// document type).
pub(super) fn with_view_fields(document: &IndexedDocument) -> Value {
    let mut stored = document.to_stored_json();
    if let (Some(keyed), Value::Object(map)) = (Keyed::of(document), &mut stored) {
        let mut fields = json!({
            "doc_type": keyed.doc_type.as_str(),
            "bucket": keyed.bucket,
        });
        if let Some(hash) = keyed.hash {
            for (part, value) in hash_parts(hash).into_iter().enumerate() {
                fields[format!("h{part}")] = json!(value);
            }
        }
        map.insert("consistency".into(), fields);
    }
    stored
}

/// `hash` in four 16-bit parts, lowest first.
fn hash_parts(hash: u64) -> [u16; 4] {
    // Masked to 16 bits: no truncation.
    #[allow(clippy::cast_possible_truncation)]
    std::array::from_fn(|part| ((hash >> (16 * part)) & 0xffff) as u16)
}

/// The wrapping sum of hashes whose parts summed to `sums` (lowest first): each part's
/// sum shifted into its place, wrapping, since the sum of the hashes wraps too.
fn from_part_sums(sums: [u64; 4]) -> u64 {
    sums.iter()
        .zip([0, 16, 32, 48])
        .fold(0_u64, |total, (sum, shift)| {
            total.wrapping_add(sum.wrapping_shl(shift))
        })
}

/// The filters of the documents of `doc_type` in `range`, tombstones too unless
/// `live_only`.
fn filters(doc_type: DocumentType, range: BucketRange, live_only: bool) -> Vec<Value> {
    let mut filters = vec![
        json!({ "term": { "consistency.doc_type": doc_type.as_str() } }),
        json!({ "range": { "consistency.bucket": { "gte": range.start(), "lt": range.end() } } }),
    ];
    if live_only {
        filters.push(json!({ "term": { "deleted": false } }));
    }
    filters
}

/// 2^53: below it a double holds every integer.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// An aggregation's sum, which must be a whole number below 2^53 to be exact.
fn exact_sum(aggregations: &Value, name: &str) -> Result<u64, IndexError> {
    let value = aggregations[name]["value"].as_f64().unwrap_or(f64::NAN);
    if (0.0..EXACT).contains(&value) && value.fract() == 0.0 {
        // Checked above: a whole number in range.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(value as u64)
    } else {
        Err(IndexError::Unavailable(format!(
            "OpenSearch answered the sum {name} as {}, not a whole number below 2^53",
            aggregations[name]["value"]
        )))
    }
}

impl OpenSearchIndex {
    /// Refuses an index that does not map the consistency fields (made before them).
    async fn require_view_fields(&self) -> Result<(), IndexError> {
        if self.view_fields_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let body = json_answer(
            self.client
                .indices()
                .get_field_mapping(IndicesGetFieldMappingParts::IndexFields(
                    &[&self.alias],
                    &["consistency.bucket"],
                ))
                .send()
                .await,
            "cannot read the mapping of the consistency fields",
        )
        .await?;
        let unmapped: Vec<&String> = body
            .as_object()
            .map(|indices| {
                indices
                    .iter()
                    .filter(|(_, index)| index["mappings"]["consistency.bucket"].is_null())
                    .map(|(name, _)| name)
                    .collect()
            })
            .unwrap_or_default();
        if unmapped.is_empty() {
            self.view_fields_seen.store(true, Ordering::Relaxed);
            Ok(())
        } else {
            Err(IndexError::Unavailable(format!(
                "the index {unmapped:?} behind {} was made before the consistency fields, so \
                 its documents cannot be checked; rebuild it (POST /admin/rebuilds), which \
                 writes every document again with them",
                self.alias
            )))
        }
    }

    async fn view_search(&self, body: Value, what: &str) -> Result<Value, IndexError> {
        self.require_view_fields().await?;
        json_answer(
            self.client
                .search(SearchParts::Index(&[&self.alias]))
                .body(body)
                .send()
                .await,
            what,
        )
        .await
    }
}

impl ConsistencyIndex for OpenSearchIndex {
    fn backend(&self) -> &'static str {
        "OpenSearch"
    }

    async fn digest(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Digest, IndexError> {
        let sum = |part: usize| json!({ "sum": { "field": format!("consistency.h{part}") } });
        let body = json!({
            "size": 0,
            "track_total_hits": true,
            "query": { "bool": { "filter": filters(doc_type, range, true) } },
            "aggs": { "h0": sum(0), "h1": sum(1), "h2": sum(2), "h3": sum(3) },
        });
        let answer = self
            .view_search(body, "cannot sum the digests of a range")
            .await?;
        let count = answer["hits"]["total"]["value"].as_u64().ok_or_else(|| {
            IndexError::Unavailable(format!(
                "OpenSearch answered a digest without its count: {}",
                answer["hits"]["total"]
            ))
        })?;
        let aggregations = &answer["aggregations"];
        let mut sums = [0; 4];
        for (part, sum) in sums.iter_mut().enumerate() {
            *sum = exact_sum(aggregations, &format!("h{part}"))?;
        }
        Ok(Digest {
            count,
            sum: from_part_sums(sums),
        })
    }

    async fn entries(
        &self,
        doc_type: DocumentType,
        range: BucketRange,
    ) -> Result<Vec<Entry>, IndexError> {
        let mut entries = Vec::new();
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": ENTRIES_PAGE,
                "query": { "bool": { "filter": filters(doc_type, range, false) } },
                "sort": [{ "consistency.bucket": "asc" }, { "id": "asc" }],
                "_source": ["id", "version", "deleted"],
            });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let answer = self
                .view_search(body, "cannot list the documents of a range")
                .await?;
            let hits = answer["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for hit in &hits {
                entries.push(entry_of_hit(hit, doc_type)?);
            }
            match hits.last() {
                Some(last) if hits.len() == ENTRIES_PAGE => after = Some(last["sort"].clone()),
                _ => break,
            }
        }
        // Already in this order but for keys whose ids sort otherwise than the keys do.
        sort_entries(&mut entries);
        Ok(entries)
    }
}

/// The entry of one hit of [`ConsistencyIndex::entries`].
fn entry_of_hit(hit: &Value, doc_type: DocumentType) -> Result<Entry, IndexError> {
    let source = &hit["_source"];
    let corrupt = || IndexError::Corrupt(format!("a document without its id or version: {hit}"));
    let id = source["id"].as_str().ok_or_else(corrupt)?;
    let version = source["version"].as_u64().ok_or_else(corrupt)?;
    let key = match key_of(id) {
        Some((of_type, key)) if of_type == doc_type => key,
        _ => {
            return Err(IndexError::Corrupt(format!(
                "{id} is listed as a {} but its id says otherwise",
                doc_type.as_str()
            )));
        }
    };
    Ok(if source["deleted"] == Value::Bool(true) {
        Entry::tombstone(key, version)
    } else {
        Entry::live(key, version)
    })
}

#[cfg(test)]
mod tests {
    use super::{from_part_sums, hash_parts};

    #[test]
    fn sums_of_parts_give_the_wrapping_sum_of_hashes() {
        let hashes = [u64::MAX, 0x8000_0000_0000_0001, 0x0123_4567_89ab_cdef, 7];
        let mut sums = [0_u64; 4];
        for hash in hashes {
            for (sum, part) in sums.iter_mut().zip(hash_parts(hash)) {
                *sum += u64::from(part);
            }
        }
        let wrapping = hashes
            .iter()
            .fold(0_u64, |sum, hash| sum.wrapping_add(*hash));
        assert_eq!(from_part_sums(sums), wrapping);
    }
}
