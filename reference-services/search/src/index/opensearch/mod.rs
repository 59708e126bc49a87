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
//! creates the index `<alias>-000001` behind it. Writes name the alias with
//! `require_alias`, so a missing alias is an error, never a new index made on the fly.
//!
//! # Rebuild across instances
//!
//! One rebuild at a time across every instance: the lease is a document in
//! `<alias>-rebuild-lock`, created with `op_type=create` and then written only with the
//! holder's last sequence number (its heartbeat every [`REBUILD_HEARTBEAT`], the check
//! right before the switch, its release once the old index is gone); a lease silent for
//! [`ABANDONED_AFTER`] is taken over with a fenced delete, so of two instances taking it
//! over one wins (see `lease.rs`).
//!
//! Holding the lease, the rebuild creates the next index (`<alias>-000002`) behind a
//! second alias, `<alias>-rebuild`: the signal. Every instance looks for it at least
//! every [`REBUILD_DISCOVERY`] and, while it exists, writes each batch to both aliases
//! (the new index first, so a version read from the old one is already in the new); the
//! rebuild waits twice that long, so every instance writes to both, before it copies the
//! old index into the new one by version, each document built again from its source
//! event, through the rebuild alias (copies, like every write, name an alias with
//! `require_alias`: a deleted index can never come back by a write). Then one `_aliases`
//! call, which fails unless both aliases are where the rebuild left them
//! (`must_exist`), moves the alias to the new index and removes the rebuild alias; the
//! old index is closed to writes with `_block/write`, which waits for the writes in
//! flight (a later one fails and is retried by its consumer, reaching the new index), and
//! copied once more by version for anything that reached it only (a write slower than the
//! discovery interval: until this copy reaches it, a reader can see its older version);
//! then it is deleted and the lease released. A rebuild that fails before its switch
//! deletes its new index; after the switch, or when it cannot tell, it keeps both and
//! says so. A takeover deletes what the abandoned rebuild left behind the rebuild alias,
//! never the live index.
//!
//! Freshness: after a write, one probe (a tombstone `probe:freshness`, never searchable)
//! is indexed with `refresh=wait_for`; when it returns, a refresh has made every document
//! written before it searchable, and `search_freshness_seconds` records their time from
//! event to then. One probe runs at a time: the writes made while it waits go with the
//! next one, so a busy service adds about one request per refresh interval.

mod lease;
mod rebuild;
mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use opensearch::http::StatusCode;
use opensearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use opensearch::indices::{
    IndicesCreateParts, IndicesDeleteParts, IndicesExistsAliasParts, IndicesGetAliasParts,
    IndicesRefreshParts,
};
use opensearch::params::{Refresh, VersionType};
use opensearch::{BulkOperation, BulkParts, GetParts, IndexParts, OpenSearch, SearchParts};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{
    BatchOutcomes, IndexError, RebuildProgress, RebuildReport, SearchHit, SearchIndex, SearchQuery,
    SearchResults, SortOrder, UpsertOutcome, Written,
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
    /// `<alias>-rebuild`: names the new index while a rebuild runs.
    rebuild_alias: String,
    /// This instance, as its rebuild leases and freshness probes name it.
    instance: String,
    /// Whether a rebuild runs (so writes go to both aliases), as last looked up.
    rebuild_seen: Arc<Mutex<RebuildSeen>>,
    /// Whether the index behind the alias was seen to map the consistency fields (an
    /// index made before them does not, until a rebuild).
    view_fields_seen: Arc<std::sync::atomic::AtomicBool>,
    /// This instance's rebuild, if it runs one.
    rebuilding: Arc<Mutex<()>>,
    freshness: Arc<std::sync::Mutex<Freshness>>,
}

/// What an instance last found out about a rebuild under way, and when.
#[derive(Debug, Default)]
struct RebuildSeen {
    under_way: bool,
    checked_at: Option<Instant>,
}

/// Documents written but not yet known to be searchable, and whether a probe runs.
#[derive(Debug, Default)]
struct Freshness {
    pending: Vec<Written>,
    probing: bool,
    probe_id: String,
}

/// The most applied documents waiting for a freshness probe; more are not measured.
const MAX_AWAITING_PROBE: usize = 10_000;

/// How long a freshness probe waits for a refresh before it gives up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a request to OpenSearch may take before the client gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often, at most, an instance looks for a rebuild under way (`<alias>-rebuild`)
/// before a write; a rebuild waits twice this long before it copies.
pub const REBUILD_DISCOVERY: Duration = Duration::from_secs(1);

/// How often a rebuilding instance writes its heartbeat into the new index's `_meta`.
pub const REBUILD_HEARTBEAT: Duration = Duration::from_secs(5);

/// How long a rebuild's lease stays without a heartbeat before the next rebuild takes it
/// over (its instance stopped).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(60);

/// The suffix of the alias that names a rebuild's new index.
pub const REBUILD_ALIAS_SUFFIX: &str = "-rebuild";

/// Why a bulk write failed.
#[derive(Debug)]
enum BulkError {
    /// The alias written does not exist (a rebuild's alias, once the rebuild ended).
    NoSuchAlias,
    /// The request was larger than the node takes (`http.max_content_length`).
    TooLarge,
    /// Anything else.
    Index(IndexError),
}

impl From<IndexError> for BulkError {
    fn from(error: IndexError) -> Self {
        Self::Index(error)
    }
}

impl From<BulkError> for IndexError {
    fn from(error: BulkError) -> Self {
        match error {
            BulkError::NoSuchAlias => {
                Self::Unavailable("the alias the service writes does not exist".into())
            }
            BulkError::TooLarge => Self::Refused(
                "a document is larger than the node takes (http.max_content_length)".into(),
            ),
            BulkError::Index(error) => error,
        }
    }
}

pub(super) fn unix_millis(at: time::OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// The index after `current` behind `alias`: `<alias>-000002` after `<alias>-000001`.
fn next_index(alias: &str, current: &str) -> String {
    let number = current
        .rsplit('-')
        .next()
        .and_then(|number| number.parse::<u64>().ok())
        .unwrap_or(0);
    format!("{alias}-{:06}", number + 1)
}

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
            // For the consistency views (`view.rs`): the type (tombstones' too), the
            // key's bucket, and a live document's entry hash in four 16-bit parts.
            "consistency": view::mapping(),
            // The event the document was built from: kept for rebuilds, never searched.
            "source_event": { "type": "object", "enabled": false },
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
    /// A client of the node at `url` (such as `http://127.0.0.1:9200`), whose requests
    /// give up after [`REQUEST_TIMEOUT`] (a hung node must not hold writes, heartbeats or
    /// the rebuild discovery forever).
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when `url` is not a URL.
    pub fn client(url: &str) -> Result<OpenSearch, IndexError> {
        let bad_url = |error: &dyn std::fmt::Display| {
            IndexError::Unavailable(format!(
                "cannot make an OpenSearch client for {url:?}: {error}; set \
                 index.opensearch_url to the node's URL"
            ))
        };
        let url = opensearch::http::Url::parse(url).map_err(|error| bad_url(&error))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| bad_url(&error))?;
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
        let instance = format!(
            "{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        );
        let index = Self {
            client,
            settings: settings.clone(),
            alias: settings.alias.clone(),
            rebuild_alias: format!("{}{REBUILD_ALIAS_SUFFIX}", settings.alias),
            rebuild_seen: Arc::default(),
            view_fields_seen: Arc::default(),
            rebuilding: Arc::default(),
            freshness: Arc::new(std::sync::Mutex::new(Freshness {
                // One probe document for every instance: it is rewritten, never piles up.
                probe_id: "probe:freshness".to_owned(),
                ..Freshness::default()
            })),
            instance,
        };
        if exists.status_code() == StatusCode::NOT_FOUND {
            let first = format!("{}-000001", index.alias);
            let created = index.create(&first, Some(&index.alias)).await?;
            // Another instance starting at the same time may have made it (with the
            // alias: creation is atomic); without the alias it is not the service's.
            if !created && index.indices_behind(&index.alias).await?.is_empty() {
                return Err(IndexError::Unavailable(format!(
                    "the alias {alias} does not exist but the index {first} does: add the alias \
                     to the index the service should use (POST _aliases), or delete {first}"
                )));
            }
        } else if !exists.status_code().is_success() {
            return Err(failure(exists, "cannot ask whether the alias exists").await);
        }
        Ok(index)
    }

    /// Creates the index `name` with the mapping and settings, behind `alias` if any.
    /// `Ok(false)` when it exists already.
    async fn create(&self, name: &str, alias: Option<&str>) -> Result<bool, IndexError> {
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
        if let Some(alias) = alias {
            body["aliases"] = json!({ alias: {} });
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
        if status.is_success() {
            return Ok(true);
        }
        let text = created.text().await.unwrap_or_default();
        if text.contains("resource_already_exists_exception") {
            Ok(false)
        } else {
            Err(IndexError::Unavailable(format!(
                "OpenSearch refused to create the index {name}: {status}: {text}"
            )))
        }
    }

    /// The index behind the alias.
    ///
    /// # Errors
    /// [`IndexError::Unavailable`] when the node does not answer or the alias names no
    /// single index.
    pub async fn current_index(&self) -> Result<String, IndexError> {
        let indices = self.indices_behind(&self.alias).await?;
        match indices.as_slice() {
            [index] => Ok(index.clone()),
            other => Err(IndexError::Unavailable(format!(
                "the alias {} names {} indices ({other:?}); it must name exactly one: fix it \
                 with POST _aliases",
                self.alias,
                other.len()
            ))),
        }
    }

    /// The indices `alias` names (none when it does not exist).
    async fn indices_behind(&self, alias: &str) -> Result<Vec<String>, IndexError> {
        let sent = self
            .client
            .indices()
            .get_alias(IndicesGetAliasParts::Name(&[alias]))
            .send()
            .await;
        if let Ok(response) = &sent
            && response.status_code() == StatusCode::NOT_FOUND
        {
            return Ok(Vec::new());
        }
        let body = json_answer(sent, "cannot read an alias").await?;
        Ok(body
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn refresh_index(&self, index: &str) -> Result<(), IndexError> {
        json_answer(
            self.client
                .indices()
                .refresh(IndicesRefreshParts::Index(&[index]))
                .send()
                .await,
            "cannot refresh",
        )
        .await
        .map(drop)
    }

    async fn drop_index(&self, index: &str) -> Result<(), IndexError> {
        let response = self
            .client
            .indices()
            .delete(IndicesDeleteParts::Index(&[index]))
            .send()
            .await
            .map_err(unavailable("cannot delete an index"))?;
        if response.status_code().is_success() || response.status_code() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(failure(response, "cannot delete an index").await)
        }
    }

    /// Writes `documents` through `alias` (which must exist: `require_alias`) with their
    /// versions; the outcome of each. A document OpenSearch cannot take (a version beyond
    /// its range, a document larger than `http.max_content_length`) is refused alone: a
    /// request the node finds too large is split until it fits.
    async fn bulk(
        &self,
        alias: &str,
        documents: &[IndexedDocument],
    ) -> Result<BatchOutcomes, BulkError> {
        let mut outcomes: Vec<Option<Result<UpsertOutcome, IndexError>>> =
            vec![None; documents.len()];
        let mut sendable = Vec::with_capacity(documents.len());
        for (position, document) in documents.iter().enumerate() {
            if i64::try_from(document.version()).is_ok() {
                sendable.push(position);
            } else {
                outcomes[position] = Some(Err(IndexError::Refused(format!(
                    "version {} of {} is beyond what OpenSearch can hold",
                    document.version(),
                    document.id()
                ))));
            }
        }
        let mut parts = vec![sendable];
        while let Some(part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            let sent: Vec<&IndexedDocument> = part.iter().map(|&at| &documents[at]).collect();
            match self.bulk_request(alias, &sent).await {
                Ok(items) => {
                    for (&at, outcome) in part.iter().zip(items) {
                        outcomes[at] = Some(outcome);
                    }
                }
                Err(BulkError::TooLarge) if part.len() > 1 => {
                    let (left, right) = part.split_at(part.len() / 2);
                    parts.push(left.to_vec());
                    parts.push(right.to_vec());
                }
                Err(BulkError::TooLarge) => {
                    outcomes[part[0]] = Some(Err(BulkError::TooLarge.into()));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(IndexError::Unavailable(
                        "OpenSearch answered no outcome for a document".into(),
                    ))
                })
            })
            .collect())
    }

    /// One `_bulk` request of `documents` through `alias`.
    async fn bulk_request(
        &self,
        alias: &str,
        documents: &[&IndexedDocument],
    ) -> Result<BatchOutcomes, BulkError> {
        let operations: Vec<BulkOperation<Value>> = documents
            .iter()
            .map(|document| {
                BulkOperation::index(view::with_view_fields(document))
                    .id(document.id())
                    .version(i64::try_from(document.version()).unwrap_or(i64::MAX))
                    .version_type(VersionType::External)
                    .into()
            })
            .collect();
        let sent = self
            .client
            .bulk(BulkParts::Index(alias))
            .require_alias(true)
            .body(operations)
            .send()
            .await;
        if let Ok(response) = &sent
            && response.status_code() == StatusCode::PAYLOAD_TOO_LARGE
        {
            return Err(BulkError::TooLarge);
        }
        let body = json_answer(sent, "the bulk write failed").await?;
        let items = body["items"].as_array().cloned().unwrap_or_default();
        let items = super::one_each(items, documents.len())?;
        if items
            .iter()
            .any(|item| item["index"]["error"]["type"] == "index_not_found_exception")
        {
            return Err(BulkError::NoSuchAlias);
        }
        Ok(items
            .iter()
            .map(|item| item_outcome(&item["index"]))
            .collect())
    }

    /// Queues `applied` for the next freshness probe, starting one when none runs.
    fn watch_freshness(&self, applied: impl Iterator<Item = Written>) {
        let Ok(mut freshness) = self.freshness.lock() else {
            return;
        };
        // A sample is enough for a histogram: while probes do not come back (a refresh
        // interval of -1, a node in trouble), memory stays bounded.
        let room = MAX_AWAITING_PROBE.saturating_sub(freshness.pending.len());
        freshness.pending.extend(applied.take(room));
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
            let sent = tokio::time::timeout(
                PROBE_TIMEOUT,
                self.client
                    .index(IndexParts::IndexId(&self.alias, &probe_id))
                    .require_alias(true)
                    .refresh(Refresh::WaitFor)
                    .body(probe.to_stored_json())
                    .send(),
            )
            .await;
            match sent {
                Ok(Ok(response)) if response.status_code().is_success() => {
                    super::record_freshness(batch, time::OffsetDateTime::now_utc());
                }
                Ok(Ok(response)) => {
                    tracing::warn!(status = %response.status_code(), "freshness probe refused");
                }
                Ok(Err(error)) => tracing::warn!(%error, "freshness probe failed"),
                Err(_) => tracing::warn!(
                    timeout = ?PROBE_TIMEOUT,
                    "a freshness probe waited too long for a refresh; is refresh_interval -1?"
                ),
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
    ) -> Result<BatchOutcomes, IndexError> {
        // During a rebuild the new index is written first: a reader of the old one who
        // saw a version can then never find an older one in the new index after the
        // switch, even when the switch falls between the two writes.
        let mut rebuild_outcomes = None;
        if self.rebuild_under_way().await? {
            match self.bulk(&self.rebuild_alias, &documents).await {
                Ok(outcomes) => rebuild_outcomes = Some(outcomes),
                // The rebuild ended (switched or given up) since this instance looked.
                Err(BulkError::NoSuchAlias) => self.note_rebuild(false).await,
                Err(error) => return Err(error.into()),
            }
        }
        let mut outcomes = self.bulk(&self.alias, &documents).await?;
        // A document the new index did not take is not done: its event comes again (a
        // stale write on the old index then, applied on the new). One the new index took
        // is applied even when the alias had moved to it by the second write, which then
        // found it there.
        for (outcome, rebuild_outcome) in outcomes
            .iter_mut()
            .zip(rebuild_outcomes.into_iter().flatten())
        {
            match (&outcome, rebuild_outcome) {
                (Ok(_), Err(error)) => *outcome = Err(error),
                (Ok(UpsertOutcome::Stale), Ok(UpsertOutcome::Applied)) => {
                    *outcome = Ok(UpsertOutcome::Applied);
                }
                _ => {}
            }
        }
        self.watch_freshness(
            documents
                .iter()
                .zip(&outcomes)
                .filter_map(|(document, outcome)| Written::of(document, outcome)),
        );
        Ok(outcomes)
    }

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        self.run_rebuild(progress).await
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        let response = self
            .client
            .get(GetParts::IndexId(&self.alias, id))
            .send()
            .await
            .map_err(unavailable("cannot read a document"))?;
        let status = response.status_code();
        if status != StatusCode::NOT_FOUND && !status.is_success() {
            return Err(failure(response, "cannot read a document").await);
        }
        let body: Value = response
            .json()
            .await
            .map_err(unavailable("cannot read a document"))?;
        if body["error"]["type"] == "index_not_found_exception" {
            // Not "no such document": the alias itself is gone.
            return Err(IndexError::Unavailable(format!(
                "the alias {} names no index: {}",
                self.alias, body["error"]["reason"]
            )));
        }
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
            "_source": { "excludes": [crate::document::SOURCE_EVENT] },
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
        // A word of 40 bytes or more (split at anything but a letter or digit) is one
        // tantivy's tokenizer drops, from documents and queries: it never matches there.
        // It matches nothing here either, so that both backends answer a query alike
        // rather than this one finding words the other cannot.
        const LONGEST_WORD_BYTES: usize = 39;
        if text.is_some_and(|text| {
            text.split(|c: char| !c.is_alphanumeric())
                .any(|word| word.len() > LONGEST_WORD_BYTES)
        }) {
            return Ok(SearchResults {
                hits: Vec::new(),
                next: None,
            });
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

/// What one item of a `_bulk` answer says of its document.
fn item_outcome(result: &Value) -> Result<UpsertOutcome, IndexError> {
    let status = result["status"].as_u64().unwrap_or(0);
    match status {
        200 | 201 => Ok(UpsertOutcome::Applied),
        // version_conflict_engine_exception: the index holds this version or a higher one.
        409 => Ok(UpsertOutcome::Stale),
        // Overloaded, a shard not ready, an index closed to writes during a rebuild: the
        // same write later will do.
        403 | 429 | 500.. => Err(IndexError::Unavailable(format!(
            "OpenSearch could not write a document now ({status}): {}",
            result["error"]
        ))),
        _ => Err(IndexError::Refused(format!(
            "OpenSearch refused {} ({status}): {}",
            result["_id"], result["error"]
        ))),
    }
}

/// Aborts its task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::next_index;

    #[test]
    fn the_next_index_counts_up_from_the_current_one() {
        assert_eq!(next_index("search", "search-000001"), "search-000002");
        assert_eq!(next_index("search", "search-000099"), "search-000100");
        // An index not made by the service (restored by hand): start the count.
        assert_eq!(next_index("search", "restored"), "search-000001");
    }
}
