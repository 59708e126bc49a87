//! What a run found and did, as it is stored and answered: [`RunRecord`] and its parts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::report::{Cost, Difference, DriftCounts};

/// The id of a run: a UUID v7 (time-ordered). Repairs carry it as their events' causation
/// id, so an event republished by a run says which run asked for it.
///
/// ```
/// use dovetail_consistency::RunId;
///
/// let id = RunId::generate();
/// assert_eq!(id.to_string().parse::<RunId>().unwrap(), id);
/// assert!("not-a-uuid".parse::<RunId>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl RunId {
    /// A new id, later than every id generated before it in this process.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// The UUID (to turn into the causation id of a republished event).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Why a run happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The schedule ([`RunnerConfig::interval`](crate::RunnerConfig)).
    Scheduled,
    /// Someone asked ([`Runner::request`](crate::Runner::request)): `by` names them (the
    /// subject of a staff member's token).
    Requested {
        /// Who asked.
        by: String,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Asked for, waiting for the runner that holds the lease.
    Queued,
    /// Being run.
    Running,
    /// Every check and invariant ran (whatever they found).
    Succeeded,
    /// A check or invariant could not run, or the runner lost its lease; what ran is
    /// recorded, [`RunRecord::error`] says what failed.
    Failed,
}

impl RunStatus {
    /// The status as records spell it: `queued`, `running`, `succeeded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Whether the run is over.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// One run: when, why, and per checked pair and invariant what it found and repaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// Why it ran.
    pub trigger: Trigger,
    /// Where it is.
    pub status: RunStatus,
    /// When it was asked for or scheduled (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// When a runner started it.
    pub started_at_ms: Option<u64>,
    /// When it finished.
    pub finished_at_ms: Option<u64>,
    /// The runner that ran it ([`RunnerConfig::owner`](crate::RunnerConfig)).
    pub runner: Option<String>,
    /// Per pair, in the runner's order: what the check found, what was repaired.
    pub pairs: Vec<PairRun>,
    /// Per invariant: the violations found.
    pub invariants: Vec<InvariantRun>,
    /// Why the run failed, when it did.
    pub error: Option<String>,
}

impl RunRecord {
    /// A run not started yet.
    pub fn queued(trigger: Trigger, now_ms: u64) -> Self {
        Self {
            id: RunId::generate(),
            trigger,
            status: RunStatus::Queued,
            created_at_ms: now_ms,
            started_at_ms: None,
            finished_at_ms: None,
            runner: None,
            pairs: Vec::new(),
            invariants: Vec::new(),
            error: None,
        }
    }

    /// The differences found over every pair and the violations over every invariant.
    pub fn findings(&self) -> u64 {
        let drift: u64 = self.pairs.iter().map(|pair| pair.counts.total()).sum();
        let violations: u64 = self
            .invariants
            .iter()
            .map(|invariant| invariant.violations_found)
            .sum();
        drift + violations
    }
}

/// One pair's part of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRun {
    /// The owner's name (the `source` label of the metrics).
    pub source: String,
    /// The replica's name (the `replica` label).
    pub replica: String,
    /// The differences found, by kind (all of them, also those not listed).
    pub counts: DriftCounts,
    /// The first differences found, at most
    /// [`RunnerConfig::differences_kept`](crate::RunnerConfig) of them.
    pub differences: Vec<Difference>,
    /// Whether the check stopped at its most differences, so more may exist.
    pub truncated: bool,
    /// Keys left for the next run: they changed after the watermark (writes in flight).
    pub recheck: usize,
    /// What the check read from the owner.
    pub source_cost: Cost,
    /// What the check read from the replica.
    pub replica_cost: Cost,
    /// How long the check took, in milliseconds.
    pub took_ms: u64,
    /// What the repair did.
    pub repair: RepairSummary,
    /// Why this pair's check or repair failed, when it did.
    pub error: Option<String>,
}

/// What a run's repair of one pair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairSummary {
    /// Whether the pair has a repair and repairs were on.
    pub attempted: bool,
    /// Keys whose owner republished its current state.
    pub republished: Vec<String>,
    /// Keys not republished, each with why.
    pub skipped: Vec<SkippedKey>,
    /// Keys left for a later run: beyond the run's repair budget, or repaired by an
    /// earlier run so recently that its events may still be on their way.
    pub postponed: Vec<String>,
}

/// A key a repair did not republish, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedKey {
    /// The key.
    pub key: String,
    /// Why (the owner's words, or "replica ahead: ...").
    pub reason: String,
}

/// One invariant's part of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantRun {
    /// The invariant's name.
    pub name: String,
    /// The service whose data it reads (the `source` label of the drift metric).
    pub source: String,
    /// The service whose data it holds the source to (the `replica` label).
    pub against: String,
    /// How many violations it found.
    pub violations_found: u64,
    /// The first violations found, at most
    /// [`RunnerConfig::differences_kept`](crate::RunnerConfig) of them.
    pub violations: Vec<crate::Violation>,
    /// How long it took, in milliseconds.
    pub took_ms: u64,
    /// Why it could not run, when it could not.
    pub error: Option<String>,
}
