//! The relay state machine (`relay::state_machine`) on a DynamoDB outbox in the emulator:
//! the same random commits, aborted units of work, relays started, stopped, killed
//! mid-batch or cut off from their lease, and broker failures, with the same checks.
//! Commits are `DynamoDbUnitOfWork`s; an abort is a unit of work whose business condition
//! fails, so DynamoDB refuses the whole transaction. A fresh table per case, a 400 ms
//! lease, few cases (each takes seconds).

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem};
use dovetail_events::envelope::{AggregateRef, Envelope, EventId, EventMetadata};
use dovetail_outbox::dynamodb::{DynamoDbOutbox, DynamoDbOutboxStore};
use dovetail_outbox::{ExpectedVersion, OutboxError, Position};
use proptest::prelude::*;

use super::dynamodb_store::fresh_outbox;
use crate::relay::fixtures::ClaimNoted;
use crate::relay::state_machine::{Timing, Writer, op, run_case, setup};

/// DynamoDB's clock: calls take milliseconds, so leases last 400 ms and `Run` counts
/// 5 ms steps.
const DYNAMODB: Timing = Timing {
    lease_ttl: Duration::from_millis(400),
    renew_every: Duration::from_millis(100),
    poll_interval: Duration::from_millis(20),
    run_unit: Duration::from_millis(5),
    drain_within: Duration::from_secs(30),
};

/// Cases per run; each creates a table and runs relays for a few seconds.
const CASES: u32 = 24;

/// Units of work on a fresh outbox table.
struct DynamoDbWriter {
    outbox: DynamoDbOutbox,
    store: DynamoDbOutboxStore,
}

impl DynamoDbWriter {
    async fn new() -> Self {
        let outbox = fresh_outbox("outbox-state-machine").await;
        let store = outbox.store("state-machine.relay");
        Self { outbox, store }
    }

    fn append(
        uow: &mut dovetail_outbox::dynamodb::DynamoDbUnitOfWork,
        aggregate: u8,
        metadata: EventMetadata,
    ) {
        let id = format!("agg-{aggregate}");
        uow.append(
            AggregateRef::parse("claim", &id).unwrap(),
            ExpectedVersion::Any,
            &ClaimNoted { claim_id: id },
            metadata,
        )
        .unwrap();
    }

    /// A business condition that fails: the item does not exist.
    fn failing_condition(&self) -> TransactWriteItem {
        let check = ConditionCheck::builder()
            .table_name(&self.outbox.config().table)
            .key("pk", AttributeValue::S("claim#never-created".into()))
            .key("sk", AttributeValue::S("claim".into()))
            .condition_expression("attribute_exists(pk)")
            .build()
            .unwrap();
        TransactWriteItem::builder().condition_check(check).build()
    }
}

impl Writer for DynamoDbWriter {
    type Store = DynamoDbOutboxStore;

    fn store(&self) -> DynamoDbOutboxStore {
        self.store.clone()
    }

    async fn commit(&mut self, aggregates: &[u8]) -> Vec<(EventId, Position)> {
        let mut uow = self.outbox.unit_of_work();
        for aggregate in aggregates {
            Self::append(&mut uow, *aggregate, EventMetadata::default());
        }
        let committed = uow.commit().await.unwrap();
        let ids = committed.envelopes().iter().map(Envelope::id);
        ids.zip(self.store.positions_of(&committed)).collect()
    }

    async fn abort(&mut self, aggregates: &[u8]) -> Vec<EventId> {
        let mut uow = self.outbox.unit_of_work();
        uow.write(self.failing_condition());
        // The unit of work makes the event ids; the test marks each event through its
        // correlation id instead.
        let marks: Vec<EventId> = aggregates.iter().map(|_| EventId::generate()).collect();
        for (aggregate, mark) in aggregates.iter().zip(&marks) {
            let metadata = EventMetadata {
                correlation_id: Some(*mark),
                ..EventMetadata::default()
            };
            Self::append(&mut uow, *aggregate, metadata);
        }
        let refused = uow.commit().await;
        assert!(
            matches!(refused, Err(OutboxError::BusinessConditionFailed { .. })),
            "a failing business condition refuses the unit of work: {refused:?}"
        );
        marks
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn relays_on_dynamodb_publish_every_committed_event_at_least_once_and_in_order(
        ops in proptest::collection::vec(op(), 1..24),
        setup in setup(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let writer = DynamoDbWriter::new().await;
            run_case(ops, setup, writer, DYNAMODB).await
        })?;
    }
}
