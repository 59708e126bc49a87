//! Fresh DynamoDB tables for tests: unique name, on-demand capacity, optional stream and TTL.

use aws_sdk_dynamodb::Client;

use crate::error_chain;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

/// The shape of a test table. Keys are strings.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Name of the partition key attribute.
    pub partition_key: String,
    /// Name of the sort key attribute, if the table has one.
    pub sort_key: Option<String>,
    /// Enables a DynamoDB stream with this view type.
    pub stream: Option<StreamViewType>,
    /// Enables TTL on this attribute.
    pub ttl_attribute: Option<String>,
}

impl Default for TableSpec {
    /// `pk` + `sk`, no stream, no TTL.
    fn default() -> Self {
        Self {
            partition_key: "pk".to_owned(),
            sort_key: Some("sk".to_owned()),
            stream: None,
            ttl_attribute: None,
        }
    }
}

/// Creates a table with a unique name starting with `prefix` and waits until it is active.
///
/// # Panics
/// When DynamoDB refuses to create the table or it does not become active within 30 s.
///
/// # Example
/// ```no_run
/// use dovetail_testkit::aws::{TableSpec, fresh_table};
/// # async fn example() {
/// let aws = dovetail_testkit::aws().await;
/// let client = aws.dynamodb();
/// let table = fresh_table(&client, "orders", &TableSpec::default()).await;
/// # }
/// ```
pub async fn fresh_table(client: &Client, prefix: &str, spec: &TableSpec) -> String {
    let name = crate::unique_name(prefix);
    let mut keys = vec![(spec.partition_key.as_str(), KeyType::Hash)];
    if let Some(sort_key) = &spec.sort_key {
        keys.push((sort_key.as_str(), KeyType::Range));
    }
    let mut request = client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, key_type) in keys {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .expect("attribute definition has its required fields"),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attribute)
                    .key_type(key_type)
                    .build()
                    .expect("key schema element has its required fields"),
            );
    }
    if let Some(view) = &spec.stream {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(view.clone())
                .build()
                .expect("stream specification has its required fields"),
        );
    }
    if let Err(error) = request.send().await {
        panic!(
            "cannot create the test table {name}: {}",
            error_chain(&error)
        );
    }
    wait_until_active(client, &name).await;
    if let Some(attribute) = &spec.ttl_attribute {
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(attribute)
            .build()
            .expect("ttl specification has its required fields");
        if let Err(error) = client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(ttl)
            .send()
            .await
        {
            panic!(
                "cannot enable TTL on the test table {name}: {}",
                error_chain(&error)
            );
        }
    }
    name
}

async fn wait_until_active(client: &Client, name: &str) {
    for _ in 0..300 {
        let described = client.describe_table().table_name(name).send().await;
        let status = described
            .ok()
            .and_then(|output| output.table)
            .and_then(|table| table.table_status);
        if status == Some(TableStatus::Active) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the test table {name} did not become ACTIVE within 30 s");
}
