//! What the services' stores share: the outcome and errors of a write, the request record
//! of an `Idempotency-Key`, a store [opened](OpenedStore) with its relay's on the backend
//! the configuration names ([`open_store`]), and (in [`sqlite`] and `dynamodb`) the
//! one-transaction write on each backend.

mod backend;
#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
mod dynamodb_backfill;
#[cfg(feature = "aws")]
mod dynamodb_repair;
mod repair;
pub mod sqlite;
mod sqlite_view;
mod table_view;

#[cfg(feature = "aws")]
pub use dynamodb_backfill::{SetItems, backfill_digests};
#[cfg(feature = "aws")]
pub use dynamodb_repair::{PER_TRANSACTION, RepublishFuture, republish_items};
pub use repair::{
    REPAIR_BATCH, RepairReport, Republished, RunnerRepair, SkipReason, Skipped, SnapshotRows,
    republish_rows, runner_repair,
};
pub use sqlite_view::SqliteTableView;
pub use table_view::TableView;

pub use backend::{Backend, ServiceStore, open_store};

use std::sync::Arc;

use axum::http::StatusCode;
use dovetail_events::idempotency::Fingerprint;
use sha2::Digest as _;
use tokio::sync::Notify;

use crate::{Problem, RecordedResponse};
use dovetail_outbox::AnyOutboxStore;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A request's `Idempotency-Key`, the fingerprint of what it asked, and the answer to
/// record with the write.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The key, namespaced by operation and caller (`POST /claims:<subject>:<key>`).
    pub key: String,
    /// The fingerprint of the request.
    pub fingerprint: Fingerprint,
    /// The answer a retry gets.
    pub response: RecordedResponse,
}

impl RequestRecord {
    /// The record of `key` sent by `caller` (the verified subject) for `operation` (such
    /// as `POST /claims`, without a `:`), whose request is fingerprinted by `request` (its
    /// parsed body, so formatting does not matter).
    ///
    /// The caller is part of the stored key, so a key is only ever replayed to the caller
    /// who sent it first: another caller sending the same key (guessed, or seen in a log)
    /// makes a request of their own and never gets the first one's recorded answer.
    ///
    /// ```
    /// use dovetail_service_kit::RecordedResponse;
    /// use dovetail_service_kit::store::RequestRecord;
    ///
    /// let answer = RecordedResponse::created("/claims/clm-1", 1, serde_json::json!({}));
    /// let record = RequestRecord::new("POST /claims", "user:1", "key-1", &"body", answer);
    /// assert_eq!(record.key, "POST /claims:user%3A1:key-1");
    /// assert_eq!(record.client_key(), "key-1");
    /// ```
    pub fn new(
        operation: &str,
        caller: &str,
        key: &str,
        request: &impl serde::Serialize,
        response: RecordedResponse,
    ) -> Self {
        Self {
            key: format!("{operation}:{}:{key}", caller_namespace(caller)),
            fingerprint: Fingerprint::of(&serde_json::to_vec(request).unwrap_or_default()),
            response,
        }
    }

    /// The key as the client sent it.
    pub fn client_key(&self) -> &str {
        self.key.splitn(3, ':').nth(2).unwrap_or(self.key.as_str())
    }
}

/// `caller` as a part of a request record's key: escaped, so that no caller's `:` can make
/// their namespace another's; a long one as `%h` and its SHA-256 (which no escaped subject
/// can be), so the stored key stays within [`IdempotencyKey`]'s length.
///
/// [`IdempotencyKey`]: dovetail_events::idempotency::IdempotencyKey
fn caller_namespace(caller: &str) -> String {
    const MAX_CALLER_BYTES: usize = 128;
    let escaped = caller.replace('%', "%25").replace(':', "%3A");
    if escaped.len() <= MAX_CALLER_BYTES {
        return escaped;
    }
    let digest = sha2::Sha256::digest(caller.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("%h{hex}")
}

/// A service's store, opened with what its outbox relay needs: the relay's store on the
/// same database, and the signal the store's commits give the relay.
#[derive(Debug)]
pub struct OpenedStore<S> {
    /// The service's store.
    pub store: S,
    /// The outbox store its relay reads.
    pub relay_store: AnyOutboxStore,
    /// Signalled after each commit of this process (the relay's `wake`).
    pub commits: Arc<Notify>,
}

impl<S> OpenedStore<S> {
    /// The same, with the store wrapped by `wrap` (such as the service's enum over its
    /// backends).
    pub fn map<T>(self, wrap: impl FnOnce(S) -> T) -> OpenedStore<T> {
        OpenedStore {
            store: wrap(self.store),
            relay_store: self.relay_store,
            commits: self.commits,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The change and its event are committed.
    Written,
    /// The request's key was used before with the same request: nothing was written, and
    /// this is the first request's answer.
    Replayed(RecordedResponse),
}

/// Why a store refused or failed a write or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource's version is not the expected one: someone changed (or created) it
    /// since it was read. Read it again and retry.
    #[error("{id} was changed by another request (its version is now {current:?})")]
    VersionConflict {
        /// The resource.
        id: String,
        /// Its current version, when it exists.
        current: Option<u64>,
    },
    /// The `Idempotency-Key` was used before with another request.
    #[error("Idempotency-Key {key:?} was already used with a different request")]
    KeyReused {
        /// The key as the client sent it.
        key: String,
    },
    /// A request with the same key is being processed right now.
    #[error("a request with Idempotency-Key {key:?} is in progress")]
    KeyInProgress {
        /// The key as the client sent it.
        key: String,
    },
    /// The database failed, or held something unreadable, while doing `operation`.
    #[error("the database failed {operation}")]
    Backend {
        /// What was being done, such as `reading claim clm-1`.
        operation: String,
        /// The database's error, or what was wrong with what it held.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl StoreError {
    /// The database failed while doing `operation`, with `source` (an error, or a
    /// message saying what was wrong).
    pub fn backend(
        operation: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Backend {
            operation: operation.into(),
            source: source.into(),
        }
    }

    /// The problem a client gets for this error.
    pub fn into_problem(self) -> Problem {
        match self {
            Self::VersionConflict { id, current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "stale-version",
                "Changed since you read it",
            )
            .detail(format!(
                "{id} was changed by another request while this one ran (now at version \
                 {}); GET it again and retry with its new ETag",
                current.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
            )),
            Self::KeyReused { key } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail(format!(
                "Idempotency-Key {key:?} was already used for a request with a different body; \
                 use a new key for a new request, or resend the original body to get its answer"
            )),
            Self::KeyInProgress { key } => Problem::conflict(
                "request-in-progress",
                format!(
                    "a request with Idempotency-Key {key:?} is being processed; retry in a moment"
                ),
            )
            .retry_after(1),
            error @ Self::Backend { .. } => {
                let error = anyhow::Error::from(error);
                tracing::error!(error = format!("{error:#}"), "store failed");
                Problem::unavailable("the service's database is not answering; retry in a moment")
            }
        }
    }
}

impl From<dovetail_outbox::OutboxError> for StoreError {
    fn from(error: dovetail_outbox::OutboxError) -> Self {
        match error {
            dovetail_outbox::OutboxError::Conflict {
                aggregate_id,
                actual,
                ..
            } => Self::VersionConflict {
                id: aggregate_id,
                current: Some(actual),
            },
            other => Self::backend("writing to the outbox", other),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::backend("querying SQLite", error)
    }
}

#[cfg(test)]
mod tests {
    use super::RequestRecord;
    use crate::RecordedResponse;

    fn record(caller: &str, key: &str) -> RequestRecord {
        let answer = RecordedResponse::created("/x/1", 1, serde_json::json!({}));
        RequestRecord::new("POST /x", caller, key, &"body", answer)
    }

    #[test]
    fn no_caller_and_key_pair_shares_a_stored_key_with_another() {
        // Without escaping, ("a:b", "c") and ("a", "b:c") would both be `POST /x:a:b:c`.
        assert_ne!(record("a:b", "c").key, record("a", "b:c").key);
        assert_ne!(record("a%3Ab", "c").key, record("a:b", "c").key);
        assert_eq!(record("a:b", "c:d").client_key(), "c:d");
    }

    #[test]
    fn a_long_caller_is_hashed_and_the_key_stays_within_the_stored_length() {
        let long = "u".repeat(400);
        let record = record(&long, &"k".repeat(255));
        assert!(record.key.len() <= dovetail_events::idempotency::IdempotencyKey::MAX_LEN);
        assert_eq!(record.client_key(), "k".repeat(255));
        assert_ne!(
            record.key,
            self::record(&"u".repeat(401), &"k".repeat(255)).key
        );
    }
}
