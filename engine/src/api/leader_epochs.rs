//! OffsetsForLeaderEpoch: for each partition, the largest leader epoch at or below the one
//! asked and the offset where it ended, from the leader's epoch cache. Followers ask it of
//! a new leader to cut a tail the leader does not have; consumers to check their position
//! after a leader change (KIP-320).

use std::rc::Rc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use protocol::ErrorCode;

use super::on_owners;
use crate::catalog::TopicMeta;
use crate::shard::Shard;

struct Asked {
    topic: TopicMeta,
    partition: i32,
    current_leader_epoch: i32,
    leader_epoch: i32,
}

/// (error, epoch, end offset)
type Answer = (ErrorCode, i32, i64);

pub async fn handle(
    shard: &Rc<Shard>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let catalog = shard.context.catalog.snapshot();
    let mut answers: Vec<Vec<Answer>> = Vec::new();
    let mut asked = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta = catalog.topics.get(topic.topic.0.as_str());
        answers.push(Vec::new());
        for (p, partition) in topic.partitions.iter().enumerate() {
            match meta.and_then(|meta| Some((meta, meta.owner(partition.partition)?))) {
                Some((meta, owner)) => {
                    let item = Asked {
                        topic: meta.clone(),
                        partition: partition.partition,
                        current_leader_epoch: partition.current_leader_epoch,
                        leader_epoch: partition.leader_epoch,
                    };
                    asked.push((owner, ((t, p), item)));
                    answers[t].push((ErrorCode::None, -1, -1));
                }
                None => {
                    let missing = super::cluster_topics::missing_partition(
                        shard,
                        topic.topic.0.as_str(),
                        partition.partition,
                    );
                    answers[t].push((missing.code, -1, -1));
                }
            }
        }
    }
    let done = on_owners(
        shard,
        asked,
        |owner_shard, item: Asked| async move { end_offset(&owner_shard, &item).await },
        (ErrorCode::NotLeaderOrFollower, -1, -1),
    )
    .await;
    for ((t, p), answer) in done {
        answers[t][p] = answer;
    }
    let topics = request
        .topics
        .iter()
        .zip(answers)
        .map(|(topic, answers)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(answers)
                .map(|(partition, (error, epoch, end_offset))| {
                    EpochEndOffset::default()
                        .with_partition(partition.partition)
                        .with_error_code(error.code())
                        .with_leader_epoch(epoch)
                        .with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

async fn end_offset(shard: &Rc<Shard>, item: &Asked) -> Answer {
    let local = match shard.partition(&item.topic, item.partition).await {
        Ok(local) => local,
        Err(error) => return (error.error_code(), -1, -1),
    };
    let client_epoch = Some(item.current_leader_epoch).filter(|epoch| *epoch >= 0);
    match local.end_offset_for(item.leader_epoch, client_epoch) {
        Ok((epoch, end_offset)) => (ErrorCode::None, epoch, end_offset),
        Err(refused) => (refused.error_code(), -1, -1),
    }
}
