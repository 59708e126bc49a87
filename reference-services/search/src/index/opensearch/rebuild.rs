//! The OpenSearch rebuild, across instances: see "Rebuild across instances" in the
//! parent module. The lease is `lease.rs`'s `RebuildLease`; this module
//! holds the steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use opensearch::SearchParts;
use opensearch::http::StatusCode;
use opensearch::indices::{IndicesAddBlockParts, IndicesExistsAliasParts};
use serde_json::{Value, json};

use super::lease::{self, LeaseBody, RebuildLease};
use super::{
    AbortOnDrop, OpenSearchIndex, REBUILD_DISCOVERY, REBUILD_HEARTBEAT, failure, json_answer,
    next_index, unavailable, unix_millis,
};
use crate::index::{IndexError, RebuildPhase, RebuildProgress, RebuildReport};

/// How many times the steps after the switch are tried before the rebuild gives up (the
/// old index is then kept, and the error says what to do).
const LATE_COPY_ATTEMPTS: u32 = 5;

impl OpenSearchIndex {
    /// [`SearchIndex::rebuild`](crate::index::SearchIndex::rebuild) on OpenSearch.
    pub(super) async fn run_rebuild(
        &self,
        progress: &RebuildProgress,
    ) -> Result<RebuildReport, IndexError> {
        let _one = self.rebuilding.try_lock().map_err(|_| {
            IndexError::Conflict(
                "a rebuild by this instance is under way already; wait for it to finish".into(),
            )
        })?;
        let from = self.current_index().await?;
        let to = next_index(&self.alias, &from);
        let lease = Arc::new(self.take_lease(&from, &to).await?);
        let result = self.rebuild_under_lease(&lease, &from, &to, progress).await;
        if let Err(error) = &result {
            self.clean_up_after(error, &from, &to).await;
        }
        // Held until the old index is gone: no second rebuild meanwhile.
        lease.release().await;
        result
    }

    /// Takes the lease of the rebuild from `from` into `to` for this instance and creates
    /// `to` behind the rebuild alias. A live lease of another instance (an older version's
    /// `claim` too) is a conflict; an abandoned one is taken over, and what its rebuild
    /// left is cleared.
    async fn take_lease(&self, from: &str, to: &str) -> Result<RebuildLease, IndexError> {
        let lock_index = lease::lock_index(&self.alias);
        self.create(&lock_index, None).await?;
        let now = unix_millis(time::OffsetDateTime::now_utc());
        let found = lease::find_all(&self.client, &lock_index).await?;
        if let Some(live) = found
            .iter()
            .find(|found| lease::is_live(found.body.heartbeat_ms, now))
        {
            return Err(IndexError::Conflict(format!(
                "a rebuild into {} by instance {} is under way (last heartbeat {} s ago); \
                 wait for it to finish",
                live.body.to,
                live.body.instance,
                now.saturating_sub(live.body.heartbeat_ms) / 1000
            )));
        }
        for found in found {
            tracing::warn!(
                instance = %found.body.instance,
                index = %found.body.to,
                "taking over a rebuild whose instance stopped"
            );
            lease::take_over(&self.client, &lock_index, &found).await?;
            self.clear_abandoned(&found.body).await?;
        }
        let lease = RebuildLease::create(
            &self.client,
            &lock_index,
            LeaseBody {
                instance: self.instance.clone(),
                from: from.to_owned(),
                to: to.to_owned(),
                heartbeat_ms: now,
            },
        )
        .await?;
        if let Err(error) = self.create_target(to).await {
            lease.release().await;
            return Err(error);
        }
        Ok(lease)
    }

    /// Clears what the abandoned rebuild of `body` left: its half-built index (never the
    /// live one), and the rebuild alias with it.
    async fn clear_abandoned(&self, body: &LeaseBody) -> Result<(), IndexError> {
        let live = self.indices_behind(&self.alias).await?;
        for index in self.indices_behind(&self.rebuild_alias).await? {
            if live.contains(&index) {
                continue;
            }
            tracing::warn!(%index, "deleting the half-built index of an abandoned rebuild");
            self.drop_index(&index).await?;
        }
        if live.contains(&body.to) && body.from != body.to {
            tracing::warn!(
                old = %body.from,
                new = %body.to,
                "an abandoned rebuild had switched but not finished: the old index, if still \
                 there, may hold writes made around the switch; copy it into the alias by \
                 version and delete it"
            );
        }
        Ok(())
    }

    /// Creates `to` behind the rebuild alias. Holding the lease, no other instance
    /// creates indices, so an index of that name is what a failed rebuild left.
    async fn create_target(&self, to: &str) -> Result<(), IndexError> {
        if self.create(to, Some(&self.rebuild_alias)).await? {
            return Ok(());
        }
        if self
            .indices_behind(&self.alias)
            .await?
            .iter()
            .any(|live| live == to)
        {
            return Err(IndexError::Unavailable(format!(
                "{to}, the index a rebuild would write, is behind the alias {}: fix the alias \
                 with POST _aliases",
                self.alias
            )));
        }
        self.drop_index(to).await?;
        if self.create(to, Some(&self.rebuild_alias)).await? {
            Ok(())
        } else {
            Err(IndexError::Unavailable(format!(
                "cannot create {to}: it came back as soon as it was deleted"
            )))
        }
    }

    /// The steps once the lease is held; see the parent module's documentation.
    async fn rebuild_under_lease(
        &self,
        lease: &Arc<RebuildLease>,
        from: &str,
        to: &str,
        progress: &RebuildProgress,
    ) -> Result<RebuildReport, IndexError> {
        self.note_rebuild(true).await;
        let lost = Arc::new(AtomicBool::new(false));
        let _heartbeat = heartbeat(Arc::clone(lease), Arc::clone(&lost));
        progress.enter(RebuildPhase::WaitingForWriters);
        tokio::time::sleep(2 * REBUILD_DISCOVERY).await;
        progress.enter(RebuildPhase::Copying);
        let (mut documents, mut rederived) = self.copy(from, &self.rebuild_alias, progress).await?;
        progress.enter(RebuildPhase::Switching);
        // The last fenced write before the switch: a lease taken over stops here.
        if lost.load(Ordering::SeqCst) {
            return Err(taken_over());
        }
        lease.beat().await?;
        self.switch(from, to).await?;
        self.note_rebuild(false).await;
        progress.enter(RebuildPhase::CopyingLateWrites);
        let mut attempt = 0;
        let (late, late_rederived) = loop {
            let closed_and_copied = async {
                self.close_to_writes(from).await?;
                self.copy(from, &self.alias, progress).await
            };
            match closed_and_copied.await {
                Ok(copied) => break copied,
                Err(error) if attempt < LATE_COPY_ATTEMPTS => {
                    attempt += 1;
                    tracing::warn!(%error, attempt, "rebuild: closing and copying the old index");
                    tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                }
                Err(error) => {
                    return Err(IndexError::Unavailable(format!(
                        "searches and writes use {to} now, but the old index {from} could not \
                         be closed and copied once more ({error}): it is kept; documents \
                         written to it only around the switch come back with their next \
                         event, or copy {from} into the alias {} by version (version_type \
                         external) and delete it",
                        self.alias
                    )));
                }
            }
        };
        documents += late;
        rederived += late_rederived;
        progress.enter(RebuildPhase::DroppingOld);
        self.drop_index(from).await?;
        Ok(RebuildReport {
            from: from.to_owned(),
            to: to.to_owned(),
            documents,
            rederived,
        })
    }

    /// After a failed rebuild: before the switch, the half-built index goes (and the
    /// rebuild alias with it); after it, or when it cannot be told, everything stays.
    async fn clean_up_after(&self, error: &IndexError, from: &str, to: &str) {
        match self.current_index().await {
            Ok(current) if current == from => {
                self.note_rebuild(false).await;
                if let Err(error) = self.drop_index(to).await {
                    tracing::warn!(%error, index = %to, "cannot delete a failed rebuild's index; the next rebuild clears it");
                }
            }
            Ok(current) => {
                tracing::warn!(%error, %current, "the rebuild failed after its switch; both indices are kept");
            }
            Err(read) => {
                tracing::warn!(%error, %read, "the rebuild failed and the alias cannot be read; both indices are kept");
            }
        }
    }

    /// Copies every document and tombstone of `from` into `alias` by version, each
    /// document built again from its source event: pages of `from` in id order, written
    /// with their external versions (a copy older than a live write is a 409, and stays
    /// out). `_reindex` could copy server-side, but not re-derive, and it is a module some
    /// distributions leave out. Written through an alias (`require_alias`), never by
    /// index name, so a copy can never bring a deleted index back. How many were copied,
    /// and of them re-derived.
    async fn copy(
        &self,
        from: &str,
        alias: &str,
        progress: &RebuildProgress,
    ) -> Result<(u64, u64), IndexError> {
        self.refresh_index(from).await?;
        let (mut copied, mut rederived) = (0, 0);
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
                return Ok((copied, rederived));
            };
            after = Some(last["sort"].clone());
            // Built from the source event first: a document the current code can no
            // longer read as stored is still rebuilt.
            let (documents, fresh) =
                crate::index::rederive_stored(hits.iter().map(|hit| hit["_source"].clone()), from)?;
            for outcome in self.bulk(alias, &documents).await? {
                outcome?;
            }
            copied += documents.len() as u64;
            rederived += fresh;
            progress.copied(documents.len() as u64);
        }
    }

    /// Whether a rebuild runs: looked up at most every [`REBUILD_DISCOVERY`].
    pub(super) async fn rebuild_under_way(&self) -> Result<bool, IndexError> {
        let mut seen = self.rebuild_seen.lock().await;
        if let Some(checked_at) = seen.checked_at
            && checked_at.elapsed() < REBUILD_DISCOVERY
        {
            return Ok(seen.under_way);
        }
        let response = self
            .client
            .indices()
            .exists_alias(IndicesExistsAliasParts::Name(&[&self.rebuild_alias]))
            .send()
            .await
            .map_err(unavailable("cannot ask whether a rebuild runs"))?;
        seen.under_way = match response.status_code() {
            StatusCode::NOT_FOUND => false,
            status if status.is_success() => true,
            _ => return Err(failure(response, "cannot ask whether a rebuild runs").await),
        };
        seen.checked_at = Some(Instant::now());
        Ok(seen.under_way)
    }

    /// Records what this instance knows of a rebuild without looking it up.
    pub(super) async fn note_rebuild(&self, under_way: bool) {
        let mut seen = self.rebuild_seen.lock().await;
        seen.under_way = under_way;
        seen.checked_at = Some(Instant::now());
    }

    /// Moves the alias from `from` to `to` and removes the rebuild alias, in one step
    /// that fails unless both aliases are where this rebuild left them (`must_exist`).
    async fn switch(&self, from: &str, to: &str) -> Result<(), IndexError> {
        json_answer(
            self.client
                .indices()
                .update_aliases()
                .body(json!({
                    "actions": [
                        { "remove": { "index": from, "alias": self.alias, "must_exist": true } },
                        { "add": { "index": to, "alias": self.alias } },
                        { "remove": { "index": to, "alias": self.rebuild_alias, "must_exist": true } }
                    ]
                }))
                .send()
                .await,
            "cannot switch the alias",
        )
        .await
        .map(drop)
    }

    /// Closes `index` to writes, once the writes in flight are done (`_block/write`).
    async fn close_to_writes(&self, index: &str) -> Result<(), IndexError> {
        json_answer(
            self.client
                .indices()
                .add_block(IndicesAddBlockParts::IndexBlock(&[index], "write"))
                .send()
                .await,
            "cannot close the old index to writes",
        )
        .await
        .map(drop)
    }
}

fn taken_over() -> IndexError {
    IndexError::Conflict(
        "this instance's rebuild lease was taken over; the rebuild stopped before its switch"
            .into(),
    )
}

/// Writes `lease`'s heartbeat every [`REBUILD_HEARTBEAT`] until dropped; sets `lost` when
/// the lease was taken over.
fn heartbeat(lease: Arc<RebuildLease>, lost: Arc<AtomicBool>) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(REBUILD_HEARTBEAT).await;
            match lease.beat().await {
                Ok(()) => {}
                Err(IndexError::Conflict(message)) => {
                    tracing::warn!(%message, "rebuild lease lost");
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(error) => tracing::warn!(%error, "rebuild heartbeat"),
            }
        }
    }))
}
