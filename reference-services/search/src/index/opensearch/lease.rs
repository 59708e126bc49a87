//! [`RebuildLease`]: one rebuild at a time across every instance on an alias, fenced.
//!
//! The lease is one document, `lease`, in the small index `<alias>-rebuild-lock`, written
//! with `op_type=create` (a second taker gets a 409) and from then on only with
//! `if_seq_no`/`if_primary_term` of the holder's last write: its heartbeat every
//! [`REBUILD_HEARTBEAT`](super::REBUILD_HEARTBEAT), the check just before the switch, and
//! its release. A lease whose heartbeat is older than
//! [`ABANDONED_AFTER`](super::ABANDONED_AFTER) (its instance stopped) is taken over by
//! deleting it with the sequence number it was read at, so of two instances taking over
//! the same lease one wins and the other gets a conflict; and a holder that lost its
//! lease finds out at its next fenced write and stops before it switches anything.
//!
//! Earlier builds of the search service named the document `claim`. A live `claim` document counts as a
//! held lease and an abandoned one is taken over like a lease, so an instance of this
//! version never rebuilds beside an older one's rebuild. Older instances do not see
//! `lease`: during a rolling upgrade from them, start no rebuild until every instance
//! runs this version.

use std::sync::Mutex;

use opensearch::http::StatusCode;
use opensearch::{CreateParts, DeleteParts, GetParts, IndexParts, OpenSearch};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{failure, json_answer, unavailable, unix_millis};
use crate::index::IndexError;

/// What the lease document says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LeaseBody {
    /// The instance that holds it.
    pub instance: String,
    /// The index searched before the rebuild.
    pub from: String,
    /// The index the rebuild writes.
    pub to: String,
    /// The holder's last heartbeat, Unix milliseconds.
    pub heartbeat_ms: u64,
}

/// A lease found in place.
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub body: LeaseBody,
    /// Its document's id: `lease`, or `claim` when an older version wrote it.
    id: &'static str,
    seq_no: i64,
    primary_term: i64,
}

/// Whether a lease whose last heartbeat is `heartbeat_ms` is still held at `now_ms`.
pub(super) fn is_live(heartbeat_ms: u64, now_ms: u64) -> bool {
    let limit = u64::try_from(super::ABANDONED_AFTER.as_millis()).unwrap_or(u64::MAX);
    now_ms.saturating_sub(heartbeat_ms) < limit
}

/// The lease document's id.
const LEASE_ID: &str = "lease";
/// Its id before version 0.2, still honoured (see the module documentation).
const LEGACY_LEASE_ID: &str = "claim";

/// The lease this instance holds.
#[derive(Debug)]
pub(super) struct RebuildLease {
    client: OpenSearch,
    lock_index: String,
    body: Mutex<LeaseBody>,
    /// `(seq_no, primary_term)` of this instance's last write of the lease.
    position: Mutex<(i64, i64)>,
}

fn position_of(answer: &Value) -> Option<(i64, i64)> {
    Some((
        answer["_seq_no"].as_i64()?,
        answer["_primary_term"].as_i64()?,
    ))
}

/// The name of the lease's index for `alias`.
pub(super) fn lock_index(alias: &str) -> String {
    format!("{alias}-rebuild-lock")
}

/// The leases on `lock_index`: this version's, and an older version's `claim` (see the
/// module documentation); none when no rebuild holds or left one.
pub(super) async fn find_all(
    client: &OpenSearch,
    lock_index: &str,
) -> Result<Vec<Found>, IndexError> {
    let mut found = Vec::new();
    for id in [LEASE_ID, LEGACY_LEASE_ID] {
        found.extend(find_document(client, lock_index, id).await?);
    }
    Ok(found)
}

/// The lease document `id` on `lock_index`, if it exists.
async fn find_document(
    client: &OpenSearch,
    lock_index: &str,
    id: &'static str,
) -> Result<Option<Found>, IndexError> {
    let response = client
        .get(GetParts::IndexId(lock_index, id))
        .send()
        .await
        .map_err(unavailable("cannot read the rebuild lease"))?;
    if response.status_code() == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let answer = json_answer(Ok(response), "cannot read the rebuild lease").await?;
    let body = serde_json::from_value(answer["_source"].clone()).map_err(|error| {
        IndexError::Corrupt(format!(
            "the rebuild lease `{id}` in {lock_index} is unreadable ({error}); delete that index"
        ))
    })?;
    let (seq_no, primary_term) = position_of(&answer).ok_or_else(|| {
        IndexError::Unavailable("OpenSearch answered the lease without its sequence number".into())
    })?;
    Ok(Some(Found {
        body,
        id,
        seq_no,
        primary_term,
    }))
}

/// Deletes `found`, unless it changed since it was read (then another instance holds or
/// took it: a conflict).
pub(super) async fn take_over(
    client: &OpenSearch,
    lock_index: &str,
    found: &Found,
) -> Result<(), IndexError> {
    let response = client
        .delete(DeleteParts::IndexId(lock_index, found.id))
        .if_seq_no(found.seq_no)
        .if_primary_term(found.primary_term)
        .send()
        .await
        .map_err(unavailable("cannot take over the rebuild lease"))?;
    match response.status_code() {
        status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
        StatusCode::CONFLICT => Err(IndexError::Conflict(format!(
            "another instance is taking over the rebuild of instance {} at the same moment; \
             wait for it to finish",
            found.body.instance
        ))),
        _ => Err(failure(response, "cannot take over the rebuild lease").await),
    }
}

impl RebuildLease {
    /// Writes a new lease with `body`; a conflict when there is one already.
    pub(super) async fn create(
        client: &OpenSearch,
        lock_index: &str,
        body: LeaseBody,
    ) -> Result<Self, IndexError> {
        let response = client
            .create(CreateParts::IndexId(lock_index, LEASE_ID))
            .body(serde_json::to_value(&body).unwrap_or_default())
            .send()
            .await
            .map_err(unavailable("cannot write the rebuild lease"))?;
        if response.status_code() == StatusCode::CONFLICT {
            return Err(IndexError::Conflict(
                "another instance has just started a rebuild; wait for it to finish".into(),
            ));
        }
        let answer = json_answer(Ok(response), "cannot write the rebuild lease").await?;
        let position = position_of(&answer).ok_or_else(|| {
            IndexError::Unavailable(
                "OpenSearch answered the lease without its sequence number".into(),
            )
        })?;
        Ok(Self {
            client: client.clone(),
            lock_index: lock_index.to_owned(),
            body: Mutex::new(body),
            position: Mutex::new(position),
        })
    }

    /// Writes a fresh heartbeat, fenced by this instance's last write: an error when the
    /// lease was taken over meanwhile (`Conflict`) or cannot be written.
    pub(super) async fn beat(&self) -> Result<(), IndexError> {
        let (body, (seq_no, primary_term)) = {
            let mut body = self.body.lock().map_err(|_| poisoned())?;
            body.heartbeat_ms = unix_millis(time::OffsetDateTime::now_utc());
            (body.clone(), *self.position.lock().map_err(|_| poisoned())?)
        };
        let response = self
            .client
            .index(IndexParts::IndexId(&self.lock_index, LEASE_ID))
            .if_seq_no(seq_no)
            .if_primary_term(primary_term)
            .body(serde_json::to_value(&body).unwrap_or_default())
            .send()
            .await
            .map_err(unavailable("cannot write the rebuild heartbeat"))?;
        if matches!(
            response.status_code(),
            StatusCode::CONFLICT | StatusCode::NOT_FOUND
        ) {
            return Err(IndexError::Conflict(format!(
                "this instance's rebuild lease was taken over (its heartbeat was older than \
                 {:?}); the rebuild stops before it switches anything",
                super::ABANDONED_AFTER
            )));
        }
        let answer = json_answer(Ok(response), "cannot write the rebuild heartbeat").await?;
        if let Some(position) = position_of(&answer) {
            *self.position.lock().map_err(|_| poisoned())? = position;
        }
        Ok(())
    }

    /// Deletes the lease if this instance still holds it.
    pub(super) async fn release(&self) {
        let Ok((seq_no, primary_term)) = self.position.lock().map(|position| *position) else {
            return;
        };
        let released = self
            .client
            .delete(DeleteParts::IndexId(&self.lock_index, LEASE_ID))
            .if_seq_no(seq_no)
            .if_primary_term(primary_term)
            .send()
            .await;
        match released {
            Ok(response) if response.status_code().is_success() => {}
            Ok(response) => tracing::warn!(
                status = %response.status_code(),
                "the rebuild lease was not released (taken over?)"
            ),
            Err(error) => {
                tracing::warn!(%error, "cannot release the rebuild lease; the next rebuild takes it over after its heartbeat ages");
            }
        }
    }
}

fn poisoned() -> IndexError {
    IndexError::Unavailable("a rebuild lease's lock was poisoned; restart the service".into())
}

#[cfg(test)]
mod tests {
    use super::is_live;

    #[test]
    fn a_lease_is_live_until_its_heartbeat_is_older_than_the_limit() {
        let limit = u64::try_from(super::super::ABANDONED_AFTER.as_millis()).unwrap_or(u64::MAX);
        let now = 10 * limit;
        assert!(is_live(now, now));
        assert!(is_live(now - limit + 1, now));
        assert!(!is_live(now - limit, now));
        assert!(is_live(now + 5, now), "a clock a little ahead is live");
    }
}
