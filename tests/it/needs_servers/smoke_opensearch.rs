//! OpenSearch through the `opensearch` crate: index and find a document; external versions
//! refuse an older write.

use opensearch::http::StatusCode;
use opensearch::params::{Refresh, VersionType};
use opensearch::{IndexParts, SearchParts};
use serde_json::{Value, json};

#[tokio::test]
async fn indexes_and_finds_a_document_and_refuses_an_older_external_version() {
    let search = dovetail_testkit::opensearch().await;
    let client = search.client();
    let index = search.fresh_index_name("smoke-policies");

    let write = |version: i64, status: &'static str| {
        client
            .index(IndexParts::IndexId(&index, "policy-1"))
            .version(version)
            .version_type(VersionType::External)
            .refresh(Refresh::True)
            .body(json!({ "title": "Home insurance for a lighthouse", "status": status }))
            .send()
    };

    let created = write(5, "active").await.unwrap();
    assert_eq!(created.status_code(), StatusCode::CREATED);

    let found: Value = client
        .search(SearchParts::Index(&[&index]))
        .body(json!({ "query": { "match": { "title": "lighthouse" } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["hits"]["total"]["value"], 1, "{found}");
    assert_eq!(found["hits"]["hits"][0]["_id"], "policy-1");

    let stale = write(3, "draft").await.unwrap();
    assert_eq!(
        stale.status_code(),
        StatusCode::CONFLICT,
        "version 3 after 5 is refused"
    );
    let body: Value = stale.json().await.unwrap();
    assert_eq!(
        body["error"]["type"], "version_conflict_engine_exception",
        "{body}"
    );

    let current: Value = client
        .get(opensearch::GetParts::IndexId(&index, "policy-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["_version"], 5);
    assert_eq!(
        current["_source"]["status"], "active",
        "the newer document stays"
    );
}
