//! Rebuilds on OpenSearch with several instances on one alias: one rebuild at a time
//! across them, the other instances write to both indices while it runs (so a reader on
//! any instance never sees a document move back), a claim left by a stopped instance is
//! taken over, and the rebuild jobs of the API refuse a second start.

use std::time::Duration;

use dovetail_contracts::policy::PolicyStatus;
use dovetail_search::index::opensearch::{OpenSearchSettings, REBUILD_ALIAS_SUFFIX};
use dovetail_search::index::{AnyIndex, IndexError, OpenSearchIndex, RebuildProgress, SearchIndex};
use dovetail_search::rebuild_jobs::{RebuildJobs, StartError, Started};
use serde_json::{Value, json};

use crate::contract::RebuildLoad;
use crate::support::policy;

/// Two instances of the service's index on one fresh alias.
async fn two_instances(prefix: &str) -> (OpenSearchIndex, OpenSearchIndex, String) {
    let fixture = dovetail_testkit::opensearch().await;
    let settings = OpenSearchSettings {
        alias: fixture.fresh_index_name(prefix),
        refresh_interval: "1s".into(),
        replicas: 0,
    };
    let first = OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap();
    let second = OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap();
    (first, second, settings.alias)
}

/// Waits (at most 30 s) until the rebuild lease of `alias` exists.
async fn wait_for_lease(alias: &str) {
    let fixture = dovetail_testkit::opensearch().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = fixture
            .client()
            .get(opensearch::GetParts::IndexId(
                &format!("{alias}-rebuild-lock"),
                "lease",
            ))
            .send()
            .await
            .unwrap();
        if found.status_code().is_success() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rebuild never took its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn aliases_of(alias: &str) -> Value {
    dovetail_testkit::opensearch()
        .await
        .client()
        .indices()
        .get_alias(opensearch::indices::IndicesGetAliasParts::Name(&[
            &format!("{alias}*"),
        ]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_one_instance_rebuilds_the_others_write_to_both_and_nothing_moves_back() {
    let (rebuilder, other, alias) = two_instances("search-two").await;
    let seed = (0..20)
        .map(|n| {
            dovetail_search::document::IndexedDocument::Live(policy(
                &format!("pol-{n}"),
                "cust-1",
                1,
                PolicyStatus::Active,
            ))
        })
        .collect();
    other.upsert_batch(seed).await.unwrap();

    // The other instance writes and reads all along (see `RebuildLoad`).
    let load = RebuildLoad::default();
    let (writer, reader) = (load.writer(&other), load.reader(&other, 20));

    let rebuilding = {
        let rebuilder = rebuilder.clone();
        tokio::spawn(async move { rebuilder.rebuild(&RebuildProgress::default()).await })
    };
    // While it runs, neither instance may start another. Wait until its lease is
    // written (a loaded machine may take a while to get there); the other instance may
    // still race it between its look and its own attempt: refused as "just started".
    wait_for_lease(&alias).await;
    let refused = other
        .rebuild(&RebuildProgress::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, IndexError::Conflict(message)
            if message.contains("under way") || message.contains("just started")),
        "{refused:?}"
    );
    let refused = rebuilder
        .rebuild(&RebuildProgress::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, IndexError::Conflict(_)), "{refused:?}");

    let report = rebuilding.await.unwrap().unwrap();
    load.switched();
    assert_eq!(
        (report.from.as_str(), report.to.as_str()),
        (
            format!("{alias}-000001").as_str(),
            format!("{alias}-000002").as_str()
        )
    );
    writer.await.unwrap();
    reader.await.unwrap();

    let last = load.last_version();
    for n in 0..20 {
        let expected = if n < 10 { last } else { 1 };
        for index in [&rebuilder, &other] {
            let held = index.get(&format!("policy:pol-{n}")).await.unwrap();
            assert_eq!(held.map(|held| held.version()), Some(expected), "pol-{n}");
        }
    }
    // The alias names the new index alone; the rebuild alias and the old index are gone.
    let aliases = aliases_of(&alias).await;
    let indices: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(indices, [&format!("{alias}-000002")], "{aliases}");
    assert_eq!(
        aliases[format!("{alias}-000002")]["aliases"],
        json!({ alias.clone(): {} }),
        "{aliases}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_left_by_a_stopped_instance_is_taken_over_and_a_live_one_is_not() {
    let (index, other, alias) = two_instances("search-takeover").await;
    index
        .upsert(policy("pol-1", "cust-1", 3, PolicyStatus::Active))
        .await
        .unwrap();
    let client = dovetail_testkit::opensearch().await.client().clone();
    let now_ms =
        u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap();
    // What an instance that stopped mid-rebuild leaves: its lease and its half-built
    // index behind the rebuild alias (so every instance still writes to both).
    let half_built = format!("{alias}-000002");
    client
        .indices()
        .create(opensearch::indices::IndicesCreateParts::Index(&half_built))
        .body(json!({ "aliases": { format!("{alias}{REBUILD_ALIAS_SUFFIX}"): {} } }))
        .send()
        .await
        .unwrap()
        .error_for_status_code()
        .unwrap();
    let lease = |heartbeat_ms: u64| {
        json!({
            "instance": "gone-1",
            "from": format!("{alias}-000001"),
            "to": half_built,
            "heartbeat_ms": heartbeat_ms
        })
    };
    // `lease` is the document's id; builds before it named it `claim`.
    let write_lease = |id: &'static str, heartbeat_ms: u64| {
        let (client, lock) = (client.clone(), format!("{alias}-rebuild-lock"));
        let body = lease(heartbeat_ms);
        async move {
            client
                .index(opensearch::IndexParts::IndexId(&lock, id))
                .body(body)
                .send()
                .await
                .unwrap()
                .error_for_status_code()
                .unwrap();
        }
    };

    // A lease heartbeating now, of this build or of an older one: refused, naming the
    // instance and its index.
    for live in ["claim", "lease"] {
        write_lease(live, now_ms).await;
        let refused = index
            .rebuild(&RebuildProgress::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, IndexError::Conflict(message) if message.contains("gone-1") && message.contains(&half_built)),
            "{live}: {refused:?}"
        );
        write_lease(live, now_ms - 600_000).await;
    }

    // Both silent for ten minutes: two instances take them over at once; one wins and
    // rebuilds, the other is refused (the takeover is fenced).
    let progress = (RebuildProgress::default(), RebuildProgress::default());
    let (first, second) = tokio::join!(index.rebuild(&progress.0), other.rebuild(&progress.1));
    let (report, refused) = match (first, second) {
        (Ok(report), Err(refused)) | (Err(refused), Ok(report)) => (report, refused),
        other => panic!("exactly one rebuild should win: {other:?}"),
    };
    assert!(matches!(refused, IndexError::Conflict(_)), "{refused:?}");
    assert_eq!(
        report.to, half_built,
        "the half-built index was cleared and built again"
    );
    assert_eq!(
        crate::support::held_version(&index, "policy:pol-1").await,
        Some(3)
    );
    let aliases = aliases_of(&alias).await;
    let indices: Vec<&String> = aliases.as_object().unwrap().keys().collect();
    assert_eq!(indices, [&half_built], "{aliases}");
    // The lease is released, the older one deleted: the next rebuild starts at once.
    let again = index.rebuild(&RebuildProgress::default()).await.unwrap();
    assert_eq!(again.from, half_built);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_jobs_answer_once_leased_and_refuse_a_second_start_anywhere() {
    let (first, second, _) = two_instances("search-jobs").await;
    let jobs = RebuildJobs::new(AnyIndex::OpenSearch(first));
    let other_jobs = RebuildJobs::new(AnyIndex::OpenSearch(second));

    let Started::New(job) = jobs.start(None).await.unwrap() else {
        panic!("a new job was expected")
    };
    assert!(
        matches!(jobs.start(None).await, Err(StartError::Running(running)) if running.id == job.id)
    );
    // The other instance is refused by the lease in the index, and keeps no job.
    let refused = other_jobs.start(None).await.unwrap_err();
    assert!(
        matches!(&refused, StartError::Refused(IndexError::Conflict(_))),
        "{refused:?}"
    );
    assert!(other_jobs.list().is_empty());

    let done = jobs.finished(&job.id).await.unwrap();
    assert!(
        matches!(
            done.state,
            dovetail_search::rebuild_jobs::JobState::Succeeded { .. }
        ),
        "{done:?}"
    );
    // Once it ended, the other instance may rebuild.
    let Started::New(next) = other_jobs.start(None).await.unwrap() else {
        panic!("a new job was expected")
    };
    let done = other_jobs.finished(&next.id).await.unwrap();
    assert!(
        matches!(
            done.state,
            dovetail_search::rebuild_jobs::JobState::Succeeded { .. }
        ),
        "{done:?}"
    );
}
