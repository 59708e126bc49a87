//! What a check found: the differences per key and their kinds, the keys to look at
//! again, and what the check cost on each side.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One side of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The owner of the data, the source of truth.
    Source,
    /// The copy being checked.
    Replica,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Source => "source",
            Self::Replica => "replica",
        })
    }
}

/// How a key differs between the owner and the replica. Only differences a reader can
/// see count: two stores agree on a key when both hold it live at the same version, or
/// neither holds it live (whatever tombstones each keeps, or has purged).
///
/// | owner | replica | drift |
/// |---|---|---|
/// | live `v` | nothing | [`MissingInReplica`](Self::MissingInReplica) |
/// | live `v` | live or tombstone `w < v` | [`ReplicaBehind`](Self::ReplicaBehind) |
/// | tombstone `v` | live `w < v` | [`MissedDelete`](Self::MissedDelete) |
/// | nothing | live `w` | [`ExtraInReplica`](Self::ExtraInReplica) |
/// | live `v` | live `w > v`, or tombstone `w >= v` | [`ReplicaAhead`](Self::ReplicaAhead) |
/// | tombstone `v` | live `w >= v` | [`ReplicaAhead`](Self::ReplicaAhead) |
/// | tombstone, or nothing | tombstone, or nothing | none: a reader sees neither |
///
/// A replica tombstone below the owner's live version is `ReplicaBehind` rather than
/// `MissingInReplica`: the replica applied a delete and missed the re-creation after it,
/// and the repair is the same (re-send the owner's current state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Drift {
    /// The owner holds the key live; the replica holds nothing for it.
    MissingInReplica {
        /// The owner's version.
        source_version: u64,
    },
    /// The replica holds the key live; the owner holds nothing for it (it never had it,
    /// or deleted it and has purged the tombstone).
    ExtraInReplica {
        /// The replica's version.
        replica_version: u64,
    },
    /// The owner holds the key live at a higher version than the replica's (live, or
    /// deleted before a re-creation it missed).
    ReplicaBehind {
        /// The owner's version.
        source_version: u64,
        /// The replica's version.
        replica_version: u64,
    },
    /// The owner deleted the key at `source_version`; the replica still holds it live at
    /// a lower version.
    MissedDelete {
        /// The version of the owner's tombstone.
        source_version: u64,
        /// The replica's (live) version.
        replica_version: u64,
    },
    /// The replica holds a state the owner never wrote: a higher version, or the same
    /// version live where the owner deleted it (or deleted where the owner has it live).
    /// Impossible under highest-version-wins, so a bug in the replica's projection or
    /// in the owner's versioning: the check logs it at `error` level and counts it apart.
    ReplicaAhead {
        /// The owner's version.
        source_version: u64,
        /// The replica's version.
        replica_version: u64,
    },
}

impl Drift {
    /// The kind's name in snake case, for metric labels and logs:
    /// `missing_in_replica`, `extra_in_replica`, `replica_behind`, `missed_delete`,
    /// `replica_ahead`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingInReplica { .. } => "missing_in_replica",
            Self::ExtraInReplica { .. } => "extra_in_replica",
            Self::ReplicaBehind { .. } => "replica_behind",
            Self::MissedDelete { .. } => "missed_delete",
            Self::ReplicaAhead { .. } => "replica_ahead",
        }
    }
}

/// A key that differs, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Difference {
    /// The key.
    pub key: String,
    /// How it differs.
    pub drift: Drift,
}

impl Difference {
    pub(crate) fn new(key: String, drift: Drift) -> Self {
        Self { key, drift }
    }
}

/// How many differences of each kind the check found, including those past
/// [`CheckConfig::max_differences`](crate::CheckConfig) in the last range it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DriftCounts {
    /// [`Drift::MissingInReplica`].
    pub missing_in_replica: u64,
    /// [`Drift::ExtraInReplica`].
    pub extra_in_replica: u64,
    /// [`Drift::ReplicaBehind`].
    pub replica_behind: u64,
    /// [`Drift::MissedDelete`].
    pub missed_delete: u64,
    /// [`Drift::ReplicaAhead`]: each one is a bug, not lag.
    pub replica_ahead: u64,
}

impl DriftCounts {
    /// Each kind's name (as [`Drift::kind`] spells it) with its count, in the order of
    /// the fields.
    ///
    /// ```
    /// let counts = dovetail_consistency::DriftCounts::default();
    /// assert_eq!(counts.by_kind()[0], ("missing_in_replica", 0));
    /// ```
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("missing_in_replica", self.missing_in_replica),
            ("extra_in_replica", self.extra_in_replica),
            ("replica_behind", self.replica_behind),
            ("missed_delete", self.missed_delete),
            ("replica_ahead", self.replica_ahead),
        ]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.missing_in_replica
            + self.extra_in_replica
            + self.replica_behind
            + self.missed_delete
            + self.replica_ahead
    }

    pub(crate) fn count(&mut self, drift: Drift) {
        let counter = match drift {
            Drift::MissingInReplica { .. } => &mut self.missing_in_replica,
            Drift::ExtraInReplica { .. } => &mut self.extra_in_replica,
            Drift::ReplicaBehind { .. } => &mut self.replica_behind,
            Drift::MissedDelete { .. } => &mut self.missed_delete,
            Drift::ReplicaAhead { .. } => &mut self.replica_ahead,
        };
        *counter += 1;
    }
}

/// What a check read from one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cost {
    /// Calls of [`View::digest`](crate::View::digest).
    pub digests_read: u64,
    /// Calls of [`View::entries`](crate::View::entries) (range reads).
    pub entry_reads: u64,
    /// Entries those calls returned, tombstones included.
    pub entries_read: u64,
}

/// What a [`Check`](crate::Check) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The keys that differ, in (bucket, key) order, at most
    /// [`max_differences`](crate::CheckConfig) of them.
    pub differences: Vec<Difference>,
    /// `true` when the check stopped at `max_differences`: there may be more drift in
    /// the ranges it did not read, and [`counts`](Self::counts) is a lower bound.
    pub truncated: bool,
    /// Keys that differ but whose owner changed them after the watermark: writes in
    /// flight, not reported as drift this round; look at them again in the next one.
    /// Counts towards `max_differences` with the differences.
    pub recheck: Vec<String>,
    /// How many differences of each kind.
    pub counts: DriftCounts,
    /// The watermark of this round, milliseconds since the Unix epoch: the check's
    /// start minus [`expected_lag`](crate::CheckConfig).
    pub watermark_ms: u64,
    /// What the check read from the owner.
    pub source_cost: Cost,
    /// What the check read from the replica.
    pub replica_cost: Cost,
}

impl CheckReport {
    /// `true` when no difference was found (keys to recheck aside).
    pub fn is_consistent(&self) -> bool {
        self.differences.is_empty() && !self.truncated && self.counts.total() == 0
    }
}
