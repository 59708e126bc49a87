//! The kill test on DynamoDB: a writer commits `DynamoDbUnitOfWork`s on a fresh table
//! while relay processes are killed: the polling relay on `DynamoDbOutboxStore`, and the
//! Streams relay (`StreamsRelay`, its sweeper kept out of the way, so every event comes
//! through the stream and the checkpoints).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dovetail_events::envelope::EventMetadata;
use dovetail_events::publish::{SnsPublisher, SnsPublisherConfig};
use dovetail_outbox::dynamodb::{
    DynamoDbOutbox, DynamoDbOutboxConfig, DynamoDbOutboxStore, StreamsRelay, StreamsRelayConfig,
};
use dovetail_outbox::relay::Relay;
use dovetail_outbox::{ExpectedVersion, OutboxStore};

use super::{Child, KillTarget, pause, relay_config, run, unit_plan};
use crate::needs_servers::dynamodb_store::fresh_outbox;
use crate::support::source;

const LEASE: &str = "kill.relay";

/// Which relay the children run.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Polling,
    Streams,
}

/// A fresh outbox table, and the store the parent watches the backlog through.
struct DynamoDbTarget {
    kind: Kind,
    outbox: DynamoDbOutbox,
    store: DynamoDbOutboxStore,
}

impl DynamoDbTarget {
    async fn new(kind: Kind) -> Self {
        let outbox = fresh_outbox("outbox-kill").await;
        let store = outbox.store(LEASE);
        Self {
            kind,
            outbox,
            store,
        }
    }
}

impl KillTarget for DynamoDbTarget {
    fn test_name(&self) -> &'static str {
        match self.kind {
            Kind::Polling => {
                "needs_servers::relay_kill::dynamodb::a_polling_relay_on_dynamodb_killed_at_random_points_loses_no_committed_event"
            }
            Kind::Streams => {
                "needs_servers::relay_kill::dynamodb::a_streams_relay_killed_at_random_points_loses_no_committed_event"
            }
        }
    }

    fn location(&self) -> String {
        self.outbox.config().table.clone()
    }

    async fn write_until(self: Arc<Self>, stop: Arc<AtomicBool>) -> Vec<String> {
        let (mut cents, mut committed) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let mut unit = self.outbox.unit_of_work();
            for (aggregate, event) in unit_plan(&mut cents) {
                unit.append(
                    aggregate,
                    ExpectedVersion::Any,
                    &event,
                    EventMetadata::default(),
                )
                .unwrap();
            }
            let done = unit.commit().await.unwrap();
            committed.extend(done.envelopes().iter().map(|e| e.id().to_string()));
            tokio::time::sleep(pause()).await;
        }
        committed
    }

    async fn pending(&self) -> u64 {
        self.store.backlog().await.unwrap().pending
    }
}

/// The child process: a relay of `kind` from the table to the topic, until it is killed.
async fn run_relay_child(kind: Kind, child: Child) {
    let aws = dovetail_testkit::aws().await;
    let outbox = DynamoDbOutbox::new(
        aws.dynamodb(),
        DynamoDbOutboxConfig::new(child.outbox, source()),
    );
    let publisher = SnsPublisher::new(
        aws.sns(),
        SnsPublisherConfig {
            topic_arn: child.topic_arn,
        },
    );
    let forever = std::future::pending::<()>();
    match kind {
        Kind::Polling => {
            Relay::new(outbox.store(LEASE), publisher, relay_config())
                .run(forever)
                .await
                .unwrap();
        }
        Kind::Streams => {
            let mut config = StreamsRelayConfig::default();
            config.relay = relay_config();
            // Nothing is old enough for the sweeper: every event comes through the stream.
            config.sweep_after = Duration::from_secs(3600);
            StreamsRelay::new(
                aws.dynamodb_streams(),
                outbox.store(LEASE),
                publisher,
                config,
            )
            .run(forever)
            .await
            .unwrap();
        }
    }
}

async fn kill_test(kind: Kind) {
    if let Some(child) = Child::from_env() {
        run_relay_child(kind, child).await;
        return;
    }
    run(DynamoDbTarget::new(kind).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_relay_on_dynamodb_killed_at_random_points_loses_no_committed_event() {
    kill_test(Kind::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streams_relay_killed_at_random_points_loses_no_committed_event() {
    kill_test(Kind::Streams).await;
}
