//! The consistency views of OpenSearch against the testkit's contract, each test behind
//! an alias of its own; drift against the policy and claim stores found and repaired
//! through them (`drift.rs`); and an index made before the consistency fields, refused with an
//! error that says to rebuild, and checkable once rebuilt.

use dovetail_search::index::OpenSearchIndex;
use dovetail_search::index::opensearch::OpenSearchSettings;

pub(crate) async fn open() -> OpenSearchIndex {
    let fixture = dovetail_testkit::opensearch().await;
    let settings = OpenSearchSettings {
        alias: fixture.fresh_index_name("search-views"),
        refresh_interval: "1s".into(),
        replicas: 0,
    };
    OpenSearchIndex::open(fixture.client().clone(), &settings)
        .await
        .unwrap()
}

view_contract!(open());
drift_suite!(open());

/// An index made before the consistency fields (no `consistency` in its mapping, its
/// documents without the fields) is refused by the view, which says to rebuild; after a
/// rebuild every document is in the view.
#[tokio::test]
async fn an_index_made_before_the_fields_is_refused_until_rebuilt() {
    use dovetail_consistency::{BucketRange, View};
    use dovetail_contracts::policy::PolicyStatus;
    use dovetail_search::document::DocumentType;
    use dovetail_search::index::{IndexView, RebuildProgress, SearchIndex};
    use opensearch::indices::IndicesCreateParts;
    use opensearch::{BulkOperation, BulkParts};
    use serde_json::{Value, json};

    let fixture = dovetail_testkit::opensearch().await;
    let client = fixture.client().clone();
    let alias = fixture.fresh_index_name("search-views-old");
    // The index as an older version of the service made it: the mapping without the
    // consistency object, documents written without it.
    let mut mapping = dovetail_search::index::opensearch::mapping();
    mapping["properties"]
        .as_object_mut()
        .unwrap()
        .remove("consistency");
    let created = client
        .indices()
        .create(IndicesCreateParts::Index(&format!("{alias}-000001")))
        .body(json!({
            "settings": { "index": { "number_of_shards": 1, "number_of_replicas": 0 } },
            "mappings": mapping,
            "aliases": { alias.clone(): {} },
        }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status_code().is_success(),
        "{}",
        created.text().await.unwrap()
    );
    let documents: Vec<_> = (0..5)
        .map(|i| {
            dovetail_search::document::IndexedDocument::Live(crate::support::policy(
                &format!("pol-{i}"),
                "cust-1",
                2,
                PolicyStatus::Active,
            ))
        })
        .collect();
    let operations: Vec<BulkOperation<Value>> = documents
        .iter()
        .map(|document| {
            BulkOperation::index(document.to_stored_json())
                .id(document.id())
                .version(2)
                .version_type(opensearch::params::VersionType::External)
                .into()
        })
        .collect();
    let written = client
        .bulk(BulkParts::Index(&alias))
        .refresh(opensearch::params::Refresh::True)
        .body(operations)
        .send()
        .await
        .unwrap();
    assert!(written.status_code().is_success());

    let settings = OpenSearchSettings {
        alias: alias.clone(),
        refresh_interval: "1s".into(),
        replicas: 0,
    };
    let index = OpenSearchIndex::open(client, &settings).await.unwrap();
    let view = IndexView::new(index.clone(), DocumentType::Policy);
    let refused = view.digest(BucketRange::FULL).await.unwrap_err();
    let message = dovetail_testkit::error_chain(&refused);
    assert!(
        message.contains("made before the consistency fields") && message.contains("rebuild"),
        "{message}"
    );

    index.rebuild(&RebuildProgress::default()).await.unwrap();
    index.refresh().await.unwrap();
    assert_eq!(view.digest(BucketRange::FULL).await.unwrap().count, 5);
    assert_eq!(view.entries(BucketRange::FULL).await.unwrap().len(), 5);
}
