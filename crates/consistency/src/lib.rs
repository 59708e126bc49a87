//! Consistency checks of a source of truth against its replicas: which keys a replica
//! lacks, holds extra, holds at an old version or still holds after a delete, found
//! without shipping every item.
//!
//! - [`View`]: the port a store implements, owner and replica alike: the [`Digest`] of
//!   a [`BucketRange`] and the [`Entry`]s of a small one. Keys live in a fixed, hashed
//!   key space of [`BUCKETS`] buckets ([`bucket`]: the top 12 bits of FNV-1a 64 of the key, finalised),
//!   so that ranges split evenly and a store keeps one digest per bucket up to date in
//!   each write's transaction ([`Digest::add_entry`], [`Digest::remove_entry`]).
//! - [`Digest`]: the count of live entries and the wrapping sum of their [`entry_hash`]es,
//!   additive: the digest of a range is the sum of its halves'. Tombstones do not count,
//!   so stores that keep them for different times still agree.
//! - [`Check`]: compares the digests of the full range, bisects only the ranges whose
//!   digests differ, and at ranges of [`CheckConfig::leaf_buckets`] reads the entries of
//!   both sides and compares them key by key. Each difference is a [`Drift`]
//!   (`MissingInReplica`, `ExtraInReplica`, `ReplicaBehind`, `MissedDelete`,
//!   `ReplicaAhead`); a difference on a key the owner changed after the watermark
//!   (now minus [`CheckConfig::expected_lag`]) is a write in flight, listed in
//!   [`CheckReport::recheck`] for the next round instead. The [`CheckReport`] says what
//!   the check read from each side ([`Cost`]).
//! - [`MemoryView`]: an in-memory view for tests and examples, counting the reads it
//!   serves.
//!
//! # Cost
//!
//! With `B` buckets, `N` items spread evenly over them and `d` differing keys, a check
//! reads `O(d · log B)` digests and `O(d · N / B)` entries from each side (times
//! [`leaf_buckets`](CheckConfig::leaf_buckets)), against `N` entries for a full
//! comparison; with no difference, one digest per side. Each bisection step reads the
//! digest of the left half only: the right half's is the whole minus the left. With
//! `B = 4096`, `N = 100,000` (24 entries a bucket) and 10 differences, that is at most
//! 12 digests and one bucket of about 24 entries a side per difference. The crate's
//! benchmark (`cargo bench -p dovetail-consistency`) measured, per side: 264 entries
//! (0.26% of a full comparison's 100,000), 10 range reads and 85 digests for 10
//! differences; 22,414 entries (22%), 892 range reads and 2,400 digests for 1,000. The
//! `N / B` term grows with the store: at 10 million items a bucket holds 2,400 entries.
//!
//! Reads are not a snapshot: the digests of both sides are read concurrently, and the
//! entries of a range from the replica first, then from the owner, so that a write in
//! flight can only make the replica look behind (and its recent change time sends it to
//! `recheck`), never ahead.
//!
//! # Example
//!
//! ```
//! use dovetail_consistency::{Check, CheckConfig, Drift, MemoryView};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), dovetail_consistency::CheckError> {
//! let owner = MemoryView::new();
//! let replica = MemoryView::new();
//! for i in 0..1_000 {
//!     owner.put(format!("policy-{i}"), 1);
//!     replica.put(format!("policy-{i}"), 1);
//! }
//! owner.put("policy-7", 2); // an update the replica missed
//! owner.delete("policy-8", 2); // a delete the replica missed
//! replica.forget("policy-9"); // an item the replica lost
//!
//! let report = Check::new(&owner, &replica, CheckConfig::default()).run().await?;
//! let mut found: Vec<_> = report.differences.iter().map(|d| (d.key.as_str(), d.drift)).collect();
//! found.sort_by_key(|(key, _)| *key);
//! assert_eq!(
//!     found,
//!     [
//!         ("policy-7", Drift::ReplicaBehind { source_version: 2, replica_version: 1 }),
//!         ("policy-8", Drift::MissedDelete { source_version: 2, replica_version: 1 }),
//!         ("policy-9", Drift::MissingInReplica { source_version: 1 }),
//!     ]
//! );
//! assert!(report.source_cost.entries_read < 10, "three buckets of about one entry each");
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `sqlite` | [`sqlite::SqliteDigests`]: the bucket column, per-bucket digest table, migration, digest and entry reads of a SQLite table, for a [`View`] over it; with `runner`, `SqliteRunStore` |
//! | `dynamodb` | [`dynamodb::DynamoDbDigests`]: per-bucket digest items and entry items of a set of DynamoDB items, kept in each write's `TransactWriteItems`; [`dynamodb::DynamoDbView`] reads them; with `runner`, `DynamoDbRunStore`: run records and the lease in a DynamoDB table |
//! | `runner` | `Runner`: scheduled and requested runs of many [`Check`]s and `Invariant`s, one runner at a time under a lease, repair through the owner (`Repair`), run records (`RunStore`, `MemoryRunStore`), metrics (`runner::metrics`) |
//! | `http` | `runner::http::router`: the staff endpoints `POST /admin/consistency/runs`, `GET /admin/consistency/runs[/{id}]` |
//!
//! A check never writes: repair goes through the owner, which republishes its current
//! state through its outbox (`Repair`), and the replicas' ordinary consumers fix their
//! copies.

mod bucket;
mod check;
mod diff;
mod digest;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
mod error;
mod memory;
mod report;
#[cfg(feature = "runner")]
pub mod runner;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod view;

pub use bucket::{BUCKET_BITS, BUCKETS, BucketRange, bucket, fnv1a64};
pub use check::{Check, CheckConfig};
pub use digest::{Digest, entry_hash};
pub use error::{BoxError, CheckError, ViewError, ViewOperation};
pub use memory::{MemoryReads, MemoryView};
pub use report::{CheckReport, Cost, Difference, Drift, DriftCounts, Side};
pub use view::{Entry, View};

#[cfg(all(feature = "runner", feature = "dynamodb"))]
pub use runner::DynamoDbRunStore;
#[cfg(all(feature = "runner", feature = "sqlite"))]
pub use runner::SqliteRunStore;
#[cfg(feature = "runner")]
pub use runner::{
    Invariant, InvariantRun, MemoryRunStore, Pair, PairRun, Repair, RepairOutcome, RepairPolicy,
    RepairSummary, RunId, RunLease, RunRecord, RunStatus, RunStore, Runner, RunnerBuilder,
    RunnerConfig, RunnerError, SharedView, SkippedKey, Trigger, Violation, Violations,
};

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
