//! Benchmark of the SQLite unit of work (not a timed test): a business write with one
//! event through the outbox, against the same write without an outbox, in the same run.
//!
//! Run with: `cargo bench -p dovetail-outbox --bench unit_of_work`. Every write goes to a
//! file database in WAL mode with `synchronous = FULL`, in its own `BEGIN IMMEDIATE`
//! transaction: the business `INSERT` alone (its row carries `version` 1), the same with
//! one event by `append` (`ExpectedVersion::New`: the outbox keeps the aggregate's version
//! in `dovetail_outbox_aggregates`), and the same with one event by `append_at` (the row's
//! `version` is the event's sequence: the outbox writes no version row). The three
//! interleave write by write, and which goes first rotates. Prints each median, the ratio
//! of the medians and the median of the per-round ratios (the target is at most 1.3), then
//! the same with `synchronous = NORMAL`, which leaves out the fsync and shows what the
//! outbox costs in CPU and page writes.
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
    db
}

/// The write alone, in its own transaction.
fn bare_write(db: &mut Connection, id: &str) {
    let tx = db
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.prepare_cached(INSERT_POLICY)
        .unwrap()
        .execute(params![id, "cust-7"])
        .unwrap();
    tx.commit().unwrap();
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
    uow.transaction()
        .prepare_cached(INSERT_POLICY)
        .unwrap()
        .execute(params![id, "cust-7"])
        .unwrap();
    let aggregate = AggregateRef::parse("policy", id).unwrap();
    let event = PolicyIssued {
        policy_id: id.to_owned(),
        customer_id: "cust-7".to_owned(),
        premium: "120.50".to_owned(),
    };
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

/// Medians of one way of writing, over every write of every round.
struct Medians {
    bare: Duration,
    outbox: Duration,
    own: Duration,
}

fn sorted_ratios(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    ratios
        .iter()
        .map(|r| format!("{r:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the comparison with `synchronous` on the three databases; returns the medians
/// over every write of every round, and the median of the per-round ratios (outbox/bare,
/// own/bare).
fn compare(synchronous: &str) -> (Medians, f64, f64) {
    let mut bare_db = open(&temp_db("bare.db"), synchronous);
    let mut outbox_db = open(&temp_db("outbox.db"), synchronous);
    let mut own_db = open(&temp_db("own.db"), synchronous);
    let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("bench").unwrap()));
    let mut bare = Vec::with_capacity(ROUNDS * WRITES_PER_ROUND);
    let mut with_outbox = Vec::with_capacity(ROUNDS * WRITES_PER_ROUND);
    let mut with_own = Vec::with_capacity(ROUNDS * WRITES_PER_ROUND);
    let mut outbox_ratios = Vec::with_capacity(ROUNDS);
    let mut own_ratios = Vec::with_capacity(ROUNDS);

    // Untimed writes warm the caches and let the WAL files wrap around once, so that
    // none pays for growing its file during the timed rounds.
    for i in 0..1_000 {
        bare_write(&mut bare_db, &format!("warm-{i}"));
        outbox_write(
            &mut outbox_db,
            &outbox,
            &format!("warm-{i}"),
            Versions::Outbox,
        );
        outbox_write(&mut own_db, &outbox, &format!("warm-{i}"), Versions::Own);
    }

    for round in 0..ROUNDS {
        let mut bare_round = Vec::with_capacity(WRITES_PER_ROUND);
        let mut outbox_round = Vec::with_capacity(WRITES_PER_ROUND);
        let mut own_round = Vec::with_capacity(WRITES_PER_ROUND);
        // Writes alternate one by one, and which goes first rotates too, so that the
        // noise of a shared machine falls on all alike.
        for i in 0..WRITES_PER_ROUND {
            let id = format!("pol-{round}-{i}");
            for turn in 0..3 {
                let started = Instant::now();
                match (round + i + turn) % 3 {
                    0 => {
                        bare_write(&mut bare_db, &id);
                        bare_round.push(started.elapsed());
                    }
                    1 => {
                        outbox_write(&mut outbox_db, &outbox, &id, Versions::Outbox);
                        outbox_round.push(started.elapsed());
                    }
                    _ => {
                        outbox_write(&mut own_db, &outbox, &id, Versions::Own);
                        own_round.push(started.elapsed());
                    }
                }
            }
        }
        let bare_median = median(bare_round.clone()).as_secs_f64();
        outbox_ratios.push(median(outbox_round.clone()).as_secs_f64() / bare_median);
        own_ratios.push(median(own_round.clone()).as_secs_f64() / bare_median);
        bare.extend(bare_round);
        with_outbox.extend(outbox_round);
        with_own.extend(own_round);
        // The relay would have published and deleted them meanwhile.
        for db in [&outbox_db, &own_db] {
            db.execute("DELETE FROM dovetail_outbox", []).unwrap();
        }
    }
    println!(
        "  per-round ratios, append (sorted):    {}",
        sorted_ratios(outbox_ratios.clone())
    );
    println!(
        "  per-round ratios, append_at (sorted): {}",
        sorted_ratios(own_ratios.clone())
    );
    let medians = Medians {
        bare: median(bare),
        outbox: median(with_outbox),
        own: median(with_own),
    };
    let median_of = |mut ratios: Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    (medians, median_of(outbox_ratios), median_of(own_ratios))
}

fn report(synchronous: &str) {
    println!(
        "synchronous = {synchronous} ({ROUNDS} rounds of {WRITES_PER_ROUND} writes of each kind, interleaved):"
    );
    let (medians, outbox_ratio, own_ratio) = compare(synchronous);
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let bare = medians.bare.as_secs_f64();
    println!(
        "  business write alone:                   median {:>8.1} µs",
        micros(medians.bare)
    );
    println!(
        "  + one event, append (outbox's version): median {:>8.1} µs  ratio {:.2}, paired {outbox_ratio:.2} (target: at most 1.3)",
        micros(medians.outbox),
        medians.outbox.as_secs_f64() / bare,
    );
    println!(
        "  + one event, append_at (row's version): median {:>8.1} µs  ratio {:.2}, paired {own_ratio:.2} (target: at most 1.3)",
        micros(medians.own),
        medians.own.as_secs_f64() / bare,
    );
}

fn main() {
    // What the issue asks: durable commits on both sides.
    report("FULL");
    // For comparison, without the fsync on every commit: what the outbox costs in CPU.
    report("NORMAL");
}
