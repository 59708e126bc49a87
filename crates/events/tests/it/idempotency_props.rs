//! Properties of the idempotent consumer over random schedules of deliveries: duplicates,
//! reorderings, consumers that crash holding a claim, several consumers at once, and
//! producers that reuse a key for another payload. Whatever the schedule, each key's
//! effect is applied exactly once and every duplicate gets the stored outcome.
//!
//! The lease-based stores run on a [`ManualClock`]: deliveries go in rounds, consumers
//! work in parallel within a round with the clock standing still (so no live lease
//! expires under a working consumer), and between rounds the clock moves past the lease,
//! so crashed claims expire and are taken over by the redelivery.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use dovetail_events::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, LeaseOwner,
    ManualClock, MemoryIdempotencyStore, StoredOutcome,
};
use proptest::prelude::*;

const KEYS: usize = 4;
const LEASE: Duration = Duration::from_secs(30);
const RETAIN: Duration = Duration::from_secs(24 * 3600);
const MAX_ROUNDS: usize = 200;

/// One delivery of a message. `variant` 1 is a producer reusing the key for another
/// payload; `crash` makes the consumer die right after its claim is granted.
#[derive(Debug, Clone, Copy)]
struct Delivery {
    key: usize,
    variant: u8,
    crash: bool,
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        0..KEYS,
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(key, reused, crash)| Delivery {
            key,
            variant: u8::from(reused),
            crash,
        })
}

fn key_of(key: usize) -> IdempotencyKey {
    IdempotencyKey::new(format!("message-{key}")).unwrap()
}

fn payload_of(key: usize, variant: u8) -> Vec<u8> {
    format!("{{\"message\":{key},\"variant\":{variant}}}").into_bytes()
}

fn outcome_of(key: usize, variant: u8) -> StoredOutcome {
    StoredOutcome::from(format!("effect of message {key}, variant {variant}"))
}

/// What the consumers saw and did.
#[derive(Debug, Default)]
struct Ledger {
    /// How often each key's effect was applied.
    effects: HashMap<usize, u32>,
    /// Which variant's effect was applied, per key.
    applied_variant: HashMap<usize, u8>,
    /// Duplicates answered from the store: key, variant delivered, outcome received.
    duplicates: Vec<(usize, u8, StoredOutcome)>,
    /// Deliveries refused as a reused key: key, variant delivered.
    rejected: Vec<(usize, u8)>,
    /// Claims granted and then abandoned by a crashing consumer.
    crashed_claims: u32,
    /// Claims granted over a crashed consumer's expired lease.
    takeovers: u32,
}

/// Handles one delivery; returns it when the broker would deliver it again.
async fn consume<S: IdempotencyStore>(
    store: &S,
    ledger: &Mutex<Ledger>,
    owner: &LeaseOwner,
    delivery: Delivery,
) -> Option<Delivery> {
    let Delivery {
        key,
        variant,
        crash,
    } = delivery;
    let fingerprint = Fingerprint::of(&payload_of(key, variant));
    match store
        .try_claim(&key_of(key), &fingerprint, owner, LEASE)
        .await
    {
        Ok(ClaimOutcome::Claimed {
            lease,
            taken_over_from,
        }) => {
            if taken_over_from.is_some() {
                ledger.lock().unwrap().takeovers += 1;
            }
            if crash {
                ledger.lock().unwrap().crashed_claims += 1;
                // Died holding the claim: no effect, no complete, no release. The message
                // was not acknowledged, so the broker delivers it again.
                return Some(Delivery {
                    crash: false,
                    ..delivery
                });
            }
            {
                let mut ledger = ledger.lock().unwrap();
                *ledger.effects.entry(key).or_default() += 1;
                ledger.applied_variant.insert(key, variant);
            }
            store
                .complete(&lease, outcome_of(key, variant), RETAIN)
                .await
                .expect("a lease cannot be lost while the clock stands still");
            None
        }
        Ok(ClaimOutcome::Processed(outcome)) => {
            ledger
                .lock()
                .unwrap()
                .duplicates
                .push((key, variant, outcome));
            None
        }
        Ok(ClaimOutcome::InProgress { .. }) => Some(delivery),
        Err(IdempotencyError::PayloadMismatch { .. }) => {
            ledger.lock().unwrap().rejected.push((key, variant));
            None
        }
        Err(error) => panic!("unexpected error: {error:?}"),
    }
}

/// Runs `schedule` through `consumers` parallel consumers until every delivery settled.
async fn simulate<S: IdempotencyStore + 'static>(
    store: S,
    clock: &ManualClock,
    schedule: Vec<Delivery>,
    consumers: usize,
) -> Ledger {
    let store = Arc::new(store);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let owners: Vec<LeaseOwner> = (0..consumers).map(|_| LeaseOwner::random()).collect();
    let mut queue: VecDeque<Delivery> = schedule.into();
    let mut rounds = 0;
    while !queue.is_empty() {
        rounds += 1;
        assert!(rounds <= MAX_ROUNDS, "deliveries never settled: {queue:?}");
        let mut shares = vec![Vec::new(); consumers];
        for (n, delivery) in queue.drain(..).enumerate() {
            shares[n % consumers].push(delivery);
        }
        let workers: Vec<_> = shares
            .into_iter()
            .zip(&owners)
            .map(|(share, owner)| {
                let (store, ledger, owner) =
                    (Arc::clone(&store), Arc::clone(&ledger), owner.clone());
                tokio::spawn(async move {
                    let mut again = Vec::new();
                    for delivery in share {
                        again.extend(consume(&*store, &ledger, &owner, delivery).await);
                    }
                    again
                })
            })
            .collect();
        for worker in workers {
            queue.extend(worker.await.unwrap());
        }
        // Crashed claims expire before the redeliveries come.
        clock.advance(LEASE + Duration::from_millis(1));
    }
    std::mem::take(&mut *ledger.lock().unwrap())
}

fn check(schedule: &[Delivery], ledger: &Ledger) -> Result<(), TestCaseError> {
    for key in 0..KEYS {
        let delivered = schedule
            .iter()
            .filter(|delivery| delivery.key == key)
            .count();
        let applied = ledger.effects.get(&key).copied().unwrap_or(0);
        prop_assert_eq!(
            applied,
            u32::from(delivered > 0),
            "message {} was delivered {} times and applied {} times",
            key,
            delivered,
            applied
        );
    }
    for (key, variant, outcome) in &ledger.duplicates {
        let applied = ledger.applied_variant[key];
        prop_assert_eq!(
            *variant,
            applied,
            "a duplicate of another payload was answered"
        );
        prop_assert_eq!(
            outcome,
            &outcome_of(*key, applied),
            "a duplicate got a wrong outcome"
        );
    }
    for (key, variant) in &ledger.rejected {
        prop_assert_ne!(
            *variant,
            ledger.applied_variant[key],
            "a delivery of the applied payload was refused"
        );
    }
    // Every crashed claim was taken over by a redelivery, and nothing else was.
    prop_assert_eq!(ledger.takeovers, ledger.crashed_claims);
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn start() -> ManualClock {
    ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn memory_store_applies_each_message_once(
        schedule in prop::collection::vec(delivery(), 1..40),
        consumers in 1..=4_usize,
    ) {
        let clock = start();
        let store = MemoryIdempotencyStore::with_clock(clock.clone());
        let ledger = runtime().block_on(simulate(store, &clock, schedule.clone(), consumers));
        check(&schedule, &ledger)?;
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;

    use dovetail_events::idempotency::{MarkOutcome, SqliteIdempotencyStore};
    use rusqlite::{Connection, TransactionBehavior};

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn sqlite_store_applies_each_message_once(
            schedule in prop::collection::vec(delivery(), 1..40),
            consumers in 1..=4_usize,
        ) {
            let clock = start();
            let store = SqliteIdempotencyStore::open_in_memory().unwrap().with_clock(clock.clone());
            let ledger = runtime().block_on(simulate(store, &clock, schedule.clone(), consumers));
            check(&schedule, &ledger)?;
        }

        /// The transactional marker: consumers on their own connections to one database
        /// file write the effect and the marker in one transaction; a crash is a
        /// transaction that never commits.
        #[test]
        fn transactional_markers_apply_each_message_once(
            schedule in prop::collection::vec(delivery(), 1..30),
            consumers in 1..=4_usize,
        ) {
            let path = crate::idempotency_sqlite::fresh_db_path();
            let result = run_transactional(&path, &schedule, consumers);
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            let (effects, duplicates, rejected) = result;
            for key in 0..KEYS {
                let delivered = schedule.iter().filter(|delivery| delivery.key == key).count();
                let applied = effects.get(&key).map_or(0, Vec::len);
                prop_assert_eq!(applied, usize::from(delivered > 0), "message {} applied {} times", key, applied);
            }
            for (key, variant, outcome) in duplicates {
                let applied = effects[&key][0];
                prop_assert_eq!(variant, applied);
                prop_assert_eq!(outcome, outcome_of(key, applied));
            }
            for (key, variant) in rejected {
                prop_assert_ne!(variant, effects[&key][0]);
            }
        }
    }

    type Transactional = (
        HashMap<usize, Vec<u8>>,
        Vec<(usize, u8, StoredOutcome)>,
        Vec<(usize, u8)>,
    );

    fn run_transactional(path: &Path, schedule: &[Delivery], consumers: usize) -> Transactional {
        let setup = Connection::open(path).unwrap();
        setup.pragma_update(None, "journal_mode", "WAL").unwrap();
        setup
            .execute_batch("CREATE TABLE effects (key INTEGER NOT NULL, variant INTEGER NOT NULL)")
            .unwrap();
        SqliteIdempotencyStore::create_schema(&setup).unwrap();

        let queue = Arc::new(Mutex::new(
            schedule.iter().copied().collect::<VecDeque<_>>(),
        ));
        let pending = Arc::new(Mutex::new(schedule.len()));
        let seen = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let workers: Vec<_> = (0..consumers)
            .map(|_| {
                let (queue, pending, seen) =
                    (Arc::clone(&queue), Arc::clone(&pending), Arc::clone(&seen));
                let path = path.to_owned();
                std::thread::spawn(move || {
                    let mut db = Connection::open(&path).unwrap();
                    db.busy_timeout(Duration::from_secs(30)).unwrap();
                    while *pending.lock().unwrap() > 0 {
                        let Some(delivery) = queue.lock().unwrap().pop_front() else {
                            std::thread::yield_now();
                            continue;
                        };
                        match deliver(&mut db, delivery) {
                            Delivered::Settled => {}
                            Delivered::Duplicate(outcome) => {
                                seen.lock().unwrap().0.push((
                                    delivery.key,
                                    delivery.variant,
                                    outcome,
                                ));
                            }
                            Delivered::Rejected => {
                                seen.lock()
                                    .unwrap()
                                    .1
                                    .push((delivery.key, delivery.variant));
                            }
                            Delivered::Again(again) => {
                                queue.lock().unwrap().push_back(again);
                                continue;
                            }
                        }
                        *pending.lock().unwrap() -= 1;
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let mut effects: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut statement = setup.prepare("SELECT key, variant FROM effects").unwrap();
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, usize>(0)?, row.get::<_, u8>(1)?))
            })
            .unwrap();
        for row in rows {
            let (key, variant) = row.unwrap();
            effects.entry(key).or_default().push(variant);
        }
        let (duplicates, rejected) = std::mem::take(&mut *seen.lock().unwrap());
        (effects, duplicates, rejected)
    }

    enum Delivered {
        Settled,
        Duplicate(StoredOutcome),
        Rejected,
        Again(Delivery),
    }

    fn deliver(db: &mut Connection, delivery: Delivery) -> Delivered {
        let Delivery {
            key,
            variant,
            crash,
        } = delivery;
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.execute(
            "INSERT INTO effects (key, variant) VALUES (?1, ?2)",
            (key, variant),
        )
        .unwrap();
        let marked = SqliteIdempotencyStore::mark_processed_in(
            &tx,
            &key_of(key),
            &Fingerprint::of(&payload_of(key, variant)),
            &outcome_of(key, variant),
            RETAIN,
        );
        match marked {
            Ok(MarkOutcome::Marked) if crash => {
                drop(tx); // died before commit: rolled back
                Delivered::Again(Delivery {
                    crash: false,
                    ..delivery
                })
            }
            Ok(MarkOutcome::Marked) => {
                tx.commit().unwrap();
                Delivered::Settled
            }
            Ok(MarkOutcome::Duplicate(outcome)) => Delivered::Duplicate(outcome),
            Err(IdempotencyError::PayloadMismatch { .. }) => Delivered::Rejected,
            other => panic!("unexpected: {other:?}"),
        }
    }
}
