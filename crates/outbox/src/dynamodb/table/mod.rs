//! Creates a service's table for the outbox, idempotently: keys, on-demand billing, a
//! stream of new images, TTL, and the service's secondary indexes.

mod indexes;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, StreamSpecification, StreamViewType, TableDescription, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

pub use indexes::SecondaryIndex;

use super::{DynamoDbOutboxConfig, storage};
use crate::OutboxError;

/// How long creation waits for the table to become active.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);

const OPERATION: &str = "creating the outbox table";

pub(super) async fn create_if_missing(
    client: &Client,
    config: &DynamoDbOutboxConfig,
) -> Result<(), OutboxError> {
    let table = &config.table;
    match describe(client, table).await? {
        Some(description) => check_keys(&description, config)?,
        None => create(client, config).await?,
    }
    wait_until_active(client, table).await?;
    indexes::add_missing(client, table, &config.secondary_indexes).await?;
    enable_ttl(client, config).await
}

/// The table's description; `None` when it does not exist.
async fn describe(client: &Client, table: &str) -> Result<Option<TableDescription>, OutboxError> {
    match client.describe_table().table_name(table).send().await {
        Ok(output) => Ok(output.table().cloned()),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(storage(OPERATION, error)),
    }
}

fn check_keys(
    description: &TableDescription,
    config: &DynamoDbOutboxConfig,
) -> Result<(), OutboxError> {
    let keys = description.key_schema();
    let has = |name: &str, key_type: KeyType| {
        keys.iter()
            .any(|key| key.attribute_name() == name && key.key_type() == &key_type)
    };
    if keys.len() == 2
        && has(&config.partition_key, KeyType::Hash)
        && has(&config.sort_key, KeyType::Range)
    {
        return Ok(());
    }
    Err(OutboxError::storage(
        OPERATION,
        format!(
            "the table {} exists, but its keys are not the partition key `{}` and the sort \
             key `{}`; configure the outbox with the table's keys",
            config.table, config.partition_key, config.sort_key
        ),
    ))
}

async fn create(client: &Client, config: &DynamoDbOutboxConfig) -> Result<(), OutboxError> {
    let mut request = client
        .create_table()
        .table_name(&config.table)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(|error| storage(OPERATION, error))?,
        )
        .key_schema(indexes::key_element(&config.partition_key, KeyType::Hash)?)
        .key_schema(indexes::key_element(&config.sort_key, KeyType::Range)?);
    let keys = [config.partition_key.as_str(), config.sort_key.as_str()];
    for name in indexes::key_attributes(keys, &config.secondary_indexes) {
        request = request.attribute_definitions(indexes::string_attribute(name)?);
    }
    for index in &config.secondary_indexes {
        request = request.global_secondary_indexes(index.definition()?);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        // Another process creating it at the same time is fine.
        Err(error)
            if error
                .as_service_error()
                .is_some_and(CreateTableError::is_resource_in_use_exception) =>
        {
            Ok(())
        }
        Err(error) => Err(storage(OPERATION, error)),
    }
}

async fn wait_until_active(client: &Client, table: &str) -> Result<(), OutboxError> {
    let deadline = tokio::time::Instant::now() + ACTIVE_TIMEOUT;
    loop {
        let status = describe(client, table)
            .await?
            .and_then(|description| description.table_status().cloned());
        if status == Some(TableStatus::Active) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(OutboxError::storage(
                OPERATION,
                format!(
                    "the table {table} did not become ACTIVE within {} s; check it in \
                 the console and start again",
                    ACTIVE_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn enable_ttl(client: &Client, config: &DynamoDbOutboxConfig) -> Result<(), OutboxError> {
    let wanted = &config.ttl_attribute;
    let described = client
        .describe_time_to_live()
        .table_name(&config.table)
        .send()
        .await
        .map_err(|error| storage(OPERATION, error))?;
    if let Some(ttl) = described.time_to_live_description() {
        let enabled = matches!(
            ttl.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        );
        match ttl.attribute_name() {
            Some(attribute) if enabled && attribute == wanted => return Ok(()),
            Some(attribute) if enabled => {
                return Err(OutboxError::storage(
                    OPERATION,
                    format!(
                        "the table {} has TTL enabled on `{attribute}`, not on \
                     `{wanted}`; configure the outbox's ttl_attribute as `{attribute}`",
                        config.table
                    ),
                ));
            }
            _ => {}
        }
    }
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(wanted)
        .build()
        .map_err(|error| storage(OPERATION, error))?;
    client
        .update_time_to_live()
        .table_name(&config.table)
        .time_to_live_specification(specification)
        .send()
        .await
        .map_err(|error| storage(OPERATION, error))?;
    Ok(())
}
