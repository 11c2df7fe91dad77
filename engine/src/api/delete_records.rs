//! DeleteRecords (KIP-107): moves each partition's log start offset up to the offset asked
//! (-1: the high watermark), answered on the owner shards once the new start is stored.
//! Records below it are no longer served; whole segments below it are deleted.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use protocol::ErrorCode;

use super::on_owners;
use crate::catalog::TopicMeta;
use crate::shard::Shard;

/// The offset that means "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// (error, low watermark)
type Deleted = (ErrorCode, i64);

pub async fn handle(shard: &Rc<Shard>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let catalog = shard.context.catalog.snapshot();
    let mut answers: Vec<Vec<Deleted>> = Vec::with_capacity(request.topics.len());
    let mut work = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta = catalog.topics.get(topic.name.0.as_str());
        answers.push(vec![
            (ErrorCode::UnknownTopicOrPartition, -1);
            topic.partitions.len()
        ]);
        for (p, partition) in topic.partitions.iter().enumerate() {
            let index = partition.partition_index;
            match meta.and_then(|meta| Some((meta, meta.owner(index)?))) {
                Some((meta, owner)) => {
                    work.push((owner, ((t, p), (meta.clone(), index, partition.offset))))
                }
                None => {
                    let missing = super::cluster_topics::missing_partition(
                        shard,
                        topic.name.0.as_str(),
                        index,
                    );
                    answers[t][p] = (missing.code, -1);
                }
            }
        }
    }
    let gone = (ErrorCode::NotLeaderOrFollower, -1);
    let done = on_owners(
        shard,
        work,
        |owner_shard, (meta, partition, offset)| async move {
            delete(&owner_shard, &meta, partition, offset).await
        },
        gone,
    )
    .await;
    for ((t, p), deleted) in done {
        answers[t][p] = deleted;
    }
    let topics = request
        .topics
        .iter()
        .zip(answers)
        .map(|(topic, deleted)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(deleted)
                .map(|(partition, (error, low_watermark))| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index)
                        .with_low_watermark(low_watermark)
                        .with_error_code(error.code())
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete(shard: &Rc<Shard>, meta: &TopicMeta, partition: i32, offset: i64) -> Deleted {
    let local = match shard.partition(meta, partition).await {
        Ok(local) => local,
        Err(error) => return (error.error_code(), -1),
    };
    if let Err(refused) = local.check_leader(None) {
        return (refused.error_code(), -1);
    }
    let log = &local.log;
    let offset = match offset {
        HIGH_WATERMARK => local.high_watermark(),
        offset if offset > local.high_watermark() => {
            return (ErrorCode::OffsetOutOfRange, -1);
        }
        offset => offset,
    };
    match log.delete_records_before(offset).await {
        Ok(low_watermark) => (ErrorCode::None, low_watermark),
        Err(error) => {
            if error.error_code() != ErrorCode::OffsetOutOfRange {
                tracing::warn!(topic = meta.name, partition, %error, "DeleteRecords failed");
            }
            (error.error_code(), -1)
        }
    }
}
