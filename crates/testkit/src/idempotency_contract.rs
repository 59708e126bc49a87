//! The contract suite of `dovetail_events::idempotency::IdempotencyStore`: the checks
//! every implementation passes, the in-memory one and those on real servers alike.
//!
//! Each check takes a fresh store and uses keys of its own, so checks run in parallel
//! against one server. They run with real time and short leases ([`LEASE`], 300 ms), so
//! the whole suite takes a few seconds. Run them one test each with
//! [`idempotency_contract_tests!`](crate::idempotency_contract_tests), or all in one test
//! with [`run_all`].
//!
//! # Example
//! ```
//! mod memory_store {
//!     use dovetail_events::idempotency::MemoryIdempotencyStore;
//!
//!     // One #[tokio::test] per check.
//!     dovetail_testkit::idempotency_contract_tests!(|| async { MemoryIdempotencyStore::new() });
//! }
//! # fn main() {}
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dovetail_events::idempotency::{
    ClaimOutcome, Fingerprint, IdempotencyError, IdempotencyKey, IdempotencyStore, Lease,
    LeaseOwner, StoredOutcome,
};

/// The lease the checks take when they want it to expire: 300 ms.
pub const LEASE: Duration = Duration::from_millis(300);

/// How long past [`LEASE`] a check waits for a lease to be surely expired.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(250);

/// A lease that does not expire during a check.
pub const LONG_LEASE: Duration = Duration::from_secs(60);

/// A retention that does not end during a check.
pub const LONG_RETAIN: Duration = Duration::from_secs(3600);

/// How many consumers race for one key in [`concurrent_claims_have_one_winner`].
pub const RACERS: usize = 8;

/// The names of the checks, in the order [`run_all`] runs them.
pub const CHECKS: [&str; 13] = [
    "first_claim_is_claimed",
    "duplicate_after_complete_gets_the_stored_outcome",
    "concurrent_claims_have_one_winner",
    "expired_lease_is_taken_over_and_the_old_lease_is_fenced",
    "fencing_is_by_token_not_by_owner",
    "expired_lease_not_taken_over_can_still_complete",
    "heartbeat_keeps_a_lease_alive",
    "release_lets_the_next_claim_succeed_at_once",
    "reused_key_with_another_payload_is_rejected",
    "processed_records_expire_after_retain",
    "keys_are_independent",
    "completing_twice_with_the_same_lease_is_harmless",
    "lost_leases_cannot_heartbeat_complete_or_release",
];

/// Runs every check in turn, each on a store from `make_store`.
///
/// # Panics
/// When a check fails; the message names the check and what went wrong.
pub async fn run_all<S, F, Fut>(make_store: F)
where
    S: IdempotencyStore + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    first_claim_is_claimed(make_store().await).await;
    duplicate_after_complete_gets_the_stored_outcome(make_store().await).await;
    concurrent_claims_have_one_winner(make_store().await).await;
    expired_lease_is_taken_over_and_the_old_lease_is_fenced(make_store().await).await;
    fencing_is_by_token_not_by_owner(make_store().await).await;
    expired_lease_not_taken_over_can_still_complete(make_store().await).await;
    heartbeat_keeps_a_lease_alive(make_store().await).await;
    release_lets_the_next_claim_succeed_at_once(make_store().await).await;
    reused_key_with_another_payload_is_rejected(make_store().await).await;
    processed_records_expire_after_retain(make_store().await).await;
    keys_are_independent(make_store().await).await;
    completing_twice_with_the_same_lease_is_harmless(make_store().await).await;
    lost_leases_cannot_heartbeat_complete_or_release(make_store().await).await;
}

/// One `#[tokio::test]` per check of the contract, each on a store from `$make_store`
/// (an expression giving a closure that returns a future of the store). Needs `tokio`
/// with the `macros` and `rt-multi-thread` features in the calling crate.
///
/// # Example
/// ```
/// mod memory_store {
///     use dovetail_events::idempotency::MemoryIdempotencyStore;
///     dovetail_testkit::idempotency_contract_tests!(|| async { MemoryIdempotencyStore::new() });
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! idempotency_contract_tests {
    ($make_store:expr) => {
        $crate::idempotency_contract_tests!(@tests $make_store;
            first_claim_is_claimed,
            duplicate_after_complete_gets_the_stored_outcome,
            concurrent_claims_have_one_winner,
            expired_lease_is_taken_over_and_the_old_lease_is_fenced,
            fencing_is_by_token_not_by_owner,
            expired_lease_not_taken_over_can_still_complete,
            heartbeat_keeps_a_lease_alive,
            release_lets_the_next_claim_succeed_at_once,
            reused_key_with_another_payload_is_rejected,
            processed_records_expire_after_retain,
            keys_are_independent,
            completing_twice_with_the_same_lease_is_harmless,
            lost_leases_cannot_heartbeat_complete_or_release,
        );
    };
    (@tests $make_store:expr; $($check:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let store = ($make_store)().await;
                $crate::idempotency_contract::$check(store).await;
            }
        )+
    };
}

/// A key nobody else uses.
///
/// # Panics
/// Never: the key is a short prefix and a UUID.
pub fn fresh_key(prefix: &str) -> IdempotencyKey {
    IdempotencyKey::new(format!("{prefix}-{}", uuid::Uuid::new_v4()))
        .expect("a prefix and a UUID make a valid key")
}

fn payload(n: u32) -> Fingerprint {
    Fingerprint::of(format!("{{\"payload\":{n}}}").as_bytes())
}

fn outcome(text: &str) -> StoredOutcome {
    StoredOutcome::from(text)
}

async fn claim<S: IdempotencyStore>(
    store: &S,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    owner: &LeaseOwner,
    lease: Duration,
) -> ClaimOutcome {
    match store.try_claim(key, fingerprint, owner, lease).await {
        Ok(outcome) => outcome,
        Err(error) => panic!("try_claim({key}) failed: {}", crate::error_chain(&error)),
    }
}

/// Claims and expects a lease.
async fn claim_lease<S: IdempotencyStore>(
    store: &S,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    owner: &LeaseOwner,
    lease: Duration,
) -> (Lease, Option<LeaseOwner>) {
    match claim(store, key, fingerprint, owner, lease).await {
        ClaimOutcome::Claimed {
            lease,
            taken_over_from,
        } => (lease, taken_over_from),
        other => panic!("expected the claim of {key} to be granted, got {other:?}"),
    }
}

fn ok<T, E: std::error::Error + 'static>(what: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("{what} failed: {}", crate::error_chain(&error)))
}

fn expect_lost<T: Debug>(what: &str, result: Result<T, IdempotencyError>) {
    match result {
        Err(IdempotencyError::LeaseLost { .. }) => {}
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

fn expect_mismatch<T: Debug>(
    what: &str,
    result: Result<T, IdempotencyError>,
    stored: &Fingerprint,
    presented: &Fingerprint,
) {
    match result {
        Err(IdempotencyError::PayloadMismatch {
            stored: actual_stored,
            presented: actual_presented,
            ..
        }) => {
            assert_eq!(actual_stored, *stored, "{what}: the stored fingerprint");
            assert_eq!(
                actual_presented, *presented,
                "{what}: the presented fingerprint"
            );
        }
        other => panic!("{what}: expected PayloadMismatch, got {other:?}"),
    }
}

async fn wait_for_expiry() {
    tokio::time::sleep(LEASE + EXPIRY_MARGIN).await;
}

/// The first claim of a key is granted, to the caller, for about the lease asked.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn first_claim_is_claimed<S: IdempotencyStore>(store: S) {
    let key = fresh_key("first");
    let owner = LeaseOwner::random();
    let before = SystemTime::now();
    let (lease, taken_over_from) = claim_lease(&store, &key, &payload(1), &owner, LONG_LEASE).await;
    assert_eq!(taken_over_from, None, "a first claim takes nothing over");
    assert_eq!(lease.key(), &key);
    assert_eq!(lease.owner(), &owner);
    assert!(lease.fencing_token() > 0, "fencing tokens start above 0");
    // Allow for a store that uses its server's clock.
    let earliest = before + LONG_LEASE - Duration::from_secs(5);
    let latest = SystemTime::now() + LONG_LEASE + Duration::from_secs(5);
    assert!(
        lease.held_until() >= earliest && lease.held_until() <= latest,
        "held_until {:?} is about the lease asked for from now",
        lease.held_until()
    );
}

/// A duplicate of a completed key, by any owner, gets the stored outcome.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn duplicate_after_complete_gets_the_stored_outcome<S: IdempotencyStore>(store: S) {
    let key = fresh_key("duplicate");
    let owner = LeaseOwner::random();
    let (lease, _) = claim_lease(&store, &key, &payload(1), &owner, LONG_LEASE).await;
    ok(
        "complete",
        store
            .complete(&lease, outcome("created c-1"), LONG_RETAIN)
            .await,
    );
    for who in [owner, LeaseOwner::random()] {
        assert_eq!(
            claim(&store, &key, &payload(1), &who, LONG_LEASE).await,
            ClaimOutcome::Processed(outcome("created c-1")),
            "a duplicate gets the stored outcome"
        );
    }
    // An empty outcome is an outcome too.
    let key = fresh_key("duplicate-empty");
    let (lease, _) =
        claim_lease(&store, &key, &payload(2), &LeaseOwner::random(), LONG_LEASE).await;
    ok(
        "complete",
        store
            .complete(&lease, StoredOutcome::empty(), LONG_RETAIN)
            .await,
    );
    assert_eq!(
        claim(&store, &key, &payload(2), &LeaseOwner::random(), LONG_LEASE).await,
        ClaimOutcome::Processed(StoredOutcome::empty())
    );
}

/// [`RACERS`] consumers claim one key at once: one gets it, the others see it in progress.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn concurrent_claims_have_one_winner<S: IdempotencyStore + 'static>(store: S) {
    let store = Arc::new(store);
    let key = fresh_key("race");
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, key, start) = (Arc::clone(&store), key.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                claim(
                    &*store,
                    &key,
                    &payload(1),
                    &LeaseOwner::random(),
                    LONG_LEASE,
                )
                .await
            })
        })
        .collect();
    let mut outcomes = Vec::with_capacity(RACERS);
    for racer in racers {
        outcomes.push(ok("a racing claim", racer.await));
    }
    let winners: Vec<&Lease> = outcomes.iter().filter_map(ClaimOutcome::lease).collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {outcomes:?}");
    let held_until = winners[0].held_until();
    for outcome in &outcomes {
        match outcome {
            ClaimOutcome::Claimed { .. } => {}
            ClaimOutcome::InProgress { held_until: seen } => {
                assert_eq!(*seen, held_until, "the losers see the winner's lease");
            }
            other @ ClaimOutcome::Processed(_) => {
                panic!("a racing claim saw a processed key: {other:?}")
            }
        }
    }
}

/// A lease that expires is taken over by the next claim, with a higher fencing token;
/// the old holder can then neither heartbeat, complete nor release.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn expired_lease_is_taken_over_and_the_old_lease_is_fenced<S: IdempotencyStore>(
    store: S,
) {
    let key = fresh_key("takeover");
    let (first, second) = (LeaseOwner::random(), LeaseOwner::random());
    let (old, _) = claim_lease(&store, &key, &payload(1), &first, LEASE).await;
    assert_eq!(
        claim(&store, &key, &payload(1), &second, LEASE).await,
        ClaimOutcome::InProgress {
            held_until: old.held_until()
        },
        "a live lease makes others wait, and says until when"
    );
    wait_for_expiry().await;
    let (new, taken_over_from) = claim_lease(&store, &key, &payload(1), &second, LONG_LEASE).await;
    assert_eq!(
        taken_over_from.as_ref(),
        Some(&first),
        "the claim says whose lease it took over"
    );
    assert!(
        new.fencing_token() > old.fencing_token(),
        "a takeover raises the fencing token: {} after {}",
        new.fencing_token(),
        old.fencing_token()
    );
    expect_lost(
        "heartbeat of the old lease",
        store.heartbeat(&old, LEASE).await,
    );
    expect_lost(
        "complete of the old lease",
        store.complete(&old, outcome("stale"), LONG_RETAIN).await,
    );
    expect_lost("release of the old lease", store.release(&old).await);
    ok(
        "complete of the new lease",
        store.complete(&new, outcome("fresh"), LONG_RETAIN).await,
    );
    assert_eq!(
        claim(&store, &key, &payload(1), &first, LEASE).await,
        ClaimOutcome::Processed(outcome("fresh")),
        "the new holder's outcome is the one stored"
    );
}

/// An owner that takes over its own expired lease gets a new token, and the old lease
/// (same owner, older token) is fenced off: the store checks the token, not only the owner.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn fencing_is_by_token_not_by_owner<S: IdempotencyStore>(store: S) {
    let key = fresh_key("fencing");
    let owner = LeaseOwner::random();
    let (old, _) = claim_lease(&store, &key, &payload(1), &owner, LEASE).await;
    wait_for_expiry().await;
    let (new, taken_over_from) = claim_lease(&store, &key, &payload(1), &owner, LONG_LEASE).await;
    assert_eq!(taken_over_from.as_ref(), Some(&owner));
    assert!(new.fencing_token() > old.fencing_token());
    expect_lost(
        "heartbeat of the older lease",
        store.heartbeat(&old, LEASE).await,
    );
    expect_lost(
        "complete of the older lease",
        store.complete(&old, outcome("stale"), LONG_RETAIN).await,
    );
    expect_lost("release of the older lease", store.release(&old).await);
    ok(
        "heartbeat of the newer lease",
        store.heartbeat(&new, LONG_LEASE).await,
    );
    ok(
        "complete of the newer lease",
        store.complete(&new, outcome("fresh"), LONG_RETAIN).await,
    );
}

/// A lease past its time that nobody took over still holds its key: it can heartbeat and
/// complete (the record is what counts, not the caller's idea of the time).
///
/// # Panics
/// When the store does not keep the contract.
pub async fn expired_lease_not_taken_over_can_still_complete<S: IdempotencyStore>(store: S) {
    let key = fresh_key("late");
    let (lease, _) = claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LEASE).await;
    wait_for_expiry().await;
    let lease = ok(
        "a late heartbeat",
        store.heartbeat(&lease, LONG_LEASE).await,
    );
    assert_eq!(
        claim(&store, &key, &payload(1), &LeaseOwner::random(), LEASE).await,
        ClaimOutcome::InProgress {
            held_until: lease.held_until()
        },
        "the late heartbeat made the lease live again"
    );
    let key = fresh_key("late-complete");
    let (lease, _) = claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LEASE).await;
    wait_for_expiry().await;
    ok(
        "a late complete",
        store.complete(&lease, outcome("late"), LONG_RETAIN).await,
    );
    assert_eq!(
        claim(&store, &key, &payload(1), &LeaseOwner::random(), LEASE).await,
        ClaimOutcome::Processed(outcome("late"))
    );
}

/// Heartbeats keep a lease alive well beyond its first duration; nobody takes it over.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn heartbeat_keeps_a_lease_alive<S: IdempotencyStore>(store: S) {
    let key = fresh_key("heartbeat");
    let holder = LeaseOwner::random();
    let (mut lease, _) = claim_lease(&store, &key, &payload(1), &holder, LEASE).await;
    let first_token = lease.fencing_token();
    let first_until = lease.held_until();
    // Four beats of half a lease each: twice the first lease in all.
    for beat in 0..4 {
        tokio::time::sleep(LEASE / 2).await;
        let extended = ok("heartbeat", store.heartbeat(&lease, LEASE).await);
        assert_eq!(
            extended.fencing_token(),
            first_token,
            "a heartbeat keeps the token"
        );
        assert_eq!(extended.owner(), &holder);
        assert!(
            extended.held_until() > lease.held_until(),
            "beat {beat}: the lease is extended"
        );
        lease = extended;
        match claim(&store, &key, &payload(1), &LeaseOwner::random(), LEASE).await {
            ClaimOutcome::InProgress { held_until } => {
                assert_eq!(
                    held_until,
                    lease.held_until(),
                    "beat {beat}: the extended lease is seen"
                );
            }
            other => panic!("beat {beat}: a heartbeated lease was not respected: {other:?}"),
        }
    }
    assert!(
        lease.held_until() > first_until + LEASE,
        "the lease outlived its first duration"
    );
    ok(
        "complete after heartbeats",
        store
            .complete(&lease, outcome("slow but done"), LONG_RETAIN)
            .await,
    );
}

/// A released claim lets the next delivery claim the key at once, with a higher token
/// (even within the same millisecond); the released lease is gone, and the key still
/// refuses another payload.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn release_lets_the_next_claim_succeed_at_once<S: IdempotencyStore>(store: S) {
    let key = fresh_key("release");
    let (released, _) =
        claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await;
    ok("release", store.release(&released).await);
    expect_mismatch(
        "another payload on a released key",
        store
            .try_claim(&key, &payload(2), &LeaseOwner::random(), LONG_LEASE)
            .await,
        &payload(1),
        &payload(2),
    );
    let (next, taken_over_from) =
        claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await;
    assert_eq!(
        taken_over_from, None,
        "a released claim is not taken over, it is gone"
    );
    assert!(
        next.fencing_token() > released.fencing_token(),
        "tokens grow across a release: {} after {}",
        next.fencing_token(),
        released.fencing_token()
    );
    expect_lost("release twice", store.release(&released).await);
    expect_lost(
        "complete after release",
        store
            .complete(&released, outcome("stale"), LONG_RETAIN)
            .await,
    );
    ok(
        "complete of the next lease",
        store.complete(&next, outcome("done"), LONG_RETAIN).await,
    );
}

/// A key reused with another payload is refused, while in progress and once processed,
/// and the refusal changes nothing.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn reused_key_with_another_payload_is_rejected<S: IdempotencyStore>(store: S) {
    let key = fresh_key("mismatch");
    let owner = LeaseOwner::random();
    let (original, other) = (payload(1), payload(2));
    let (lease, _) = claim_lease(&store, &key, &original, &owner, LONG_LEASE).await;
    for who in [owner.clone(), LeaseOwner::random()] {
        expect_mismatch(
            "another payload while in progress",
            store.try_claim(&key, &other, &who, LONG_LEASE).await,
            &original,
            &other,
        );
    }
    ok(
        "complete after a refused reuse",
        store
            .complete(&lease, outcome("original"), LONG_RETAIN)
            .await,
    );
    expect_mismatch(
        "another payload once processed",
        store
            .try_claim(&key, &other, &LeaseOwner::random(), LONG_LEASE)
            .await,
        &original,
        &other,
    );
    assert_eq!(
        claim(&store, &key, &original, &LeaseOwner::random(), LONG_LEASE).await,
        ClaimOutcome::Processed(outcome("original")),
        "the original payload is still a duplicate"
    );
    // An expired lease on the key does not make another payload acceptable either.
    let key = fresh_key("mismatch-expired");
    claim_lease(&store, &key, &original, &owner, LEASE).await;
    wait_for_expiry().await;
    expect_mismatch(
        "another payload over an expired lease",
        store
            .try_claim(&key, &other, &LeaseOwner::random(), LONG_LEASE)
            .await,
        &original,
        &other,
    );
}

/// A processed record counts for its retention, then the key is claimed afresh (by any
/// payload).
///
/// # Panics
/// When the store does not keep the contract.
pub async fn processed_records_expire_after_retain<S: IdempotencyStore>(store: S) {
    let key = fresh_key("retain");
    let retain = LEASE;
    let (lease, _) =
        claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await;
    ok(
        "complete",
        store.complete(&lease, outcome("short-lived"), retain).await,
    );
    assert_eq!(
        claim(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await,
        ClaimOutcome::Processed(outcome("short-lived")),
        "within its retention the record answers duplicates"
    );
    tokio::time::sleep(retain + EXPIRY_MARGIN).await;
    let (fresh, taken_over_from) =
        claim_lease(&store, &key, &payload(2), &LeaseOwner::random(), LONG_LEASE).await;
    assert_eq!(
        taken_over_from, None,
        "an expired record is as good as absent"
    );
    assert!(fresh.fencing_token() > lease.fencing_token());
    expect_lost(
        "complete of the lease whose record expired",
        store.complete(&lease, outcome("again"), LONG_RETAIN).await,
    );
}

/// What happens to one key does not affect another.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn keys_are_independent<S: IdempotencyStore>(store: S) {
    let (one, two) = (fresh_key("one"), fresh_key("two"));
    let owner = LeaseOwner::random();
    let (lease_one, _) = claim_lease(&store, &one, &payload(1), &owner, LONG_LEASE).await;
    let (lease_two, _) = claim_lease(&store, &two, &payload(1), &owner, LONG_LEASE).await;
    ok(
        "complete one",
        store
            .complete(&lease_one, outcome("one"), LONG_RETAIN)
            .await,
    );
    assert!(
        matches!(
            claim(&store, &two, &payload(1), &LeaseOwner::random(), LONG_LEASE).await,
            ClaimOutcome::InProgress { .. }
        ),
        "completing one key leaves the other in progress"
    );
    ok("release two", store.release(&lease_two).await);
    assert_eq!(
        claim(&store, &one, &payload(1), &LeaseOwner::random(), LONG_LEASE).await,
        ClaimOutcome::Processed(outcome("one")),
        "releasing one key leaves the other processed"
    );
    claim_lease(&store, &two, &payload(1), &LeaseOwner::random(), LONG_LEASE).await;
}

/// Completing again with the lease that completed the key succeeds and keeps the first
/// outcome (a retried request is harmless); the lease cannot heartbeat or release after.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn completing_twice_with_the_same_lease_is_harmless<S: IdempotencyStore>(store: S) {
    let key = fresh_key("twice");
    let (lease, _) =
        claim_lease(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await;
    ok(
        "complete",
        store.complete(&lease, outcome("first"), LONG_RETAIN).await,
    );
    ok(
        "complete again",
        store.complete(&lease, outcome("second"), LONG_RETAIN).await,
    );
    assert_eq!(
        claim(&store, &key, &payload(1), &LeaseOwner::random(), LONG_LEASE).await,
        ClaimOutcome::Processed(outcome("first")),
        "the first outcome stays"
    );
    expect_lost(
        "heartbeat after complete",
        store.heartbeat(&lease, LEASE).await,
    );
    expect_lost("release after complete", store.release(&lease).await);
}

/// A lease the store never granted (unknown key, wrong token, wrong owner) is lost for
/// every operation.
///
/// # Panics
/// When the store does not keep the contract.
pub async fn lost_leases_cannot_heartbeat_complete_or_release<S: IdempotencyStore>(store: S) {
    let never_claimed = Lease::new(
        fresh_key("never"),
        LeaseOwner::random(),
        1,
        SystemTime::now() + LONG_LEASE,
    );
    expect_lost(
        "heartbeat of an unknown key",
        store.heartbeat(&never_claimed, LEASE).await,
    );
    expect_lost(
        "complete of an unknown key",
        store
            .complete(&never_claimed, outcome("x"), LONG_RETAIN)
            .await,
    );
    expect_lost(
        "release of an unknown key",
        store.release(&never_claimed).await,
    );

    let key = fresh_key("forged");
    let owner = LeaseOwner::random();
    let (lease, _) = claim_lease(&store, &key, &payload(1), &owner, LONG_LEASE).await;
    let wrong_token = Lease::new(
        key.clone(),
        owner.clone(),
        lease.fencing_token() + 1,
        lease.held_until(),
    );
    let wrong_owner = Lease::new(
        key.clone(),
        LeaseOwner::random(),
        lease.fencing_token(),
        lease.held_until(),
    );
    for (what, forged) in [("wrong token", &wrong_token), ("wrong owner", &wrong_owner)] {
        expect_lost(what, store.heartbeat(forged, LEASE).await);
        expect_lost(
            what,
            store.complete(forged, outcome("forged"), LONG_RETAIN).await,
        );
        expect_lost(what, store.release(forged).await);
    }
    ok("the real lease still holds", store.release(&lease).await);
}
