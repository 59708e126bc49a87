//! The kill test on SQLite: a writer thread commits units of work on the service's
//! database file while relay processes on the same file are killed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use dovetail_events::envelope::{EventMetadata, Source};
use dovetail_events::publish::{SnsPublisher, SnsPublisherConfig};
use dovetail_outbox::relay::Relay;
use dovetail_outbox::sqlite::{OutboxConfig, SqliteOutbox, SqliteOutboxStore};
use dovetail_outbox::{ExpectedVersion, OutboxStore};

use super::{Child, KillTarget, pause, relay_config, run, unit_plan};

const LEASE: &str = "relay";

/// The service's database file, and the relays' store on it.
struct SqliteTarget {
    db: PathBuf,
    store: SqliteOutboxStore,
}

impl SqliteTarget {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "dovetail-outbox-kill-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("policy.db");
        let store = SqliteOutboxStore::open(&db, LEASE).unwrap();
        Self { db, store }
    }

    fn write_blocking(&self, stop: &AtomicBool) -> Vec<String> {
        let outbox = SqliteOutbox::new(OutboxConfig::new(Source::parse("policy-service").unwrap()));
        let mut connection = rusqlite::Connection::open(&self.db).unwrap();
        SqliteOutbox::prepare_connection(&connection).unwrap();
        let (mut cents, mut committed) = (0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            let mut unit = outbox.begin(&mut connection).unwrap();
            for (aggregate, event) in unit_plan(&mut cents) {
                unit.append(
                    aggregate,
                    ExpectedVersion::Any,
                    &event,
                    EventMetadata::default(),
                )
                .unwrap();
            }
            let done = unit.commit().unwrap();
            committed.extend(done.envelopes().iter().map(|e| e.id().to_string()));
            std::thread::sleep(pause());
        }
        committed
    }
}

impl KillTarget for SqliteTarget {
    fn test_name(&self) -> &'static str {
        "needs_servers::relay_kill::sqlite::a_relay_killed_at_random_points_while_writes_go_on_loses_no_committed_event"
    }

    fn location(&self) -> String {
        self.db.display().to_string()
    }

    async fn write_until(self: Arc<Self>, stop: Arc<AtomicBool>) -> Vec<String> {
        tokio::task::spawn_blocking(move || self.write_blocking(&stop))
            .await
            .unwrap()
    }

    async fn pending(&self) -> u64 {
        self.store.backlog().await.unwrap().pending
    }
}

/// The child process: a relay from the outbox file to the topic, until it is killed.
async fn run_relay_child(child: Child) {
    let aws = dovetail_testkit::aws().await;
    let store = SqliteOutboxStore::open(&child.outbox, LEASE).unwrap();
    let publisher = SnsPublisher::new(
        aws.sns(),
        SnsPublisherConfig {
            topic_arn: child.topic_arn,
        },
    );
    Relay::new(store, publisher, relay_config())
        .run(std::future::pending::<()>())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_at_random_points_while_writes_go_on_loses_no_committed_event() {
    if let Some(child) = Child::from_env() {
        run_relay_child(child).await;
        return;
    }
    run(SqliteTarget::new()).await;
}
