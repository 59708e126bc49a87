//! The search index on the OpenSearch node `cargo xtask servers` starts
//! (`DOVETAIL_OPENSEARCH_URL`): the contract suite and the reordering proptest, each test
//! behind an alias of its own.

mod opensearch;
