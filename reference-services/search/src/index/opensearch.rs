//! [`OpenSearchIndex`]: the backend at scale, an OpenSearch index behind an alias.
//!
//! Writes go through `_bulk` with the aggregate's sequence as an external version
//! (`version_type=external`): OpenSearch keeps a document only when its version is higher
//! than the one held, atomically per document, and answers 409 otherwise; a 409 is success
//! here ([`UpsertOutcome::Stale`]). A deletion is a tombstone *document* (`deleted: true`)
//! with its version, not a `DELETE`: OpenSearch forgets deleted versions after
//! `index.gc_deletes` (60 s), after which a late older event would bring the document
//! back; a tombstone is never forgotten. Searches filter tombstones out.
//!
//! The service reads and writes the alias (by default `dovetail-search`); the first start
//! creates the index `<alias>-000001` behind it.
//!
//! Freshness: after a write, one probe (a tombstone `probe:<instance>`, never searchable)
//! is indexed with `refresh=wait_for`; when it returns, a refresh has made every document
//! written before it searchable, and `search_freshness_seconds` records their time from
//! event to then. One probe runs at a time: the writes made while it waits go with the
//! next one, so a busy service adds about one request per refresh interval.

use std::sync::Arc;
use std::time::Duration;

use opensearch::http::StatusCode;
use opensearch::http::transport::Transport;
use opensearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesExistsAliasParts, IndicesGetAliasParts,
    IndicesRefreshParts,
};
use opensearch::params::{Refresh, VersionType};
use opensearch::{BulkOperation, BulkParts, GetParts, IndexParts, OpenSearch, SearchParts};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

use super::{
    IndexError, RebuildReport, SearchHit, SearchIndex, SearchQuery, SearchResults, SortOrder,
    UpsertOutcome,
};
use crate::document::{IndexedDocument, SearchDocument};

/// How the service's OpenSearch index is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSearchSettings {
    /// The alias the service reads and writes.
    pub alias: String,
    /// `index.refresh_interval` of a new index, such as `1s`: how soon a write is
    /// searchable.
    pub refresh_interval: String,
    /// `index.number_of_replicas` of a new index (0 on a single node).
    pub replicas: u32,
}

/// The OpenSearch search index.
#[derive(Debug, Clone)]
pub struct OpenSearchIndex {
    client: OpenSearch,
    settings: OpenSearchSettings,
    alias: String,
    /// The index a rebuild writes, which every write goes to as well meanwhile.
    shadow: Arc<RwLock<Option<String>>>,
    rebuilding: Arc<Mutex<()>>,
    freshness: Arc<std::sync::Mutex<Freshness>>,
}

/// Documents written but not yet known to be searchable, and whether a probe runs.
#[derive(Debug, Default)]
struct Freshness {
    pending: Vec<IndexedDocument>,
    probing: bool,
    probe_id: String,
}

/// How long a rebuild waits after the alias switch before its second copy, for writes
/// other instances sent to the old index before they saw the switch.
pub const REBUILD_GRACE: Duration = Duration::from_secs(2);

fn unavailable(what: &str) -> impl Fn(opensearch::Error) -> IndexError + '_ {
    move |error| IndexError::Unavailable(format!("OpenSearch: {what}: {error}"))
}

/// The mapping of the fields queries use; the rest of a document is kept in `_source`
/// only (`dynamic: false`).
pub fn mapping() -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "id": { "type": "keyword" },
            "doc_type": { "type": "keyword" },
            "customer_id": { "type": "keyword" },
            "status": { "type": "keyword" },
            "deleted": { "type": "boolean" },
            "text": { "type": "text" },
            "date": { "type": "date", "format": "yyyy-MM-dd" },
            "version": { "type": "long" },
            "lineage": {
                "properties": {
                    "source": { "type": "keyword" },
                    "event_id": { "type": "keyword" },
                    "sequence": { "type": "long" },
                    "occurred_at": { "type": "date" }
                }
            }
        }
    })
}

async fn failure(response: opensearch::http::response::Response, what: &str) -> IndexError {
    let status = response.status_code();
    let body = response.text().await.unwrap_or_default();
    IndexError::Unavailable(format!("OpenSearch: {what}: {status}: {body}"))
}

/// The JSON answer to a request that was `sent`, or an error saying `what` failed: the
/// transport's error, or the node's status and body.
async fn json_answer(
    sent: Result<opensearch::http::response::Response, opensearch::Error>,
    what: &str,
) -> Result<Value, IndexError> {
    let response = sent.map_err(unavailable(what))?;
    if !response.status_code().is_success() {
        return Err(failure(response, what).await);
    }
    response.json().await.map_err(unavailable(what))
}

impl OpenSearchIndex {
    /// A client of the node at `url` (such as `http://127.0.0.1:9200`).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when `url` is not a URL.
    pub fn client(url: &str) -> Result<OpenSearch, IndexError> {
        let transport = Transport::single_node(url).map_err(|error| {
            IndexError::Unavailable(format!(
                "cannot make an OpenSearch client for {url:?}: {error}; set \
                 index.opensearch_url to the node's URL"
            ))
        })?;
        Ok(OpenSearch::new(transport))
    }

    /// Opens the index behind `settings.alias`, creating `<alias>-000001` and the alias
    /// when the alias does not exist.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the node does not answer or refuses the index.
    pub async fn open(
        client: OpenSearch,
        settings: &OpenSearchSettings,
    ) -> Result<Self, IndexError> {
        let alias = settings.alias.clone();
        let exists = client
            .indices()
            .exists_alias(IndicesExistsAliasParts::Name(&[&alias]))
            .send()
            .await
            .map_err(unavailable("cannot ask whether the alias exists"))?;
        let index = Self {
            client,
            settings: settings.clone(),
            alias: settings.alias.clone(),
            shadow: Arc::default(),
            rebuilding: Arc::default(),
            freshness: Arc::new(std::sync::Mutex::new(Freshness {
                probe_id: format!(
                    "probe:{}-{}",
                    std::process::id(),
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
                ),
                ..Freshness::default()
            })),
        };
        if exists.status_code() == StatusCode::NOT_FOUND {
            index
                .create(&format!("{}-000001", index.alias), true)
                .await?;
        } else if !exists.status_code().is_success() {
            return Err(failure(exists, "cannot ask whether the alias exists").await);
        }
        Ok(index)
    }

    /// Creates the index `name` with the mapping and settings, behind the alias when
    /// `aliased`. An index that exists already (another instance made it) is fine.
    async fn create(&self, name: &str, aliased: bool) -> Result<(), IndexError> {
        let mut body = json!({
            "settings": {
                "index": {
                    "number_of_shards": 1,
                    "number_of_replicas": self.settings.replicas,
                    "refresh_interval": self.settings.refresh_interval,
                }
            },
            "mappings": mapping(),
        });
        if aliased {
            body["aliases"] = json!({ self.alias.clone(): {} });
        }
        let created = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(name))
            .body(body)
            .send()
            .await
            .map_err(unavailable("cannot create the index"))?;
        let status = created.status_code();
        if !status.is_success() {
            let text = created.text().await.unwrap_or_default();
            if !text.contains("resource_already_exists_exception") {
                return Err(IndexError::Unavailable(format!(
                    "OpenSearch refused to create the index {name}: {status}: {text}"
                )));
            }
        }
        Ok(())
    }

    /// The index behind the alias.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the node does not answer or the alias names no
    /// single index.
    pub async fn current_index(&self) -> Result<String, IndexError> {
        let body = json_answer(
            self.client
                .indices()
                .get_alias(IndicesGetAliasParts::Name(&[&self.alias]))
                .send()
                .await,
            "cannot read the alias",
        )
        .await?;
        let indices: Vec<&String> = body
            .as_object()
            .map(|map| map.keys().collect())
            .unwrap_or_default();
        match indices.as_slice() {
            [index] => Ok((*index).clone()),
            other => Err(IndexError::Unavailable(format!(
                "the alias {} names {} indices ({other:?}); it must name exactly one: fix it \
                 with POST _aliases",
                self.alias,
                other.len()
            ))),
        }
    }

    async fn refresh_index(&self, index: &str) -> Result<(), IndexError> {
        let response = self
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[index]))
            .send()
            .await
            .map_err(unavailable("cannot refresh"))?;
        if response.status_code().is_success() {
            Ok(())
        } else {
            Err(failure(response, "cannot refresh").await)
        }
    }

    /// Copies every document and tombstone of `from` into `to` by version: pages of
    /// `from` in id order, written with their external versions (a copy older than a live
    /// write is a 409, and stays out). `_reindex` would do the same server-side, but it is
    /// a module some distributions leave out.
    async fn copy(&self, from: &str, to: &str) -> Result<u64, IndexError> {
        self.refresh_index(from).await?;
        let mut copied = 0;
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "size": 500,
                "query": { "match_all": {} },
                "sort": [{ "id": "asc" }],
            });
            if let Some(after) = after.take() {
                body["search_after"] = after;
            }
            let body = json_answer(
                self.client
                    .search(SearchParts::Index(&[from]))
                    .body(body)
                    .send()
                    .await,
                "cannot read the old index",
            )
            .await?;
            let hits = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
            let Some(last) = hits.last() else {
                return Ok(copied);
            };
            after = Some(last["sort"].clone());
            let documents = hits
                .iter()
                .map(|hit| {
                    IndexedDocument::from_stored_json(hit["_source"].clone())
                        .map_err(|error| IndexError::Corrupt(format!("{from}: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.bulk(to, &documents).await?;
            copied += documents.len() as u64;
        }
    }

    async fn switch(&self, from: &str, to: &str) -> Result<(), IndexError> {
        let response = self
            .client
            .indices()
            .update_aliases()
            .body(json!({
                "actions": [
                    { "remove": { "index": from, "alias": self.alias } },
                    { "add": { "index": to, "alias": self.alias } }
                ]
            }))
            .send()
            .await
            .map_err(unavailable("cannot switch the alias"))?;
        if response.status_code().is_success() {
            Ok(())
        } else {
            Err(failure(response, "cannot switch the alias").await)
        }
    }

    async fn drop_index(&self, index: &str) -> Result<(), IndexError> {
        let response = self
            .client
            .indices()
            .delete(IndicesDeleteParts::Index(&[index]))
            .send()
            .await
            .map_err(unavailable("cannot delete the old index"))?;
        if response.status_code().is_success() || response.status_code() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(failure(response, "cannot delete the old index").await)
        }
    }

    async fn rebuild_into(&self, from: &str, to: &str) -> Result<u64, IndexError> {
        self.create(to, false).await?;
        // From here on every write of this instance goes to both indices.
        *self.shadow.write().await = Some(to.to_owned());
        let copied = self.copy(from, to).await?;
        {
            // Waits for this instance's writes in flight; none starts until the switch.
            let mut shadow = self.shadow.write().await;
            self.switch(from, to).await?;
            *shadow = None;
        }
        // Other instances write the old index until they see the switch.
        tokio::time::sleep(REBUILD_GRACE).await;
        self.copy(from, to).await?;
        self.drop_index(from).await?;
        Ok(copied)
    }

    /// Writes `documents` into `target` (the alias or an index) with their versions.
    async fn bulk(
        &self,
        target: &str,
        documents: &[IndexedDocument],
    ) -> Result<Vec<UpsertOutcome>, IndexError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let mut operations: Vec<BulkOperation<Value>> = Vec::with_capacity(documents.len());
        for document in documents {
            let id = match document {
                IndexedDocument::Live(live) => live.id.clone(),
                IndexedDocument::Deleted(tombstone) => tombstone.id.clone(),
            };
            let version = i64::try_from(document.version()).map_err(|_| {
                IndexError::Corrupt(format!(
                    "version {} of {id} is beyond OpenSearch's",
                    document.version()
                ))
            })?;
            operations.push(
                BulkOperation::index(document.to_stored_json())
                    .id(id)
                    .version(version)
                    .version_type(VersionType::External)
                    .into(),
            );
        }
        let body = json_answer(
            self.client
                .bulk(BulkParts::Index(target))
                .body(operations)
                .send()
                .await,
            "the bulk write failed",
        )
        .await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        if items.len() != documents.len() {
            return Err(IndexError::Unavailable(format!(
                "OpenSearch answered {} items for {} documents",
                items.len(),
                documents.len()
            )));
        }
        items
            .iter()
            .map(|item| {
                let result = &item["index"];
                match result["status"].as_u64() {
                    Some(200 | 201) => Ok(UpsertOutcome::Applied),
                    // version_conflict_engine_exception: the index holds this version or a
                    // higher one.
                    Some(409) => Ok(UpsertOutcome::Stale),
                    _ => Err(IndexError::Unavailable(format!(
                        "OpenSearch refused a document: {}",
                        result["error"]
                    ))),
                }
            })
            .collect()
    }

    /// Queues `applied` for the next freshness probe, starting one when none runs.
    fn watch_freshness(&self, applied: impl Iterator<Item = IndexedDocument>) {
        let Ok(mut freshness) = self.freshness.lock() else {
            return;
        };
        freshness.pending.extend(applied);
        if freshness.pending.is_empty() || freshness.probing {
            return;
        }
        freshness.probing = true;
        drop(freshness);
        let index = self.clone();
        tokio::spawn(async move { index.probe().await });
    }

    /// Writes probes with `refresh=wait_for` until no written document waits for one.
    async fn probe(self) {
        loop {
            let (batch, probe_id) = {
                let Ok(mut freshness) = self.freshness.lock() else {
                    return;
                };
                if freshness.pending.is_empty() {
                    freshness.probing = false;
                    return;
                }
                (
                    std::mem::take(&mut freshness.pending),
                    freshness.probe_id.clone(),
                )
            };
            let now = time::OffsetDateTime::now_utc();
            let stamp = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
            let probe = IndexedDocument::Deleted(crate::document::Tombstone {
                id: probe_id.clone(),
                version: stamp,
                lineage: crate::document::Lineage {
                    source: crate::SERVICE.to_owned(),
                    event_id: probe_id.clone(),
                    event_type: "search.freshness_probe".to_owned(),
                    sequence: stamp,
                    occurred_at: now
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                },
            });
            let sent = self
                .client
                .index(IndexParts::IndexId(&self.alias, &probe_id))
                .refresh(Refresh::WaitFor)
                .body(probe.to_stored_json())
                .send()
                .await;
            match sent {
                Ok(response) if response.status_code().is_success() => {
                    super::record_freshness(&batch, time::OffsetDateTime::now_utc());
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status_code(), "freshness probe refused");
                }
                Err(error) => tracing::warn!(%error, "freshness probe failed"),
            }
        }
    }

    /// The alias this index reads and writes.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    fn filters(query: &SearchQuery) -> Result<Vec<Value>, IndexError> {
        let mut filters = vec![json!({ "term": { "deleted": false } })];
        if let Some(customer) = query.customer_term()? {
            filters.push(json!({ "term": { "customer_id": customer } }));
        }
        if let Some(doc_type) = query.doc_type {
            filters.push(json!({ "term": { "doc_type": doc_type.as_str() } }));
        }
        if let Some(status) = &query.status {
            filters.push(json!({ "term": { "status": status } }));
        }
        if query.date_from.is_some() || query.date_to.is_some() {
            let mut range = serde_json::Map::new();
            let text = |date: time::Date| {
                format!(
                    "{:04}-{:02}-{:02}",
                    date.year(),
                    u8::from(date.month()),
                    date.day()
                )
            };
            if let Some(from) = query.date_from {
                range.insert("gte".into(), text(from).into());
            }
            if let Some(to) = query.date_to {
                range.insert("lte".into(), text(to).into());
            }
            range.insert("format".into(), "yyyy-MM-dd".into());
            filters.push(json!({ "range": { "date": range } }));
        }
        Ok(filters)
    }
}

impl SearchIndex for OpenSearchIndex {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<Vec<UpsertOutcome>, IndexError> {
        // Held across the writes: a rebuild's switch waits for them.
        let shadow = self.shadow.read().await;
        let outcomes = self.bulk(&self.alias, &documents).await?;
        if let Some(shadow) = shadow.as_deref() {
            self.bulk(shadow, &documents).await?;
        }
        self.watch_freshness(
            documents
                .into_iter()
                .zip(&outcomes)
                .filter(|(document, outcome)| {
                    **outcome == UpsertOutcome::Applied
                        && matches!(document, IndexedDocument::Live(_))
                })
                .map(|(document, _)| document),
        );
        Ok(outcomes)
    }

    async fn rebuild(&self) -> Result<RebuildReport, IndexError> {
        let _one = self.rebuilding.try_lock().map_err(|_| {
            IndexError::Conflict("a rebuild is under way already; wait for it to finish".into())
        })?;
        let from = self.current_index().await?;
        let number = from
            .rsplit('-')
            .next()
            .and_then(|number| number.parse::<u64>().ok())
            .unwrap_or(0);
        let to = format!("{}-{:06}", self.alias, number + 1);
        match self.rebuild_into(&from, &to).await {
            Ok(documents) => Ok(RebuildReport {
                from,
                to,
                documents,
            }),
            Err(error) => {
                *self.shadow.write().await = None;
                // Still behind the alias when the switch failed: keep it.
                if self.current_index().await.ok().as_deref() != Some(to.as_str()) {
                    let _ = self.drop_index(&to).await;
                }
                Err(error)
            }
        }
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        let response = self
            .client
            .get(GetParts::IndexId(&self.alias, id))
            .send()
            .await
            .map_err(unavailable("cannot read a document"))?;
        if response.status_code() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status_code().is_success() {
            return Err(failure(response, "cannot read a document").await);
        }
        let body: Value = response
            .json()
            .await
            .map_err(unavailable("cannot read a document"))?;
        if body["found"] != Value::Bool(true) {
            return Ok(None);
        }
        IndexedDocument::from_stored_json(body["_source"].clone())
            .map(Some)
            .map_err(|error| IndexError::Corrupt(format!("{id}: {error}")))
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        let filters = Self::filters(query)?;
        let text = query.text.as_deref().filter(|text| !text.trim().is_empty());
        let must = match text {
            Some(text) => json!([{ "match": { "text": { "query": text, "operator": "and" } } }]),
            None => json!([{ "match_all": {} }]),
        };
        let sort = match query.sort {
            SortOrder::Relevance => json!([{ "_score": "desc" }, { "id": "asc" }]),
            SortOrder::DateAscending => json!([{ "date": "asc" }, { "id": "asc" }]),
            SortOrder::DateDescending => json!([{ "date": "desc" }, { "id": "asc" }]),
        };
        let limit = query.limit.max(1);
        let mut body = json!({
            "size": limit + 1,
            "track_total_hits": false,
            "query": { "bool": { "filter": filters, "must": must } },
            "sort": sort,
        });
        if text.is_some() {
            body["highlight"] = json!({
                "encoder": "html",
                "pre_tags": ["<em>"],
                "post_tags": ["</em>"],
                "fields": { "text": { "number_of_fragments": 1, "fragment_size": 150 } }
            });
        }
        if let Some(after) = &query.after {
            let bad = || {
                IndexError::BadCursor(format!(
                    "cursor position {after:?} is not one this index gave out; pass the \
                     previous page's cursor unchanged"
                ))
            };
            let position: Value = serde_json::from_str(after).map_err(|_| bad())?;
            let valid = position.as_array().is_some_and(|values| {
                values.len() == 2 && values[0].is_number() && values[1].is_string()
            });
            if !valid {
                return Err(bad());
            }
            body["search_after"] = position;
        }
        let body = json_answer(
            self.client
                .search(SearchParts::Index(&[&self.alias]))
                .body(body)
                .send()
                .await,
            "the search failed",
        )
        .await?;
        let mut raw = body["hits"]["hits"].as_array().cloned().unwrap_or_default();
        let more = raw.len() > limit;
        raw.truncate(limit);
        let next = if more {
            raw.last().map(|hit| hit["sort"].to_string())
        } else {
            None
        };
        let mut hits = Vec::with_capacity(raw.len());
        for hit in raw {
            let document: SearchDocument = serde_json::from_value(hit["_source"].clone())
                .map_err(|error| IndexError::Corrupt(error.to_string()))?;
            #[allow(clippy::cast_possible_truncation)]
            let score = match query.sort {
                SortOrder::Relevance => hit["_score"].as_f64().map(|score| score as f32),
                _ => None,
            };
            let highlights = hit["highlight"]["text"]
                .as_array()
                .map(|fragments| {
                    fragments
                        .iter()
                        .filter_map(|fragment| fragment.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            hits.push(SearchHit {
                document,
                score,
                highlights,
            });
        }
        Ok(SearchResults { hits, next })
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        let response = self
            .client
            .indices()
            .refresh(IndicesRefreshParts::Index(&[&self.alias]))
            .send()
            .await
            .map_err(unavailable("cannot refresh"))?;
        if response.status_code().is_success() {
            Ok(())
        } else {
            Err(failure(response, "cannot refresh").await)
        }
    }

    async fn ping(&self) -> Result<(), IndexError> {
        let response = self
            .client
            .ping()
            .send()
            .await
            .map_err(unavailable("the node does not answer"))?;
        if response.status_code().is_success() {
            Ok(())
        } else {
            Err(failure(response, "the node is not healthy").await)
        }
    }
}
