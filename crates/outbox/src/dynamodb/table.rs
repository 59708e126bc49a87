//! Creates a service's table for the outbox: keys, on-demand billing, a stream of new
//! images, TTL; idempotently.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};

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
    match client.describe_table().table_name(table).send().await {
        Ok(output) => {
            let keys = output
                .table()
                .map(aws_sdk_dynamodb::types::TableDescription::key_schema)
                .unwrap_or_default();
            let has = |name: &str, key_type: KeyType| {
                keys.iter()
                    .any(|key| key.attribute_name() == name && key.key_type() == &key_type)
            };
            if keys.len() != 2
                || !has(&config.partition_key, KeyType::Hash)
                || !has(&config.sort_key, KeyType::Range)
            {
                return Err(OutboxError::storage(
                    OPERATION,
                    format!(
                        "the table {table} exists, but its keys are not the partition \
                     key `{}` and the sort key `{}`; configure the outbox with the table's keys",
                        config.partition_key, config.sort_key
                    ),
                ));
            }
        }
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(DescribeTableError::ResourceNotFoundException(_))
            ) =>
        {
            create(client, config).await?;
        }
        Err(error) => return Err(storage(OPERATION, error)),
    }
    wait_until_active(client, table).await?;
    enable_ttl(client, config).await
}

async fn create(client: &Client, config: &DynamoDbOutboxConfig) -> Result<(), OutboxError> {
    let built = |error: aws_sdk_dynamodb::error::BuildError| storage(OPERATION, error);
    let mut request = client
        .create_table()
        .table_name(&config.table)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewImage)
                .build()
                .map_err(built)?,
        );
    for (name, key_type) in [
        (&config.partition_key, KeyType::Hash),
        (&config.sort_key, KeyType::Range),
    ] {
        request = request
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(built)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(key_type)
                    .build()
                    .map_err(built)?,
            );
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
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|error| storage(OPERATION, error))?;
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
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
