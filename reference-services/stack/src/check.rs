//! `dovetail-stack check` (`cargo xtask stack check`): asks the stack's consistency
//! runner for a run as the stack's staff user, follows it to its end, and prints what it
//! found and repaired.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, bail};
use dovetail_consistency::{RunRecord, RunStatus};
use reqwest::{Client, StatusCode};

use crate::demo::callers::log_in;
use crate::demo::http::expect;
use crate::users::Credentials;

/// How long [`run`] follows a run before giving up on it.
pub const FOLLOW_FOR: Duration = Duration::from_secs(120);

/// Where the check finds the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The gateway (for logging in), such as `http://127.0.0.1:8080`.
    pub gateway: String,
    /// The consistency runner, such as `http://127.0.0.1:8085`.
    pub consistency: String,
}

impl Endpoints {
    /// The stack's fixed ports on this machine.
    pub fn local() -> Self {
        Self {
            gateway: format!("http://127.0.0.1:{}", crate::GATEWAY_PORT),
            consistency: format!("http://127.0.0.1:{}", crate::CONSISTENCY_PORT),
        }
    }

    /// Those of a stack started in this process.
    pub fn of(stack: &crate::RunningStack) -> Self {
        Self {
            gateway: format!("http://{}", stack.gateway),
            consistency: format!("http://{}", stack.consistency),
        }
    }
}

/// Logs in as the staff user of `credentials`, starts a run, follows it until it ends
/// (at most [`FOLLOW_FOR`]), writes its report to `out` and answers the run's record.
///
/// # Errors
/// When logging in, starting or following the run fails, or it does not end in time; the
/// message says which.
pub async fn run(
    endpoints: &Endpoints,
    credentials: &Credentials,
    out: &mut impl Write,
) -> anyhow::Result<RunRecord> {
    let http = Client::new();
    let staff = log_in(
        &http,
        &format!("{}/auth", endpoints.gateway),
        &credentials.staff,
    )
    .await?;
    let runs = format!("{}/admin/consistency/runs", endpoints.consistency);
    let queued = expect(
        http.post(&runs).bearer_auth(&staff.token).send().await,
        StatusCode::ACCEPTED,
        &format!(
            "asking the consistency runner at {} for a run",
            endpoints.consistency
        ),
    )
    .await?;
    let id = queued["id"]
        .as_str()
        .context("the runner answered a run without an id")?
        .to_owned();
    writeln!(out, "Consistency run {id} asked for; following it...")?;
    let started = tokio::time::Instant::now();
    let record = loop {
        let body = expect(
            http.get(format!("{runs}/{id}"))
                .bearer_auth(&staff.token)
                .send()
                .await,
            StatusCode::OK,
            "following the run",
        )
        .await?;
        let record: RunRecord = serde_json::from_value(body)
            .context("the runner answered a record this check cannot read")?;
        if record.status.is_finished() {
            break record;
        }
        if started.elapsed() > FOLLOW_FOR {
            bail!(
                "run {id} is still {:?} after {FOLLOW_FOR:?}: is another stack's runner holding \
                 the lease? GET {runs}/{id} shows it",
                record.status
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    write_report(&record, out)?;
    Ok(record)
}

/// Writes `record` for a reader: per pair what differs and what was repaired, per
/// invariant what breaks it.
///
/// # Errors
/// When `out` cannot be written.
pub fn write_report(record: &RunRecord, out: &mut impl Write) -> std::io::Result<()> {
    let took = record
        .started_at_ms
        .zip(record.finished_at_ms)
        .map_or(0, |(start, end)| end.saturating_sub(start));
    let status = match record.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "FAILED",
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
    };
    writeln!(
        out,
        "Run {} {status} in {took} ms: {} finding(s)",
        record.id,
        record.findings()
    )?;
    if let Some(error) = &record.error {
        writeln!(out, "  error: {error}")?;
    }
    for pair in &record.pairs {
        let counts = pair
            .counts
            .by_kind()
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>();
        writeln!(
            out,
            "  {} -> {}: {} difference(s){}{}; {} key(s) left for the next run (writes in flight); read {} owner and {} replica entries in {} ms",
            pair.source,
            pair.replica,
            pair.counts.total(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(" ({})", counts.join(", "))
            },
            if pair.truncated {
                ", more not listed"
            } else {
                ""
            },
            pair.recheck,
            pair.source_cost.entries_read,
            pair.replica_cost.entries_read,
            pair.took_ms,
        )?;
        for difference in &pair.differences {
            writeln!(out, "    {}: {}", difference.key, difference.drift.kind())?;
        }
        if !pair.repair.republished.is_empty() {
            writeln!(
                out,
                "    republished by the owner: {}",
                pair.repair.republished.join(", ")
            )?;
        }
        for skipped in &pair.repair.skipped {
            writeln!(out, "    not repaired: {}: {}", skipped.key, skipped.reason)?;
        }
        if !pair.repair.postponed.is_empty() {
            writeln!(
                out,
                "    repair postponed: {}",
                pair.repair.postponed.join(", ")
            )?;
        }
        if let Some(error) = &pair.error {
            writeln!(out, "    error: {error}")?;
        }
    }
    for invariant in &record.invariants {
        writeln!(
            out,
            "  invariant {} ({} against {}): {} violation(s) in {} ms",
            invariant.name,
            invariant.source,
            invariant.against,
            invariant.violations_found,
            invariant.took_ms
        )?;
        for violation in &invariant.violations {
            writeln!(out, "    {}: {}", violation.kind, violation.detail)?;
        }
        if let Some(error) = &invariant.error {
            writeln!(out, "    error: {error}")?;
        }
    }
    Ok(())
}
