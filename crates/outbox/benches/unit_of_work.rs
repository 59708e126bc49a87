//! Benchmark of the SQLite unit of work (not a timed test): a business write with one
//! event through the outbox, against the same write without an outbox, in the same run.
//!
//! Run with: `cargo bench -p dovetail-outbox --bench unit_of_work`. Every write goes to a
//! file database in WAL mode with `synchronous = FULL`, in its own `BEGIN IMMEDIATE`
//! transaction: the business `INSERT` alone (its row carries `version` 1), the same with
//! one event by `append` (`ExpectedVersion::New`: the outbox keeps the aggregate's version
//! in `dovetail_outbox_aggregates`), and the same with one event by `append_at` (the row's
//! `version` is the event's sequence: the outbox writes no version row). Two more kinds
//! measure the page floor: the write with the rows any outbox in the same file must add
//! and no outbox code (an envelope-sized row appended to a rowid table; that row and a
//! version row keyed by aggregate). The five interleave write by write, and which goes
//! first rotates. Prints each median and the median of the per-round ratios against the
//! write alone (the target is at most 1.3) and against the floor, then the same with
//! `synchronous = NORMAL`, which leaves out the fsync and shows what the outbox costs in
//! CPU and page writes.
//!
//! What the figures showed on the development VM (fsync about 110-175 µs): the outbox first
//! added 50-60 µs, a ratio of 1.35-1.46. About 2 µs of it is Rust (the envelope, its JSON,
//! the event id); the rest is SQLite writing and syncing more pages per commit. The schema
//! dropped the `UNIQUE` on `event_id` and `AUTOINCREMENT` (they guarded nothing the unit of
//! work can do): 1.31-1.37, then medians of 1.22-1.36 as the VM's fsync varied. `append`
//! writes two pages more than the write alone (the outbox row's leaf, the aggregate's
//! version row): two B-trees, since the relay finds events by commit order and the check
//! finds versions by aggregate. `append_at` writes one: paired ratios 1.14 with FULL (1.13
//! to 1.16 per round) where `append` had 1.22-1.26 in the same runs, and 1.51 against 1.93
//! with NORMAL.

#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dovetail_events::envelope::{AggregateRef, Event, EventMetadata, Source};
use dovetail_outbox::ExpectedVersion;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox};
use rusqlite::{Connection, TransactionBehavior, params};

const WRITES_PER_ROUND: usize = 500;
const ROUNDS: usize = 7;

const INSERT_POLICY: &str =
    "INSERT INTO policies (id, customer_id, product_line, premium, status, version)
     VALUES (?1, ?2, 'home', '120.50', 'active', 1)";

#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyIssued {
    policy_id: String,
    customer_id: String,
    premium: String,
}

impl Event for PolicyIssued {
    const TYPE: &'static str = "policy.issued";
    const VERSION: u32 = 1;
}

fn temp_db(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dovetail-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The service's database: WAL, `synchronous = FULL`, a business table.
fn open(path: &Path, synchronous: &str) -> Connection {
    let db = Connection::open(path).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    db.pragma_update(None, "synchronous", synchronous).unwrap();
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS policies (
             id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, product_line TEXT NOT NULL,
             premium TEXT NOT NULL, status TEXT NOT NULL, version INTEGER NOT NULL)",
    )
    .unwrap();
    SqliteOutbox::create_schema(&db).unwrap();
    // The page floor: the rows any outbox in the same file must add, without its code.
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS floor_events (position INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS floor_versions (
             aggregate_type TEXT NOT NULL, aggregate_id TEXT NOT NULL, version INTEGER NOT NULL,
             PRIMARY KEY (aggregate_type, aggregate_id)) WITHOUT ROWID;",
    )
    .unwrap();
    db
}

/// The write with the rows an outbox must add and nothing else: a row as long as an
/// envelope appended to a rowid table (and, with `version_row`, a version row keyed by
/// aggregate), in the same transaction. No outbox code can write fewer pages.
fn floor_write(db: &mut Connection, id: &str, body: &str, version_row: bool) {
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    insert_policy(&tx, id);
    tx.prepare_cached("INSERT INTO floor_events (body) VALUES (?1)")
        .unwrap()
        .execute(params![body])
        .unwrap();
    if version_row {
        tx.prepare_cached(
            "INSERT INTO floor_versions (aggregate_type, aggregate_id, version) VALUES ('policy', ?1, 1)",
        )
        .unwrap()
        .execute(params![id])
        .unwrap();
    }
    tx.commit().unwrap();
}

/// A text as long as the envelope the unit of work stores for policy `id`.
fn envelope_sized(id: &str) -> String {
    let envelope = dovetail_events::envelope::Envelope::new(
        Source::parse("bench").unwrap(),
        AggregateRef::parse("policy", id).unwrap(),
        dovetail_events::envelope::Sequence::FIRST,
        &policy_issued(id),
        EventMetadata::default(),
    )
    .unwrap();
    String::from_utf8(envelope.to_json_bytes()).unwrap()
}

fn policy_issued(id: &str) -> PolicyIssued {
    PolicyIssued {
        policy_id: id.to_owned(),
        customer_id: "cust-7".to_owned(),
        premium: "120.50".to_owned(),
    }
}

/// The write alone, in its own transaction.
fn bare_write(db: &mut Connection, id: &str) {
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    insert_policy(&tx, id);
    tx.commit().unwrap();
}

/// The business write: one policy row, at version 1.
fn insert_policy(tx: &rusqlite::Transaction<'_>, id: &str) {
    tx.prepare_cached(INSERT_POLICY)
        .unwrap()
        .execute(params![id, "cust-7"])
        .unwrap();
}

/// How the unit of work learns the aggregate's version.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Versions {
    /// `append` with `ExpectedVersion::New`: the outbox keeps the version in its own row.
    Outbox,
    /// `append_at(.., 1, ..)`: the business row's `version` column (1, written by the same
    /// `INSERT`) is the version, and the outbox writes no row of its own.
    Own,
}

/// The same write with one event, through the unit of work.
fn outbox_write(db: &mut Connection, outbox: &SqliteOutbox, id: &str, versions: Versions) {
    let mut uow = outbox.begin(db).unwrap();
    insert_policy(uow.transaction(), id);
    let aggregate = AggregateRef::parse("policy", id).unwrap();
    let event = policy_issued(id);
    match versions {
        Versions::Outbox => uow
            .append(
                aggregate,
                ExpectedVersion::New,
                &event,
                EventMetadata::default(),
            )
            .unwrap(),
        Versions::Own => uow
            .append_at(aggregate, 1, &event, EventMetadata::default())
            .unwrap(),
    }
    uow.commit().unwrap();
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn median_ratio(mut ratios: Vec<f64>) -> f64 {
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

fn sorted_ratios(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kinds of write compared, each on a database of its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The business write alone: the baseline.
    Bare,
    /// With one event by `append`.
    Append,
    /// With one event by `append_at`.
    AppendAt,
    /// With an envelope-sized row: the floor of `append_at`.
    FloorOneRow,
    /// With an envelope-sized row and a version row: the floor of `append`.
    FloorTwoRows,
}

impl Kind {
    /// Where this kind's timings are, in the order of [`KINDS`].
    fn index(self) -> usize {
        KINDS.iter().position(|&kind| kind == self).unwrap()
    }
}

const KINDS: [Kind; 5] = [
    Kind::Bare,
    Kind::Append,
    Kind::AppendAt,
    Kind::FloorOneRow,
    Kind::FloorTwoRows,
];

/// Every write of one kind, and the median of each round.
#[derive(Default)]
struct Timings {
    all: Vec<Duration>,
    round_medians: Vec<f64>,
}

/// Runs the comparison with `synchronous`, the kinds interleaved write by write; returns
/// the timings of each kind, in the order of [`KINDS`].
fn compare(synchronous: &str) -> Vec<Timings> {
    let mut dbs: Vec<Connection> = KINDS
        .iter()
        .map(|_| open(&temp_db("bench.db"), synchronous))
        .collect();
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("bench").unwrap()));
    let write = |db: &mut Connection, kind: Kind, id: &str, body: &str| match kind {
        Kind::Bare => bare_write(db, id),
        Kind::Append => outbox_write(db, &outbox, id, Versions::Outbox),
        Kind::AppendAt => outbox_write(db, &outbox, id, Versions::Own),
        Kind::FloorOneRow => floor_write(db, id, body, false),
        Kind::FloorTwoRows => floor_write(db, id, body, true),
    };

    // Untimed writes warm the caches and let the WAL files wrap around once, so that
    // none pays for growing its file during the timed rounds.
    for i in 0..1_000 {
        let id = format!("warm-{i}");
        let body = envelope_sized(&id);
        for (db, &kind) in dbs.iter_mut().zip(&KINDS) {
            write(db, kind, &id, &body);
        }
    }

    let mut timings: Vec<Timings> = KINDS.iter().map(|_| Timings::default()).collect();
    for round in 0..ROUNDS {
        let mut this_round: Vec<Vec<Duration>> = KINDS
            .iter()
            .map(|_| Vec::with_capacity(WRITES_PER_ROUND))
            .collect();
        // Writes alternate one by one, and which goes first rotates too, so that the
        // noise of a shared machine falls on all alike.
        for i in 0..WRITES_PER_ROUND {
            let id = format!("pol-{round}-{i}");
            let body = envelope_sized(&id);
            for turn in 0..KINDS.len() {
                let which = (round + i + turn) % KINDS.len();
                let started = Instant::now();
                write(&mut dbs[which], KINDS[which], &id, &body);
                this_round[which].push(started.elapsed());
            }
        }
        for (timing, writes) in timings.iter_mut().zip(this_round) {
            timing
                .round_medians
                .push(median(writes.clone()).as_secs_f64());
            timing.all.extend(writes);
        }
        // The relay would have published and deleted them meanwhile.
        for db in &dbs {
            db.execute_batch("DELETE FROM dovetail_outbox; DELETE FROM floor_events")
                .unwrap();
        }
    }
    timings
}

/// The per-round ratios of `kind` over `baseline`.
fn round_ratios(timings: &[Timings], kind: Kind, baseline: Kind) -> Vec<f64> {
    timings[kind.index()]
        .round_medians
        .iter()
        .zip(&timings[baseline.index()].round_medians)
        .map(|(a, b)| a / b)
        .collect()
}

fn report(synchronous: &str) {
    println!(
        "synchronous = {synchronous} ({ROUNDS} rounds of {WRITES_PER_ROUND} writes of each kind, interleaved):"
    );
    let timings = compare(synchronous);
    let micros = |kind: Kind| median(timings[kind.index()].all.clone()).as_secs_f64() * 1e6;
    let line = |label: &str, kind: Kind, baseline: Kind, target: &str| {
        let ratios = round_ratios(&timings, kind, baseline);
        println!(
            "  {label:<44} median {:>6.1} µs  paired {:.2} (per round {}){target}",
            micros(kind),
            median_ratio(ratios.clone()),
            sorted_ratios(ratios),
        );
    };
    println!(
        "  {:<44} median {:>6.1} µs",
        "business write alone:",
        micros(Kind::Bare)
    );
    line(
        "+ one event, append (outbox's version):",
        Kind::Append,
        Kind::Bare,
        "; target at most 1.3",
    );
    line(
        "+ one event, append_at (row's version):",
        Kind::AppendAt,
        Kind::Bare,
        "; target at most 1.3",
    );
    println!("  the page floor, rows any same-file outbox writes, without its code:");
    line(
        "+ an envelope-sized row:",
        Kind::FloorOneRow,
        Kind::Bare,
        "",
    );
    line(
        "+ that row and a version row:",
        Kind::FloorTwoRows,
        Kind::Bare,
        "",
    );
    println!("  the outbox's own cost, over its floor:");
    line(
        "append over its floor:",
        Kind::Append,
        Kind::FloorTwoRows,
        "",
    );
    line(
        "append_at over its floor:",
        Kind::AppendAt,
        Kind::FloorOneRow,
        "",
    );
}

fn main() {
    // What the issue asks: durable commits on both sides.
    report("FULL");
    // For comparison, without the fsync on every commit: what the outbox costs in CPU.
    report("NORMAL");
}
