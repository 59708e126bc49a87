//! The per-aggregate order rule of every publisher, on the memory publisher: a failure
//! stops the later events of its aggregate in the batch and nothing else.

use std::collections::HashMap;

use dovetail_events::envelope::Envelope;
use dovetail_events::publish::{MemoryPublisher, PublishError, Publisher};
use proptest::prelude::*;

use crate::support::policy_event;

#[tokio::test]
async fn a_failure_holds_back_the_later_events_of_its_aggregate_only() {
    let batch = vec![
        policy_event("a", 1, 0),
        policy_event("b", 1, 0),
        policy_event("a", 2, 0),
        policy_event("a", 3, 0),
        policy_event("b", 2, 0),
    ];
    let publisher = MemoryPublisher::new();
    publisher.fail_once(batch[2].id());

    let results = publisher.publish_batch(&batch).await;

    assert!(
        results[0].is_ok() && results[1].is_ok() && results[4].is_ok(),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(PublishError::Unavailable { .. })),
        "{results:?}"
    );
    assert_eq!(
        results[3],
        Err(PublishError::EarlierEventFailed {
            earlier: batch[2].id()
        }),
        "a:3 must wait for a:2"
    );
    assert!(results[3].as_ref().unwrap_err().is_retriable());
    let published: Vec<_> = publisher.published().iter().map(Envelope::id).collect();
    assert_eq!(published, [batch[0].id(), batch[1].id(), batch[4].id()]);
}

#[tokio::test]
async fn one_result_per_envelope_even_when_the_broker_is_down() {
    let batch = vec![policy_event("a", 1, 0), policy_event("b", 1, 0)];
    let publisher = MemoryPublisher::new();
    publisher.set_unavailable(true);
    let results = publisher.publish_batch(&batch).await;
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|result| result.as_ref().unwrap_err().is_retriable())
    );
    assert!(publisher.published().is_empty());
}

proptest! {
    /// For any batch and any set of failing events, what the broker accepted of each
    /// aggregate is a prefix of that aggregate's events in batch order, and every event
    /// before the first failure of its aggregate was accepted.
    #[test]
    fn accepted_events_are_a_prefix_per_aggregate(
        aggregates in proptest::collection::vec(0_u8..4, 1..30),
        failing in proptest::collection::vec(any::<bool>(), 30),
    ) {
        let mut next: HashMap<u8, u64> = HashMap::new();
        let batch: Vec<Envelope> = aggregates
            .iter()
            .map(|aggregate| {
                let sequence = next.entry(*aggregate).or_insert(0);
                *sequence += 1;
                policy_event(&format!("agg-{aggregate}"), *sequence, 0)
            })
            .collect();
        let publisher = MemoryPublisher::new();
        for (envelope, fail) in batch.iter().zip(&failing) {
            if *fail {
                publisher.fail_once(envelope.id());
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let results = runtime.block_on(publisher.publish_batch(&batch));
        prop_assert_eq!(results.len(), batch.len());

        let accepted: Vec<Envelope> = publisher.published();
        for aggregate in 0..4_u8 {
            let id = format!("agg-{aggregate}");
            let of_aggregate: Vec<(usize, &Envelope)> = batch
                .iter()
                .enumerate()
                .filter(|(_, envelope)| envelope.aggregate_id().as_str() == id)
                .collect();
            let first_failure = of_aggregate
                .iter()
                .position(|(index, _)| failing[*index])
                .unwrap_or(of_aggregate.len());
            let expected: Vec<_> =
                of_aggregate[..first_failure].iter().map(|(_, envelope)| envelope.id()).collect();
            let got: Vec<_> = accepted
                .iter()
                .filter(|envelope| envelope.aggregate_id().as_str() == id)
                .map(Envelope::id)
                .collect();
            prop_assert_eq!(got, expected);
            for (position, (index, _)) in of_aggregate.iter().enumerate() {
                prop_assert_eq!(results[*index].is_ok(), position < first_failure);
            }
        }
    }
}
