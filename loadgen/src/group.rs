//! Consumers as members of a consumer group (`--consumer-group`): FindCoordinator,
//! JoinGroup, SyncGroup with the range assignment computed by the leader, heartbeats while
//! the run lasts, and at the end a commit of the positions and LeaveGroup. A rebalance
//! during the run fails it: the sequence checks need each partition read by one consumer
//! from start to end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use protocol::client::Client;
use tokio::sync::Mutex;

use crate::stats::Stats;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;

/// One consumer's membership.
pub struct Membership {
    coordinator: Arc<Mutex<Client>>,
    group: String,
    member_id: String,
    generation: i32,
    stop: Arc<AtomicBool>,
    pub partitions: Vec<i32>,
}

fn encode_versioned<T: Encodable>(message: &T) -> Result<Bytes, String> {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    message.encode(&mut bytes, 0).map_err(|e| e.to_string())?;
    Ok(bytes.freeze())
}

/// The range assignor: partitions in order, split into contiguous ranges over the members
/// sorted by id (the first ones get one more when it does not divide).
pub fn range_assignment(members: &[String], partitions: i32) -> Vec<(String, Vec<i32>)> {
    let mut sorted = members.to_vec();
    sorted.sort();
    let n = sorted.len().max(1) as i32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut next = 0;
    sorted
        .into_iter()
        .enumerate()
        .map(|(at, id)| {
            let count = each + i32::from((at as i32) < extra);
            let range = (next..next + count).collect();
            next += count;
            (id, range)
        })
        .collect()
}

impl Membership {
    /// Finds the coordinator and joins; returns once this member has its partitions.
    pub async fn join(
        bootstrap: &str,
        group: &str,
        topic: &str,
        partitions: i32,
        client_id: &str,
    ) -> Result<Membership, String> {
        let mut client = Client::connect(bootstrap, client_id)
            .await
            .map_err(|e| e.to_string())?;
        let found = client
            .send_version(&FindCoordinatorRequest::default().with_key(text(group)), 2)
            .await
            .map_err(|e| format!("find coordinator: {e}"))?;
        if found.error_code != 0 {
            return Err(format!(
                "find coordinator of group {group}: {}",
                protocol::error_code::describe(found.error_code)
            ));
        }
        let coordinator = format!("{}:{}", found.host.as_str(), found.port);
        let mut client = Client::connect(&coordinator, client_id)
            .await
            .map_err(|e| format!("coordinator {coordinator}: {e}"))?;
        client.set_timeout(Duration::from_secs(60));
        let metadata = encode_versioned(
            &ConsumerProtocolSubscription::default().with_topics(vec![text(topic)]),
        )?;
        let mut member_id = String::new();
        let joined = loop {
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(text(group)))
                .with_member_id(text(&member_id))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(30_000)
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(text("range"))
                    .with_metadata(metadata.clone())]);
            let response = client
                .send_version(&request, 5)
                .await
                .map_err(|e| format!("join group {group}: {e}"))?;
            match response.error_code {
                0 => break response,
                MEMBER_ID_REQUIRED => member_id = response.member_id.to_string(),
                code => {
                    return Err(format!(
                        "join group {group}: {}",
                        protocol::error_code::describe(code)
                    ))
                }
            }
        };
        member_id = joined.member_id.to_string();
        let assignments = if joined.leader == joined.member_id {
            let members: Vec<String> = joined
                .members
                .iter()
                .map(|m| m.member_id.to_string())
                .collect();
            range_assignment(&members, partitions)
                .into_iter()
                .map(|(id, partitions)| {
                    let assignment = ConsumerProtocolAssignment::default()
                        .with_assigned_partitions(vec![TopicPartition::default()
                            .with_topic(TopicName(text(topic)))
                            .with_partitions(partitions)]);
                    encode_versioned(&assignment).map(|bytes| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(text(&id))
                            .with_assignment(bytes)
                    })
                })
                .collect::<Result<Vec<_>, String>>()?
        } else {
            Vec::new()
        };
        let synced = client
            .send_version(
                &SyncGroupRequest::default()
                    .with_group_id(GroupId(text(group)))
                    .with_generation_id(joined.generation_id)
                    .with_member_id(text(&member_id))
                    .with_assignments(assignments),
                3,
            )
            .await
            .map_err(|e| format!("sync group {group}: {e}"))?;
        if synced.error_code != 0 {
            return Err(format!(
                "sync group {group}: {}",
                protocol::error_code::describe(synced.error_code)
            ));
        }
        let mut bytes = synced.assignment.clone();
        let partitions = if bytes.len() >= 2 {
            let _ = bytes::Buf::get_i16(&mut bytes);
            ConsumerProtocolAssignment::decode(&mut bytes, 0)
                .map_err(|e| format!("group {group}: bad assignment: {e}"))?
                .assigned_partitions
                .iter()
                .filter(|tp| tp.topic.0.as_str() == topic)
                .flat_map(|tp| tp.partitions.clone())
                .collect()
        } else {
            Vec::new()
        };
        Ok(Membership {
            coordinator: Arc::new(Mutex::new(client)),
            group: group.to_string(),
            member_id,
            generation: joined.generation_id,
            stop: Arc::new(AtomicBool::new(false)),
            partitions,
        })
    }

    /// Heartbeats every second until `finish`; a rebalance fails the run.
    pub fn keep_alive(&self, stats: Arc<Stats>) {
        let coordinator = self.coordinator.clone();
        let stop = self.stop.clone();
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let answer = coordinator.lock().await.send_version(&request, 3).await;
                match answer {
                    Ok(response) if response.error_code == 0 => {}
                    Ok(response) if response.error_code == REBALANCE_IN_PROGRESS => {
                        return stats.error("the consumer group rebalanced during the run".into())
                    }
                    Ok(response) => {
                        return stats.error(format!(
                            "heartbeat: {}",
                            protocol::error_code::describe(response.error_code)
                        ))
                    }
                    Err(error) => return stats.error(format!("heartbeat: {error}")),
                }
            }
        });
    }

    /// Commits `positions` and leaves the group.
    pub async fn finish(&self, topic: &str, positions: &[(i32, i64)]) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut client = self.coordinator.lock().await;
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_generation_id_or_member_epoch(self.generation)
            .with_member_id(text(&self.member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(
                    positions
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                )]);
        let response = client
            .send_version(&commit, 5)
            .await
            .map_err(|e| format!("commit: {e}"))?;
        for partition in response.topics.iter().flat_map(|t| t.partitions.iter()) {
            if partition.error_code != 0 {
                return Err(format!(
                    "commit of partition {}: {}",
                    partition.partition_index,
                    protocol::error_code::describe(partition.error_code)
                ));
            }
        }
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(text(&self.group)))
            .with_member_id(text(&self.member_id));
        client
            .send_version(&leave, 1)
            .await
            .map_err(|e| format!("leave group: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_partition_once() {
        let members: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let assigned = range_assignment(&members, 8);
        assert_eq!(
            assigned,
            vec![
                ("a".to_string(), vec![0, 1, 2]),
                ("b".to_string(), vec![3, 4, 5]),
                ("c".to_string(), vec![6, 7]),
            ]
        );
        let idle = range_assignment(&members, 2);
        assert_eq!(idle[2].1, Vec::<i32>::new());
    }
}
