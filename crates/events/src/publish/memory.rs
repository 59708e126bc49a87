//! An in-memory [`Publisher`] for unit tests of logic: records what it accepted and can be
//! told to fail.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::rounds::publish_in_rounds;
use super::{PublishError, PublishResult, Publisher};
use crate::envelope::{Envelope, EventId};

/// Records every envelope it accepts, in acceptance order; cheap to clone (shared state).
///
/// Failures are injected per event id ([`fail_once`](Self::fail_once)) or for everything
/// ([`set_unavailable`](Self::set_unavailable)). It keeps the per-aggregate order rule of
/// [`Publisher`] like every real implementation.
#[derive(Debug, Clone, Default)]
pub struct MemoryPublisher {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    published: Vec<Envelope>,
    fail_once: HashSet<EventId>,
    unavailable: bool,
}

impl MemoryPublisher {
    /// An empty publisher that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every accepted envelope, in acceptance order (duplicates included).
    pub fn published(&self) -> Vec<Envelope> {
        self.state().published.clone()
    }

    /// The next attempt to publish `event` fails as unavailable; later attempts succeed.
    pub fn fail_once(&self, event: EventId) {
        self.state().fail_once.insert(event);
    }

    /// While `true`, every publish fails as unavailable.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accept(&self, envelope: &Envelope) -> PublishResult {
        let mut state = self.state();
        if state.unavailable || state.fail_once.remove(&envelope.id()) {
            return Err(PublishError::Unavailable {
                reason: "the memory publisher was told to fail".to_owned(),
            });
        }
        state.published.push(envelope.clone());
        Ok(())
    }
}

impl Publisher for MemoryPublisher {
    async fn publish_batch(&self, envelopes: &[Envelope]) -> Vec<PublishResult> {
        publish_in_rounds(envelopes, |round| {
            let results: Vec<PublishResult> = round
                .into_iter()
                .map(|envelope| self.accept(envelope))
                .collect();
            std::future::ready(results)
        })
        .await
    }
}
