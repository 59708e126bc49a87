//! The per-group sequencing plan of FIFO queues: messages of one group are handled one at
//! a time, in the order received; different groups run in parallel.

use std::collections::{HashMap, VecDeque};

/// Which messages wait behind the one their group is handling.
///
/// The runtime [`push`](Self::push)es each received message under its group. The first
/// message of an idle group starts a worker for that group; later ones queue behind it.
/// When the worker settles a message it asks for the [`next`](Self::next) one; when a
/// message fails in a way that must hold its group back, the worker
/// [`abandon`](Self::abandon)s the group and releases what was queued, so the transport
/// redelivers the group in order, failed message first.
#[derive(Debug)]
pub(crate) struct GroupSequencer<T> {
    waiting: HashMap<String, VecDeque<T>>,
}

impl<T> Default for GroupSequencer<T> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

/// What to do with a pushed message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed<T> {
    /// The group was idle: start a worker for it with this message.
    Start(T),
    /// The group is busy: the message waits for its turn.
    Queued,
}

impl<T> GroupSequencer<T> {
    /// Adds a message of `group`.
    pub(crate) fn push(&mut self, group: &str, item: T) -> Pushed<T> {
        match self.waiting.get_mut(group) {
            Some(queue) => {
                queue.push_back(item);
                Pushed::Queued
            }
            None => {
                self.waiting.insert(group.to_owned(), VecDeque::new());
                Pushed::Start(item)
            }
        }
    }

    /// The message of `group` to handle after the current one was settled, or `None` when
    /// the group has nothing waiting (it becomes idle).
    pub(crate) fn next(&mut self, group: &str) -> Option<T> {
        let queue = self.waiting.get_mut(group)?;
        let item = queue.pop_front();
        if item.is_none() {
            self.waiting.remove(group);
        }
        item
    }

    /// Ends the group's turn after a failure: returns everything waiting, in order, for the
    /// caller to release. The group becomes idle.
    pub(crate) fn abandon(&mut self, group: &str) -> Vec<T> {
        self.waiting
            .remove(group)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// How many groups have a worker.
    #[cfg(test)]
    pub(crate) fn active_groups(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_message_of_a_group_starts_it_and_later_ones_queue() {
        let mut sequencer = GroupSequencer::default();
        assert_eq!(sequencer.push("a", 1), Pushed::Start(1));
        assert_eq!(sequencer.push("b", 10), Pushed::Start(10));
        assert_eq!(sequencer.push("a", 2), Pushed::Queued);
        assert_eq!(sequencer.push("a", 3), Pushed::Queued);
        assert_eq!(sequencer.next("a"), Some(2));
        assert_eq!(sequencer.next("b"), None);
        assert_eq!(sequencer.next("a"), Some(3));
        assert_eq!(sequencer.next("a"), None);
        assert_eq!(sequencer.active_groups(), 0);
    }

    #[test]
    fn a_group_that_went_idle_starts_again() {
        let mut sequencer = GroupSequencer::default();
        assert_eq!(sequencer.push("a", 1), Pushed::Start(1));
        assert_eq!(sequencer.next("a"), None);
        assert_eq!(sequencer.push("a", 2), Pushed::Start(2));
    }

    #[test]
    fn abandoning_releases_what_waits_in_order() {
        let mut sequencer = GroupSequencer::default();
        let _ = sequencer.push("a", 1);
        let _ = sequencer.push("a", 2);
        let _ = sequencer.push("b", 7);
        let _ = sequencer.push("a", 3);
        assert_eq!(sequencer.abandon("a"), [2, 3]);
        assert_eq!(sequencer.next("a"), None);
        assert_eq!(sequencer.push("a", 4), Pushed::Start(4));
        assert_eq!(sequencer.abandon("b"), Vec::<i32>::new());
    }

    proptest! {
        /// Whatever the interleaving of pushes and completions, each group's messages are
        /// handed out one at a time, in push order, and none is lost.
        #[test]
        fn each_group_is_handled_in_order_one_at_a_time(
            ops in proptest::collection::vec((0u8..3, proptest::bool::ANY), 1..200)
        ) {
            let mut sequencer = GroupSequencer::default();
            let mut running: HashMap<String, u32> = HashMap::new();
            let mut handed: HashMap<String, Vec<u32>> = HashMap::new();
            let mut pushed: HashMap<String, Vec<u32>> = HashMap::new();
            let mut counter = 0;
            for (group, push) in ops {
                let group = format!("g{group}");
                if push {
                    counter += 1;
                    pushed.entry(group.clone()).or_default().push(counter);
                    if let Pushed::Start(item) = sequencer.push(&group, counter) {
                        prop_assert!(!running.contains_key(&group));
                        running.insert(group.clone(), item);
                        handed.entry(group).or_default().push(item);
                    }
                } else if running.remove(&group).is_some()
                    && let Some(item) = sequencer.next(&group)
                {
                    running.insert(group.clone(), item);
                    handed.entry(group).or_default().push(item);
                }
            }
            for group in running.into_keys() {
                while let Some(next) = sequencer.next(&group) {
                    handed.entry(group.clone()).or_default().push(next);
                }
            }
            prop_assert_eq!(handed, pushed);
        }
    }
}
