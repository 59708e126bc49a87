//! The budget of one `TransactWriteItems`: at most 100 actions and 4 MB of items, counted
//! before sending so that an oversized unit of work fails clearly and sends nothing.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};

use crate::OutboxError;

/// DynamoDB's limit on the actions of one transaction.
pub(super) const MAX_ACTIONS: usize = 100;

/// DynamoDB's limit on the total size of a transaction's items.
pub(super) const MAX_BYTES: usize = 4 * 1024 * 1024;

/// Checks a transaction of `count` actions against the limit on actions.
pub(super) fn check_count(count: usize) -> Result<(), OutboxError> {
    if count > MAX_ACTIONS {
        return Err(OutboxError::TooLarge {
            backend: "DynamoDB TransactWriteItems",
            limit: format!("{MAX_ACTIONS} actions"),
            actual: format!(
                "{count} actions (business writes, one version update per aggregate, one item \
                 per event)"
            ),
        });
    }
    Ok(())
}

/// Checks `actions` against both limits.
pub(super) fn check(actions: &[TransactWriteItem]) -> Result<(), OutboxError> {
    check_count(actions.len())?;
    let bytes: usize = actions.iter().map(action_size).sum();
    if bytes > MAX_BYTES {
        return Err(OutboxError::TooLarge {
            backend: "DynamoDB TransactWriteItems",
            limit: "4 MB".to_owned(),
            actual: format!("about {bytes} bytes of items"),
        });
    }
    Ok(())
}

/// An estimate of what one action weighs: the item of a `Put`; the key and the values of
/// the expressions otherwise (DynamoDB also counts the rest of an updated item, which
/// only it knows).
pub(super) fn action_size(action: &TransactWriteItem) -> usize {
    if let Some(put) = action.put() {
        return item_size(put.item()) + values_size(put.expression_attribute_values());
    }
    if let Some(update) = action.update() {
        return item_size(update.key()) + values_size(update.expression_attribute_values());
    }
    if let Some(delete) = action.delete() {
        return item_size(delete.key()) + values_size(delete.expression_attribute_values());
    }
    if let Some(check) = action.condition_check() {
        return item_size(check.key()) + values_size(check.expression_attribute_values());
    }
    0
}

fn values_size(values: Option<&HashMap<String, AttributeValue>>) -> usize {
    values.map_or(0, |values| values.values().map(value_size).sum())
}

/// DynamoDB's item size: each attribute's name plus its value.
pub(super) fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Ss(texts) | AttributeValue::Ns(texts) => {
            texts.iter().map(String::len).sum()
        }
        AttributeValue::Bs(blobs) => blobs.iter().map(|blob| blob.as_ref().len()).sum(),
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::Put;

    use super::*;

    fn put(bytes: usize) -> TransactWriteItem {
        let put = Put::builder()
            .table_name("t")
            .item("pk", AttributeValue::S("x".repeat(bytes)))
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    }

    #[test]
    fn sizes_count_names_and_values() {
        assert_eq!(action_size(&put(10)), 12);
        let map = AttributeValue::M(HashMap::from([(
            "a".to_owned(),
            AttributeValue::N("12".into()),
        )]));
        assert_eq!(value_size(&map), 3 + 1 + 1 + 2);
    }

    #[test]
    fn over_either_limit_is_too_large() {
        let many: Vec<_> = (0..101).map(|_| put(1)).collect();
        assert!(
            matches!(check(&many), Err(OutboxError::TooLarge { limit, .. }) if limit == "100 actions")
        );
        assert!(check(&many[..100]).is_ok());
        let heavy: Vec<_> = (0..11).map(|_| put(400_000)).collect();
        assert!(
            matches!(check(&heavy), Err(OutboxError::TooLarge { limit, .. }) if limit == "4 MB")
        );
    }
}
