//! The consumer's handling of index failures: an unavailable index is waited out in place
//! (so an outage does not spend an event's deliveries), a document the index refuses is
//! rejected at once and alone, and a batch with one bad document writes the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dovetail_contracts::policy::{PolicyStatus, PolicyUpdated};
use dovetail_events::envelope::{AggregateRef, Envelope, EventMetadata, Sequence, Source};
use dovetail_search::consumer::apply_patiently;
use dovetail_search::document::IndexedDocument;
use dovetail_search::index::{
    BatchOutcomes, Batching, IndexError, RebuildProgress, RebuildReport, SearchIndex, SearchQuery,
    SearchResults, TantivyIndex, UpsertOutcome,
};

use crate::support::{policy, policy_snapshot, temp_dir};

/// A real tantivy index whose writes fail as told: the first `unavailable` writes as a
/// whole, and every write of a document whose id is `refused`, alone.
#[derive(Clone)]
struct Failing {
    index: TantivyIndex,
    unavailable: Arc<AtomicUsize>,
    refused: Option<&'static str>,
    writes: Arc<AtomicUsize>,
}

impl Failing {
    fn new(unavailable: usize, refused: Option<&'static str>) -> Self {
        Self {
            index: TantivyIndex::open(&temp_dir("search-failing")).unwrap(),
            unavailable: Arc::new(AtomicUsize::new(unavailable)),
            refused,
            writes: Arc::default(),
        }
    }
}

impl SearchIndex for Failing {
    async fn upsert_batch(
        &self,
        documents: Vec<IndexedDocument>,
    ) -> Result<BatchOutcomes, IndexError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let left = self.unavailable.load(Ordering::SeqCst);
        if left > 0 {
            self.unavailable.store(left - 1, Ordering::SeqCst);
            return Err(IndexError::Unavailable("the node is restarting".into()));
        }
        let (refused, accepted): (Vec<_>, Vec<_>) = documents
            .into_iter()
            .enumerate()
            .partition(|(_, document)| Some(document.id()) == self.refused);
        let mut outcomes: Vec<Option<Result<UpsertOutcome, IndexError>>> =
            (0..refused.len() + accepted.len()).map(|_| None).collect();
        for (position, document) in &refused {
            outcomes[*position] = Some(Err(IndexError::Refused(format!(
                "{} does not fit the mapping",
                document.id()
            ))));
        }
        let (positions, accepted): (Vec<_>, Vec<_>) = accepted.into_iter().unzip();
        for (position, outcome) in positions
            .into_iter()
            .zip(self.index.upsert_batch(accepted).await?)
        {
            outcomes[position] = Some(outcome);
        }
        Ok(outcomes.into_iter().map(Option::unwrap).collect())
    }

    async fn get(&self, id: &str) -> Result<Option<IndexedDocument>, IndexError> {
        self.index.get(id).await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchResults, IndexError> {
        self.index.search(query).await
    }

    async fn refresh(&self) -> Result<(), IndexError> {
        self.index.refresh().await
    }

    async fn rebuild(&self, progress: &RebuildProgress) -> Result<RebuildReport, IndexError> {
        self.index.rebuild(progress).await
    }

    async fn ping(&self) -> Result<(), IndexError> {
        self.index.ping().await
    }
}

fn event(id: &str, version: u64) -> Envelope {
    Envelope::new(
        Source::parse("policy-service").unwrap(),
        AggregateRef::parse("policy", id).unwrap(),
        Sequence::new(version).unwrap(),
        &PolicyUpdated {
            policy: policy_snapshot(id, "cust-1", "home", version, PolicyStatus::Active),
        },
        EventMetadata::default(),
    )
    .unwrap()
}

#[tokio::test]
async fn an_unavailable_index_is_waited_out_without_giving_the_event_back() {
    let index = Failing::new(3, None);
    let outcome = apply_patiently(&index, event("pol-1", 2), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(outcome, UpsertOutcome::Applied);
    assert_eq!(
        index.writes.load(Ordering::SeqCst),
        4,
        "three failures, then the write"
    );
    let held = index.get("policy:pol-1").await.unwrap().unwrap();
    assert_eq!(held.version(), 2);
}

#[tokio::test]
async fn past_its_patience_the_handler_gives_the_event_back_to_be_redelivered() {
    let index = Failing::new(usize::MAX, None);
    let started = Instant::now();
    let error = apply_patiently(&index, event("pol-1", 2), Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(error.is_retriable(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(index.writes.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_refused_document_is_rejected_at_once_and_its_batch_neighbours_are_written() {
    let index = Failing::new(0, Some("policy:pol-bad"));
    let error = apply_patiently(&index, event("pol-bad", 1), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(!error.is_retriable(), "{error}");
    assert!(error.to_string().contains("mapping"), "{error}");
    assert_eq!(index.writes.load(Ordering::SeqCst), 1, "no retry");

    // Through the batching writer, one batch with the refused document in the middle.
    let batching = Batching::new(index.clone());
    let writes: Vec<_> = ["pol-a", "pol-bad", "pol-b"]
        .into_iter()
        .map(|id| {
            let batching = batching.clone();
            tokio::spawn(async move {
                batching
                    .upsert(policy(id, "cust-1", 1, PolicyStatus::Active))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for write in writes {
        outcomes.push(write.await.unwrap());
    }
    assert_eq!(outcomes[0], Ok(UpsertOutcome::Applied));
    assert!(
        matches!(outcomes[1], Err(IndexError::Refused(_))),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Ok(UpsertOutcome::Applied));
}
