//! ListOffsets: the earliest offset (-2), the latest (-1, the high watermark), or the first
//! offset at or after a timestamp, per partition, answered on the owner shards.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use protocol::ErrorCode;

use super::on_owners;
use crate::catalog::TopicMeta;
use crate::shard::Shard;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// KIP-734 (v7): the record with the largest timestamp.
const MAX_TIMESTAMP: i64 = -3;

struct Lookup {
    topic: TopicMeta,
    partition: i32,
    timestamp: i64,
}

/// (error, timestamp, offset)
type Found = (ErrorCode, i64, i64);

pub async fn handle(shard: &Rc<Shard>, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let catalog = shard.context.catalog.snapshot();
    let mut answers: Vec<Vec<Found>> = Vec::new();
    let mut lookups = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta = catalog.topics.get(topic.name.0.as_str());
        answers.push(Vec::new());
        for (p, partition) in topic.partitions.iter().enumerate() {
            match meta.and_then(|meta| Some((meta, meta.owner(partition.partition_index)?))) {
                Some((meta, owner)) => {
                    lookups.push((
                        owner,
                        (
                            (t, p),
                            Lookup {
                                topic: meta.clone(),
                                partition: partition.partition_index,
                                timestamp: partition.timestamp,
                            },
                        ),
                    ));
                    answers[t].push((ErrorCode::None, -1, -1));
                }
                None => {
                    let missing = super::cluster_topics::missing_partition(
                        shard,
                        topic.name.0.as_str(),
                        partition.partition_index,
                    );
                    answers[t].push((missing.code, -1, -1))
                }
            }
        }
    }
    let gone = (ErrorCode::NotLeaderOrFollower, -1, -1);
    let found = on_owners(
        shard,
        lookups,
        |owner_shard, item: Lookup| async move { lookup(&owner_shard, &item).await },
        gone,
    )
    .await;
    for ((t, p), found) in found {
        answers[t][p] = found;
    }
    let topics = request
        .topics
        .iter()
        .zip(answers)
        .map(|(topic, found)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(found)
                .map(|(partition, (error, timestamp, offset))| {
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(error.code())
                        .with_timestamp(timestamp)
                        .with_offset(offset)
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

async fn lookup(shard: &Rc<Shard>, item: &Lookup) -> Found {
    let local = match shard.partition(&item.topic, item.partition).await {
        Ok(local) => local,
        Err(error) => return (error.error_code(), -1, -1),
    };
    if let Err(refused) = local.check_leader(None) {
        return (refused.error_code(), -1, -1);
    }
    let log = &local.log;
    match item.timestamp {
        LATEST => (ErrorCode::None, -1, local.high_watermark()),
        EARLIEST => (ErrorCode::None, -1, log.log_start_offset()),
        MAX_TIMESTAMP => match log.max_timestamp() {
            max if max < 0 => (ErrorCode::None, -1, -1),
            max => match log.offset_for_timestamp(max).await {
                Ok(Some(found)) => (ErrorCode::None, found.timestamp, found.offset),
                Ok(None) => (ErrorCode::None, -1, -1),
                Err(error) => (error.error_code(), -1, -1),
            },
        },
        timestamp if timestamp < 0 => (ErrorCode::InvalidRequest, -1, -1),
        timestamp => match log.offset_for_timestamp(timestamp).await {
            Ok(Some(found)) => (ErrorCode::None, found.timestamp, found.offset),
            Ok(None) => (ErrorCode::None, -1, -1),
            Err(error) => (error.error_code(), -1, -1),
        },
    }
}
