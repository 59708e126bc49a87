//! What a runner checks: [`Pair`]s of an owner and a replica with the owner's [`Repair`],
//! and [`Invariant`]s across services.

use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::bucket::BucketRange;
use crate::digest::Digest;
use crate::error::{BoxError, ViewError};
use crate::runner::RunId;
use crate::view::{Entry, View};

/// A [`View`] behind an `Arc`, of any type: what lets one runner hold the views of
/// different stores. Made with [`SharedView::new`].
#[derive(Clone)]
pub struct SharedView(Arc<dyn ErasedView>);

impl SharedView {
    /// Shares `view`.
    pub fn new(view: impl View + 'static) -> Self {
        Self(Arc::new(view))
    }
}

impl fmt::Debug for SharedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedView")
    }
}

/// [`View`] with boxed futures, so that it can be a trait object.
trait ErasedView: Send + Sync {
    fn digest_boxed(&self, range: BucketRange) -> BoxFuture<'_, Result<Digest, ViewError>>;
    fn entries_boxed(&self, range: BucketRange) -> BoxFuture<'_, Result<Vec<Entry>, ViewError>>;
}

impl<V: View> ErasedView for V {
    fn digest_boxed(&self, range: BucketRange) -> BoxFuture<'_, Result<Digest, ViewError>> {
        Box::pin(self.digest(range))
    }

    fn entries_boxed(&self, range: BucketRange) -> BoxFuture<'_, Result<Vec<Entry>, ViewError>> {
        Box::pin(self.entries(range))
    }
}

impl View for SharedView {
    async fn digest(&self, range: BucketRange) -> Result<Digest, ViewError> {
        self.0.digest_boxed(range).await
    }

    async fn entries(&self, range: BucketRange) -> Result<Vec<Entry>, ViewError> {
        self.0.entries_boxed(range).await
    }
}

/// What an owner's repair of some keys did: each key given is in exactly one list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairOutcome {
    /// Keys whose current state the owner republished.
    pub republished: Vec<String>,
    /// Keys the owner did not republish, each with why (no such key, refused).
    pub skipped: Vec<(String, String)>,
    /// Keys the owner did not get to in this call (its batch was full): the runner asks
    /// again with them.
    pub deferred: Vec<String>,
}

/// How an owner repairs its replicas: by sending its current state of each key again
/// through its own outbox (never by writing a replica), with `run` as the causation id
/// of what it sends. Republishing a key that had not drifted must be harmless (the
/// replicas keep the highest version), so a repair may be repeated.
pub trait Repair: Send + Sync {
    /// Republishes the current state of `keys`.
    ///
    /// # Errors
    /// When the owner's store fails; nothing the call reported is assumed done.
    fn repair(
        &self,
        keys: Vec<String>,
        run: RunId,
    ) -> BoxFuture<'_, Result<RepairOutcome, BoxError>>;
}

impl<T: Repair + ?Sized> Repair for Arc<T> {
    fn repair(
        &self,
        keys: Vec<String>,
        run: RunId,
    ) -> BoxFuture<'_, Result<RepairOutcome, BoxError>> {
        T::repair(self, keys, run)
    }
}

/// An owner and one of its replicas, named for reports and metric labels, with the
/// owner's repair when it has one.
///
/// ```
/// use dovetail_consistency::{MemoryView, Pair};
///
/// let pair = Pair::new("policy-service", MemoryView::new(), "claim-service", MemoryView::new());
/// assert_eq!(pair.replica_name(), "claim-service");
/// ```
#[derive(Clone)]
pub struct Pair {
    pub(crate) source_name: String,
    pub(crate) source: SharedView,
    pub(crate) replica_name: String,
    pub(crate) replica: SharedView,
    pub(crate) repair: Option<Arc<dyn Repair>>,
}

impl Pair {
    /// `replica` checked against `source` (the owner), without repair.
    pub fn new(
        source_name: impl Into<String>,
        source: impl View + 'static,
        replica_name: impl Into<String>,
        replica: impl View + 'static,
    ) -> Self {
        Self {
            source_name: source_name.into(),
            source: SharedView::new(source),
            replica_name: replica_name.into(),
            replica: SharedView::new(replica),
            repair: None,
        }
    }

    /// The same pair, repaired through `repair` (the owner's).
    #[must_use]
    pub fn repaired_by(mut self, repair: impl Repair + 'static) -> Self {
        self.repair = Some(Arc::new(repair));
        self
    }

    /// The owner's name.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// The replica's name.
    pub fn replica_name(&self) -> &str {
        &self.replica_name
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("source", &self.source_name)
            .field("replica", &self.replica_name)
            .field("repaired", &self.repair.is_some())
            .finish()
    }
}

/// One breach of an [`Invariant`]: which key, what kind (a metric label, snake case),
/// and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The key of the item that breaks the rule (a claim id, say).
    pub key: String,
    /// The kind of breach, such as `policy_missing` (the `kind` label of the drift metric).
    pub kind: String,
    /// What was found, for the operator: "claim c-1 names policy p-9, which ...".
    pub detail: String,
}

/// A rule across services, checked like drift: "every claim's policy exists with the same
/// customer". Reported with the `source` and `against` names it gives, its violations
/// counted by kind in `dovetail_consistency_drift`.
pub trait Invariant: Send + Sync {
    /// The rule's name, such as `claim-policy`.
    fn name(&self) -> &str;
    /// The service whose data the rule reads.
    fn source(&self) -> &str;
    /// The service the data must agree with.
    fn against(&self) -> &str;
    /// The kinds of violation it can report (so each kind's gauge goes back to 0).
    fn kinds(&self) -> &[&'static str];
    /// Every violation, the first `limit` in full (the rest counted).
    ///
    /// # Errors
    /// When the data cannot be read.
    fn violations(&self, limit: usize) -> BoxFuture<'_, Result<Violations, BoxError>>;
}

/// What an [`Invariant`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Violations {
    /// How many violations there are, by kind.
    pub counts: Vec<(String, u64)>,
    /// The first violations found.
    pub listed: Vec<Violation>,
}

impl Violations {
    /// The number of violations over all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, count)| count).sum()
    }
}
