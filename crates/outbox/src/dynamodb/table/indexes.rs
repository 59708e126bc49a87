//! A service's global secondary indexes on the outbox's table: their definitions, and
//! adding those an existing table lacks.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, CreateGlobalSecondaryIndexAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

use super::{OPERATION, describe};
use crate::OutboxError;
use crate::dynamodb::storage;

/// How long opening waits for DynamoDB to build an index added to an existing table.
const INDEX_ACTIVE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// A global secondary index a service wants on its table: string keys, every attribute
/// projected. Only items that have both attributes appear in it.
///
/// # Example
/// ```
/// use dovetail_events::envelope::Source;
/// use dovetail_outbox::dynamodb::{DynamoDbOutboxConfig, SecondaryIndex};
///
/// let config = DynamoDbOutboxConfig::new("claims", Source::parse("claim-service")?)
///     .with_secondary_index(SecondaryIndex::new("by-policy", "policy_id", "filed_at"));
/// assert_eq!(config.secondary_indexes[0].name, "by-policy");
/// # Ok::<(), dovetail_events::envelope::FieldError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryIndex {
    /// The index's name.
    pub name: String,
    /// Its partition key, a string attribute.
    pub partition_key: String,
    /// Its sort key, a string attribute.
    pub sort_key: String,
}

impl SecondaryIndex {
    /// The index `name` keyed by the string attributes `partition_key` and `sort_key`.
    pub fn new(
        name: impl Into<String>,
        partition_key: impl Into<String>,
        sort_key: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            partition_key: partition_key.into(),
            sort_key: sort_key.into(),
        }
    }

    /// Its definition for `CreateTable`.
    pub(super) fn definition(&self) -> Result<GlobalSecondaryIndex, OutboxError> {
        GlobalSecondaryIndex::builder()
            .index_name(&self.name)
            .set_key_schema(Some(self.key_schema()?))
            .projection(everything())
            .build()
            .map_err(|error| storage(OPERATION, error))
    }

    fn key_schema(&self) -> Result<Vec<KeySchemaElement>, OutboxError> {
        Ok(vec![
            key_element(&self.partition_key, KeyType::Hash)?,
            key_element(&self.sort_key, KeyType::Range)?,
        ])
    }
}

fn everything() -> Projection {
    Projection::builder()
        .projection_type(ProjectionType::All)
        .build()
}

pub(super) fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, OutboxError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(|error| storage(OPERATION, error))
}

pub(super) fn string_attribute(name: &str) -> Result<AttributeDefinition, OutboxError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(|error| storage(OPERATION, error))
}

/// The attributes `keys` and the indexes are keyed by, each once.
pub(super) fn key_attributes<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    indexes: &'a [SecondaryIndex],
) -> Vec<&'a str> {
    let mut names: Vec<&str> = keys
        .into_iter()
        .chain(
            indexes
                .iter()
                .flat_map(|index| [index.partition_key.as_str(), index.sort_key.as_str()]),
        )
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Adds the indexes `table` lacks (one at a time: DynamoDB builds one per update) and
/// waits until every one of `indexes` is active.
pub(super) async fn add_missing(
    client: &Client,
    table: &str,
    indexes: &[SecondaryIndex],
) -> Result<(), OutboxError> {
    let deadline = tokio::time::Instant::now() + INDEX_ACTIVE_TIMEOUT;
    let mut announced = false;
    loop {
        let description = describe(client, table).await?.ok_or_else(|| {
            OutboxError::storage(
                OPERATION,
                format!("the table {table} disappeared while its indexes were being added"),
            )
        })?;
        let existing = description.global_secondary_indexes();
        let status_of = |name: &str| {
            existing
                .iter()
                .find(|index| index.index_name() == Some(name))
                .map(|index| index.index_status().cloned())
        };
        let building = indexes.iter().any(|index| {
            matches!(status_of(&index.name), Some(status) if status != Some(IndexStatus::Active))
        });
        let missing = indexes
            .iter()
            .find(|index| status_of(&index.name).is_none());
        match missing {
            None if !building => return Ok(()),
            Some(index) if !building => {
                tracing::info!(table, index = %index.name, "adding a secondary index; DynamoDB builds it before the table is used");
                announced = true;
                add(client, table, index).await?;
                continue;
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(OutboxError::storage(
                OPERATION,
                format!(
                    "the secondary indexes of {table} were not built within {} minutes; \
                     DynamoDB keeps building them: start again later",
                    INDEX_ACTIVE_TIMEOUT.as_secs() / 60
                ),
            ));
        }
        if !announced {
            tracing::info!(
                table,
                "waiting for DynamoDB to build the table's secondary indexes"
            );
            announced = true;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn add(client: &Client, table: &str, index: &SecondaryIndex) -> Result<(), OutboxError> {
    let action = CreateGlobalSecondaryIndexAction::builder()
        .index_name(&index.name)
        .set_key_schema(Some(index.key_schema()?))
        .projection(everything())
        .build()
        .map_err(|error| storage(OPERATION, error))?;
    let mut request = client
        .update_table()
        .table_name(table)
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(action).build(),
        );
    for name in key_attributes([], std::slice::from_ref(index)) {
        request = request.attribute_definitions(string_attribute(name)?);
    }
    let Err(error) = request.send().await else {
        return Ok(());
    };
    // Another process may have added it meanwhile: look again before failing.
    let added = describe(client, table).await?.is_some_and(|table| {
        table
            .global_secondary_indexes()
            .iter()
            .any(|existing| existing.index_name() == Some(index.name.as_str()))
    });
    if added {
        Ok(())
    } else {
        Err(storage(
            &format!("{OPERATION}: adding the index {} to {table}", index.name),
            error,
        ))
    }
}
