//! CreatePartitions: grow a topic to a larger partition count. New partitions are placed on
//! shards continuing the topic's round-robin, persisted, then opened on their owners.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use super::ApiError;
use crate::catalog::{CatalogError, PARTITIONS_PER_TOPIC_MAX};
use crate::shard::Shard;

pub async fn add_partitions(
    shard: &Rc<Shard>,
    topic: &str,
    count: i32,
    validate_only: bool,
) -> Result<(), ApiError> {
    if let Some(cluster) = &shard.context.cluster {
        return super::cluster_topics::add_partitions(cluster, topic, count, None, validate_only)
            .await;
    }
    let unknown = || {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        )
    };
    let current = shard
        .context
        .catalog
        .snapshot()
        .topics
        .get(topic)
        .cloned()
        .ok_or_else(unknown)?;
    let have = current.partition_count();
    if count < 0 || (count as usize) <= have || count as usize > PARTITIONS_PER_TOPIC_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("topic '{topic}' has {have} partitions; the new count must be larger (at most {PARTITIONS_PER_TOPIC_MAX}), got {count}"),
        ));
    }
    crate::server::open_files::room_for(count as usize - have)
        .map_err(|message| ApiError::new(ErrorCode::KafkaStorageError, message))?;
    if validate_only {
        return Ok(());
    }
    let shards = shard.shard_count();
    let name = topic.to_string();
    let updated = shard
        .update_catalog(move |catalog| {
            let meta = catalog.topics.get_mut(&name).ok_or(Grown::Missing)?;
            if meta.partition_count() != have {
                return Err(Grown::Raced);
            }
            for partition in have..count as usize {
                meta.partition_shards
                    .push(crate::catalog::placement(&name, partition, shards));
            }
            Ok(meta.clone())
        })
        .await
        .map_err(|grown| match grown {
            Grown::Missing => unknown(),
            Grown::Raced => ApiError::new(
                ErrorCode::InvalidPartitions,
                "the partition count changed meanwhile; retry",
            ),
            Grown::Catalog(error) => ApiError::new(ErrorCode::KafkaStorageError, error.to_string()),
        })?;
    super::topics::open_partitions(shard, &updated, have as i32..count).await?;
    tracing::info!(topic, from = have, to = count, "added partitions");
    Ok(())
}

enum Grown {
    Missing,
    Raced,
    Catalog(CatalogError),
}

impl From<CatalogError> for Grown {
    fn from(error: CatalogError) -> Grown {
        Grown::Catalog(error)
    }
}

pub async fn create(
    shard: &Rc<Shard>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let assignment = topic
            .assignments
            .as_ref()
            .filter(|assignments| !assignments.is_empty())
            .map(|assignments| {
                assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|id| id.0).collect::<Vec<i32>>())
                    .collect::<Vec<_>>()
            });
        let outcome = if let (Some(cluster), Some(_)) = (&shard.context.cluster, &assignment) {
            super::cluster_topics::add_partitions(
                cluster,
                topic.name.0.as_str(),
                topic.count,
                assignment,
                request.validate_only,
            )
            .await
        } else if assignment.is_some() {
            Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "manual replica assignment is not supported on a single broker",
            ))
        } else {
            add_partitions(
                shard,
                topic.name.0.as_str(),
                topic.count,
                request.validate_only,
            )
            .await
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok(()) => result,
            Err(error) => result
                .with_error_code(error.code.code())
                .with_error_message(Some(StrBytes::from_string(error.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
