//! The identity checks of `identity.rs` and the document versions of
//! `document_versions.rs` with the service's index on OpenSearch: the customer scope is
//! a filter inside OpenSearch's query as it is inside tantivy's, and a document's version
//! is read from OpenSearch's realtime get.

use dovetail_search::config::{IndexBackend, IndexConfig};

use crate::document_versions::{
    a_customer_reads_only_their_own_versions, a_missing_document_or_an_unknown_type_is_a_problem,
    the_version_follows_the_events,
};
use crate::identity::{
    a_customer_never_gets_another_customers_hit,
    every_endpoint_answers_each_caller_as_its_token_allows,
};
use crate::support::Service;

/// The service over an alias of its own on the OpenSearch node.
async fn start() -> Service {
    let fixture = dovetail_testkit::opensearch().await;
    let mut index = IndexConfig::default();
    index.backend = IndexBackend::Opensearch;
    index.opensearch_url = fixture.url().to_string();
    index.opensearch_alias = fixture.fresh_index_name("search-identity");
    Service::start_on(Some(index)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_caller_as_its_token_allows_on_opensearch() {
    let service = start().await;
    every_endpoint_answers_each_caller_as_its_token_allows(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_never_gets_another_customers_hit_on_opensearch() {
    let service = start().await;
    a_customer_never_gets_another_customers_hit(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_follows_the_events_on_opensearch() {
    let service = start().await;
    the_version_follows_the_events(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_reads_only_their_own_versions_on_opensearch() {
    let service = start().await;
    a_customer_reads_only_their_own_versions(&service).await;
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_document_or_an_unknown_type_is_a_problem_on_opensearch() {
    let service = start().await;
    a_missing_document_or_an_unknown_type_is_a_problem(&service).await;
    service.stop().await;
}
