//! Creating the table and enabling TTL on it, safely from several processes at once.

use std::time::Duration;

use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use crate::idempotency::{IdempotencyError, StoreOperation};

use super::{BoxedSdkError, DynamoDbIdempotencyStore, Problem, STORE, TABLE_ACTIVE_TIMEOUT};

impl DynamoDbIdempotencyStore {
    /// Creates the table if it does not exist (partition key only, on-demand billing),
    /// waits until it is active, and enables TTL on the TTL attribute. Safe to call on
    /// every start, from several processes at once.
    ///
    /// # Errors
    /// [`IdempotencyError::Backend`] when DynamoDB refuses, the table exists with another
    /// key schema, the table does not become active within a minute, or the table's TTL
    /// is already enabled on another attribute.
    pub async fn create_table_if_missing(&self) -> Result<(), IdempotencyError> {
        let failed =
            |error: BoxedSdkError| IdempotencyError::backend(STORE, StoreOperation::Open, error);
        let table = &self.config.table;
        let described = self.client.describe_table().table_name(table).send().await;
        match described {
            Ok(output) => {
                let keys = output
                    .table()
                    .map(aws_sdk_dynamodb::types::TableDescription::key_schema)
                    .unwrap_or_default();
                let expected = keys.len() == 1
                    && keys[0].attribute_name() == self.config.partition_key
                    && keys[0].key_type() == &KeyType::Hash;
                if !expected {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Open,
                        Problem(format!(
                            "the table {table} exists, but its key is not the partition key `{}` \
                             alone",
                            self.config.partition_key
                        )),
                    ));
                }
            }
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(DescribeTableError::ResourceNotFoundException(_))
                ) =>
            {
                let created = self
                    .client
                    .create_table()
                    .table_name(table)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name(&self.config.partition_key)
                            .attribute_type(ScalarAttributeType::S)
                            .build()
                            .map_err(|error| failed(error.into()))?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name(&self.config.partition_key)
                            .key_type(KeyType::Hash)
                            .build()
                            .map_err(|error| failed(error.into()))?,
                    )
                    .send()
                    .await;
                // Another process creating it at the same time is fine.
                if let Err(error) = created
                    && !error
                        .as_service_error()
                        .is_some_and(aws_sdk_dynamodb::operation::create_table::CreateTableError::is_resource_in_use_exception)
                {
                    return Err(failed(error.into()));
                }
            }
            Err(error) => return Err(failed(error.into())),
        }
        self.wait_until_active().await?;
        self.enable_ttl().await
    }

    async fn wait_until_active(&self) -> Result<(), IdempotencyError> {
        let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
        loop {
            let described = self
                .client
                .describe_table()
                .table_name(&self.config.table)
                .send()
                .await
                .map_err(|error| IdempotencyError::backend(STORE, StoreOperation::Open, error))?;
            let status = described.table().and_then(|table| table.table_status());
            if status == Some(&TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IdempotencyError::backend(
                    STORE,
                    StoreOperation::Open,
                    Problem(format!(
                        "the table {} did not become ACTIVE within {} s",
                        self.config.table,
                        TABLE_ACTIVE_TIMEOUT.as_secs()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn enable_ttl(&self) -> Result<(), IdempotencyError> {
        let failed =
            |error: BoxedSdkError| IdempotencyError::backend(STORE, StoreOperation::Open, error);
        let wanted = &self.config.ttl_attribute;
        let described = self
            .client
            .describe_time_to_live()
            .table_name(&self.config.table)
            .send()
            .await
            .map_err(|error| failed(error.into()))?;
        if let Some(ttl) = described.time_to_live_description() {
            let enabled = matches!(
                ttl.time_to_live_status(),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            match ttl.attribute_name() {
                Some(attribute) if enabled && attribute == wanted => return Ok(()),
                Some(attribute) if enabled => {
                    return Err(IdempotencyError::backend(
                        STORE,
                        StoreOperation::Open,
                        Problem(format!(
                            "the table {} has TTL enabled on `{attribute}`, not on `{wanted}`; \
                             configure the store's ttl_attribute as `{attribute}`",
                            self.config.table
                        )),
                    ));
                }
                _ => {}
            }
        }
        self.client
            .update_time_to_live()
            .table_name(&self.config.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(wanted)
                    .build()
                    .map_err(|error| failed(error.into()))?,
            )
            .send()
            .await
            .map_err(|error| failed(error.into()))?;
        Ok(())
    }
}
