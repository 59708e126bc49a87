//! The case's verdict, from the model, the broker and the journal: every committed event
//! published, nothing aborted, first publications in sequence order per aggregate,
//! duplicates only inside the at-least-once window, reports that agree with the broker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;

use dovetail_events::envelope::EventId;
use dovetail_outbox::OutboxStore;
use proptest::prelude::*;

use super::model::{Model, Relays};
use crate::relay::fixtures::{Entry, Refusal, World, event};

/// After a mark refused for a lost lease, a relay fetches nothing more until the lease is
/// granted to it again: no double work beyond the batch in hand.
fn fenced_relays_stop(entries: &[Entry]) -> Result<(), TestCaseError> {
    let mut fenced: HashSet<usize> = HashSet::new();
    for entry in entries {
        match entry {
            Entry::Marked {
                relay,
                result: Err(Refusal::LeaseLost),
                ..
            }
            | Entry::Failed {
                relay,
                result: Err(Refusal::LeaseLost),
                ..
            } => {
                fenced.insert(*relay);
            }
            Entry::Leased { relay } => {
                fenced.remove(relay);
            }
            Entry::Fetched { relay } => {
                prop_assert!(
                    !fenced.contains(relay),
                    "relay {relay} fetched again after its lease was lost, before taking it again"
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Acceptances that no successful mark followed, per event, after checking that each has
/// an allowed cause (the relay was killed, or lost its lease).
///
/// A relay has at most one accepted batch waiting for its mark, or two with
/// `mark_while_publishing` (the previous batch is marked while the next is published);
/// marks come in the order of the batches. A batch left unmarked otherwise needs a lost
/// lease or a kill.
fn unmarked_acceptances<S>(
    entries: &[Entry],
    model: &Model,
    relays: &Relays<S>,
) -> Result<HashMap<EventId, usize>, TestCaseError> {
    let allowed = if relays.mark_while_publishing { 2 } else { 1 };
    let lost = |relay: usize| relays.reports.get(&relay).is_none_or(|r| r.leases_lost > 0);
    let mut unmarked: HashMap<EventId, usize> = HashMap::new();
    let mut in_hand: HashMap<usize, VecDeque<Vec<EventId>>> = HashMap::new();
    let miss = |ids: Vec<EventId>, unmarked: &mut HashMap<EventId, usize>| {
        for id in ids {
            *unmarked.entry(id).or_insert(0) += 1;
        }
    };
    for entry in entries {
        match entry {
            Entry::Published { relay, accepted } => {
                let batches = in_hand.entry(*relay).or_default();
                if !accepted.is_empty() {
                    batches.push_back(accepted.clone());
                }
                while batches.len() > allowed {
                    // Published again without marking: only after a renewal or a mark found
                    // its lease taken over.
                    prop_assert!(
                        lost(*relay),
                        "relay {relay} skipped marks without losing its lease"
                    );
                    miss(batches.pop_front().unwrap(), &mut unmarked);
                }
            }
            Entry::Marked {
                relay,
                positions,
                result,
            } => {
                let marked: HashSet<EventId> =
                    positions.iter().map(|p| model.by_position[p]).collect();
                let batches = in_hand.entry(*relay).or_default();
                let Some(at) = batches
                    .iter()
                    .position(|batch| batch.iter().copied().collect::<HashSet<_>>() == marked)
                else {
                    prop_assert!(
                        false,
                        "relay {relay} marked {marked:?}, which it was not holding: {batches:?}"
                    );
                    unreachable!();
                };
                for _ in 0..at {
                    prop_assert!(
                        lost(*relay),
                        "relay {relay} skipped a mark without losing its lease"
                    );
                    miss(batches.pop_front().unwrap(), &mut unmarked);
                }
                let batch = batches.pop_front().unwrap();
                match result {
                    Ok(()) => {}
                    Err(Refusal::LeaseLost) => miss(batch, &mut unmarked),
                    Err(Refusal::Other) => prop_assert!(false, "no store failure was injected"),
                }
            }
            Entry::Failed { .. } | Entry::Leased { .. } | Entry::Fetched { .. } => {}
        }
    }
    for (relay, batches) in in_hand {
        for batch in batches {
            prop_assert!(
                relays.killed.contains(&relay) || lost(relay),
                "relay {relay} stopped without marking a batch"
            );
            miss(batch, &mut unmarked);
        }
    }
    Ok(unmarked)
}

/// Whether the case kept every promise; the failure names the first broken one.
pub(crate) fn check<S: OutboxStore + Clone + Debug + 'static>(
    model: &Model,
    relays: &Relays<S>,
) -> Result<(), TestCaseError> {
    let world = &relays.world;
    let published = world.published();
    let mut times: HashMap<EventId, usize> = HashMap::new();
    for envelope in &published {
        *times.entry(envelope.id()).or_insert(0) += 1;
    }

    for id in &model.committed {
        prop_assert!(
            times.contains_key(id),
            "committed event {id} was never published"
        );
    }
    let committed: HashSet<EventId> = model.committed.iter().copied().collect();
    for id in times.keys() {
        prop_assert!(
            !model.aborted.contains(id),
            "aborted event {id} was published"
        );
        prop_assert!(committed.contains(id), "unknown event {id} was published");
    }

    for envelope in &published {
        let correlation = envelope.correlation_id();
        prop_assert!(
            !correlation.is_some_and(|id| model.aborted.contains(&id)),
            "event {} of an aborted unit of work was published",
            envelope.id()
        );
    }

    // First publications per aggregate: 1, 2, 3, ... in that order.
    let mut seen: HashSet<EventId> = HashSet::new();
    let mut next: HashMap<String, u64> = HashMap::new();
    for envelope in &published {
        if seen.insert(envelope.id()) {
            let aggregate = envelope.aggregate_id().as_str().to_owned();
            let expected = next.entry(aggregate.clone()).or_insert(1);
            prop_assert_eq!(
                envelope.sequence().get(),
                *expected,
                "first publication of {} out of order",
                aggregate
            );
            *expected += 1;
        }
    }

    let entries = world.journal.entries();
    fenced_relays_stop(&entries)?;
    let unmarked = unmarked_acceptances(&entries, model, relays)?;
    for (id, count) in &times {
        let window = unmarked.get(id).copied().unwrap_or(0);
        prop_assert!(
            *count <= 1 + window,
            "event {id} published {count} times with only {window} unmarked acceptances"
        );
    }

    for (relay, report) in &relays.reports {
        let accepted: usize = entries
            .iter()
            .map(|entry| match entry {
                Entry::Published { relay: r, accepted } if r == relay => accepted.len(),
                _ => 0,
            })
            .sum();
        let accepted = u64::try_from(accepted).unwrap();
        if report.leases_lost == 0 {
            prop_assert_eq!(report.published, accepted, "relay {}", relay);
        } else {
            // A lease lost while a batch was being published ends the batch without its
            // results: the broker may have accepted some the relay never heard back about.
            prop_assert!(
                report.published <= accepted,
                "relay {relay} reports {} published, the broker accepted {accepted}",
                report.published
            );
        }
    }
    Ok(())
}

/// The check itself catches what it should: a relay that reorders an aggregate.
#[test]
fn the_order_check_catches_a_reordering() {
    let world = World::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let (second, first) = (event("agg-0", 2), event("agg-0", 1));
    let model = Model {
        committed: vec![first.id(), second.id()],
        ..Model::default()
    };
    runtime.block_on(async {
        use dovetail_events::publish::Publisher as _;
        world.broker.publish_batch(&[second, first]).await;
    });
    let relays = Relays::new(world, 1, super::MEMORY);
    let failure = check(&model, &relays).unwrap_err();
    assert!(failure.to_string().contains("out of order"), "{failure}");
}
