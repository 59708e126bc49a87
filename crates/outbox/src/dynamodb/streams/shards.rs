//! The stream's shards and which of them to read now: a child shard only once its parent
//! is read to its end, so an aggregate's records come in commit order across a split.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::Client;

use super::Checkpoint;
use crate::OutboxError;
use crate::dynamodb::storage;

/// A shard as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ShardInfo {
    pub(super) id: String,
    pub(super) parent: Option<String>,
}

/// Every shard of the stream, in the stream's order (`DescribeStream`, all pages).
pub(super) async fn list(client: &Client, stream_arn: &str) -> Result<Vec<ShardInfo>, OutboxError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let described = client
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start.take())
            .send()
            .await
            .map_err(|error| storage("describing the outbox stream", error))?;
        let Some(description) = described.stream_description() else {
            return Ok(shards);
        };
        shards.extend(description.shards().iter().filter_map(|shard| {
            Some(ShardInfo {
                id: shard.shard_id()?.to_owned(),
                parent: shard.parent_shard_id().map(str::to_owned),
            })
        }));
        match description.last_evaluated_shard_id() {
            // An emulator may answer the same page again: stop rather than loop.
            Some(last) if shards.iter().filter(|shard| shard.id == last).count() == 1 => {
                start = Some(last.to_owned());
            }
            _ => return Ok(shards),
        }
    }
}

/// The shards to read now, in the stream's order: those not read to their end whose parent
/// is read to its end, or has no checkpoint left to wait for (no parent, or a parent the
/// stream no longer lists because it was trimmed).
pub(super) fn readable<'s>(
    shards: &'s [ShardInfo],
    checkpoints: &HashMap<String, Checkpoint>,
) -> Vec<&'s ShardInfo> {
    let finished = |id: &str| checkpoints.get(id).is_some_and(|c| c.finished);
    shards
        .iter()
        .filter(|shard| !finished(&shard.id))
        .filter(|shard| {
            shard.parent.as_deref().is_none_or(|parent| {
                finished(parent) || !shards.iter().any(|other| other.id == parent)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parent: Option<&str>) -> ShardInfo {
        ShardInfo {
            id: id.to_owned(),
            parent: parent.map(str::to_owned),
        }
    }

    fn checkpoint(finished: bool) -> Checkpoint {
        Checkpoint {
            sequence_number: Some("100".to_owned()),
            finished,
        }
    }

    #[test]
    fn a_child_waits_until_its_parent_is_read_to_its_end() {
        let shards = [
            shard("a", None),
            shard("b", Some("a")),
            shard("c", Some("b")),
            shard("d", Some("gone")),
        ];
        let ids = |checkpoints: &HashMap<String, Checkpoint>| -> Vec<String> {
            readable(&shards, checkpoints)
                .into_iter()
                .map(|shard| shard.id.clone())
                .collect()
        };
        let mut checkpoints = HashMap::new();
        assert_eq!(
            ids(&checkpoints),
            ["a", "d"],
            "a trimmed parent does not block"
        );

        checkpoints.insert("a".to_owned(), checkpoint(false));
        assert_eq!(
            ids(&checkpoints),
            ["a", "d"],
            "a is not read to its end yet"
        );

        checkpoints.insert("a".to_owned(), checkpoint(true));
        assert_eq!(ids(&checkpoints), ["b", "d"]);

        checkpoints.insert("b".to_owned(), checkpoint(true));
        checkpoints.insert("d".to_owned(), checkpoint(true));
        assert_eq!(ids(&checkpoints), ["c"]);
    }
}
