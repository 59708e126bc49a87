//! Comparing the entries of one range read from both sides, key by key.

use std::cmp::Ordering;

use crate::bucket::bucket;
use crate::report::Drift;
use crate::view::Entry;

/// How `replica` differs from `source` for one key, or `None` when a reader sees the
/// same on both (see the table on [`Drift`]).
pub(crate) fn classify(source: Option<&Entry>, replica: Option<&Entry>) -> Option<Drift> {
    match (source, replica) {
        (None, None) => None,
        (Some(s), None) => (!s.deleted).then_some(Drift::MissingInReplica {
            source_version: s.version,
        }),
        (None, Some(r)) => (!r.deleted).then_some(Drift::ExtraInReplica {
            replica_version: r.version,
        }),
        (Some(s), Some(r)) => {
            if s.deleted && r.deleted {
                return None;
            }
            let (source_version, replica_version) = (s.version, r.version);
            match (s.deleted, r.deleted, replica_version.cmp(&source_version)) {
                (false, false, Ordering::Equal) => None,
                (false, _, Ordering::Less) => Some(Drift::ReplicaBehind {
                    source_version,
                    replica_version,
                }),
                (true, false, Ordering::Less) => Some(Drift::MissedDelete {
                    source_version,
                    replica_version,
                }),
                _ => Some(Drift::ReplicaAhead {
                    source_version,
                    replica_version,
                }),
            }
        }
    }
}

/// The check's order: (bucket, key).
pub(crate) fn order(a: &Entry, b: &Entry) -> Ordering {
    bucket(&a.key)
        .cmp(&bucket(&b.key))
        .then_with(|| a.key.cmp(&b.key))
}

/// Puts `entries` in the check's order, when a view did not.
pub(crate) fn sort(entries: &mut [Entry]) {
    if !entries.is_sorted_by(|a, b| order(a, b) != Ordering::Greater) {
        entries.sort_by(order);
    }
}

/// Walks two lists in the check's order together, calling `each` with the key's entry on
/// either side (at least one of them).
pub(crate) fn merge<'a>(
    source: &'a [Entry],
    replica: &'a [Entry],
    mut each: impl FnMut(Option<&'a Entry>, Option<&'a Entry>),
) {
    let (mut s, mut r) = (source.iter().peekable(), replica.iter().peekable());
    loop {
        match (s.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => each(s.next(), None),
            (None, Some(_)) => each(None, r.next()),
            (Some(a), Some(b)) => match order(a, b) {
                Ordering::Less => each(s.next(), None),
                Ordering::Greater => each(None, r.next()),
                Ordering::Equal => each(s.next(), r.next()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(version: u64) -> Option<Entry> {
        Some(Entry::live("k", version))
    }

    fn gone(version: u64) -> Option<Entry> {
        Some(Entry::tombstone("k", version))
    }

    #[test]
    fn every_pair_of_states_is_classified_as_documented() {
        use Drift::*;
        let cases = [
            (live(3), None, Some(MissingInReplica { source_version: 3 })),
            (live(3), live(3), None),
            (
                live(3),
                live(2),
                Some(ReplicaBehind {
                    source_version: 3,
                    replica_version: 2,
                }),
            ),
            (
                live(3),
                gone(2),
                Some(ReplicaBehind {
                    source_version: 3,
                    replica_version: 2,
                }),
            ),
            (
                live(3),
                live(4),
                Some(ReplicaAhead {
                    source_version: 3,
                    replica_version: 4,
                }),
            ),
            (
                live(3),
                gone(3),
                Some(ReplicaAhead {
                    source_version: 3,
                    replica_version: 3,
                }),
            ),
            (
                live(3),
                gone(4),
                Some(ReplicaAhead {
                    source_version: 3,
                    replica_version: 4,
                }),
            ),
            (
                gone(3),
                live(2),
                Some(MissedDelete {
                    source_version: 3,
                    replica_version: 2,
                }),
            ),
            (
                gone(3),
                live(3),
                Some(ReplicaAhead {
                    source_version: 3,
                    replica_version: 3,
                }),
            ),
            (
                gone(3),
                live(5),
                Some(ReplicaAhead {
                    source_version: 3,
                    replica_version: 5,
                }),
            ),
            (gone(3), None, None),
            (gone(3), gone(1), None),
            (gone(3), gone(3), None),
            (gone(3), gone(4), None),
            (None, gone(3), None),
            (None, live(3), Some(ExtraInReplica { replica_version: 3 })),
            (None, None, None),
        ];
        for (source, replica, expected) in cases {
            assert_eq!(
                classify(source.as_ref(), replica.as_ref()),
                expected,
                "{source:?} / {replica:?}"
            );
        }
    }

    #[test]
    fn merge_pairs_equal_keys_and_keeps_the_rest() {
        let mut source: Vec<Entry> = ["a", "b", "c", "d"].map(|k| Entry::live(k, 1)).into();
        let mut replica: Vec<Entry> = ["b", "d", "e"].map(|k| Entry::live(k, 1)).into();
        sort(&mut source);
        sort(&mut replica);
        let mut seen = Vec::new();
        merge(&source, &replica, |s, r| {
            let key = s.or(r).map(|e| e.key.clone()).unwrap_or_default();
            seen.push((key, s.is_some(), r.is_some()));
        });
        seen.sort();
        let expected = [
            ("a", true, false),
            ("b", true, true),
            ("c", true, false),
            ("d", true, true),
            ("e", false, true),
        ]
        .map(|(k, s, r)| (k.to_owned(), s, r));
        assert_eq!(seen, expected);
    }
}
