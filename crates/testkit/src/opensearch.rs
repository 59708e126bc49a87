//! The OpenSearch fixture: a client for `DOVETAIL_OPENSEARCH_URL` and unique index names.

use ::opensearch::OpenSearch;
use ::opensearch::http::Url;
use ::opensearch::http::transport::Transport;

use crate::backend::{self, Backend};

/// An OpenSearch client for the test node.
#[derive(Debug, Clone)]
pub struct OpenSearchFixture {
    client: OpenSearch,
    url: Url,
}

/// Connects to the OpenSearch node named by `DOVETAIL_OPENSEARCH_URL`.
///
/// # Panics
/// When no endpoint is configured, it does not answer, or it is not a URL.
///
/// # Example
/// ```no_run
/// # async fn example() {
/// let search = dovetail_testkit::opensearch().await;
/// let index = search.fresh_index_name("policies");
/// # }
/// ```
pub async fn opensearch() -> OpenSearchFixture {
    let endpoint = backend::require(Backend::OpenSearch).await;
    let url = Url::parse(&endpoint)
        .unwrap_or_else(|error| panic!("DOVETAIL_OPENSEARCH_URL={endpoint} is not a URL: {error}"));
    let transport = Transport::single_node(url.as_str())
        .unwrap_or_else(|error| panic!("cannot build an OpenSearch transport for {url}: {error}"));
    OpenSearchFixture {
        client: OpenSearch::new(transport),
        url,
    }
}

impl OpenSearchFixture {
    /// The client.
    pub fn client(&self) -> &OpenSearch {
        &self.client
    }

    /// The node's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// An index name no other test uses (the index is not created).
    pub fn fresh_index_name(&self, prefix: &str) -> String {
        crate::unique_name(prefix)
    }
}
