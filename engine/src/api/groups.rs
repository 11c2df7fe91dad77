//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Each
//! runs on the group's coordinator shard: `hash(group) % shards` on a single node, in a
//! cluster the owner shard of the group's `__consumer_offsets` partition on the broker
//! leading it. ListGroups asks every shard.

use std::rc::Rc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator as CoordinatorEntry;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use crate::group::{CommittedOffset, GroupDescription, GroupState, JoinRequest};
use crate::shard::Shard;

fn code(error: Option<ErrorCode>) -> i16 {
    error.map_or(0, ErrorCode::code)
}

fn text(value: String) -> StrBytes {
    StrBytes::from_string(value)
}

/// Who sent a JoinGroup, as DescribeGroups shows it.
pub struct Client {
    pub id: String,
    /// `/ip`, as Kafka shows client hosts.
    pub host: String,
}

fn instance(id: &Option<StrBytes>) -> Option<String> {
    id.as_ref().map(|id| id.to_string())
}

/// The shard coordinating `group`: on a single node by the group's hash; in a cluster the
/// shard owning the group's `__consumer_offsets` partition.
pub fn coordinator_shard(shard: &Shard, group: &str) -> usize {
    let shards = shard.shard_count();
    if shard.context.cluster.is_none() {
        return crate::group::coordinator_shard(group, shards);
    }
    let partition = crate::group::offsets_partition(
        group,
        shard.context.config.groups.offsets_topic_partitions,
    );
    shard
        .context
        .catalog
        .snapshot()
        .topics
        .get(crate::group::OFFSETS_TOPIC)
        .and_then(|topic| topic.owner(partition))
        .unwrap_or_else(|| {
            crate::catalog::placement(crate::group::OFFSETS_TOPIC, partition as usize, shards)
        })
}

/// The broker coordinating `group`: this one on a single node; in a cluster the leader of
/// the group's `__consumer_offsets` partition (the same answer from every broker), or
/// COORDINATOR_NOT_AVAILABLE while it has none or that topic does not exist yet (its
/// creation is asked for then, as Kafka creates it on the first FindCoordinator).
fn group_coordinator(
    shard: &Rc<Shard>,
    group: &str,
) -> Result<super::cluster::BrokerEntry, ErrorCode> {
    let Some(cluster) = &shard.context.cluster else {
        return Ok(super::cluster::BrokerEntry::this_broker(shard));
    };
    let view = cluster.snapshot();
    let Some(topic) = view.topics.get(crate::group::OFFSETS_TOPIC) else {
        ensure_offsets_topic(shard, cluster.clone());
        return Err(ErrorCode::CoordinatorNotAvailable);
    };
    let partition = crate::group::offsets_partition(group, topic.partitions.len() as i32);
    let leader = topic.partitions[partition as usize].leader;
    let coordinator = view
        .live_brokers()
        .find(|broker| broker.registration.id == leader)
        .map(super::cluster::BrokerEntry::registered);
    coordinator.ok_or(ErrorCode::CoordinatorNotAvailable)
}

/// Has the quorum create `__consumer_offsets` (`offsets.topic.num.partitions`, replicas
/// `offsets.topic.replication.factor` at most the voters, never deleted by retention)
/// unless this shard is asking already. Until enough brokers are live the creation is
/// refused and asked for again at the next FindCoordinator.
fn ensure_offsets_topic(shard: &Rc<Shard>, cluster: std::sync::Arc<crate::cluster::ClusterHandle>) {
    if shard.creating_offsets_topic.replace(true) {
        return;
    }
    let shard = shard.clone();
    tokio::task::spawn_local(async move {
        let groups = &shard.context.config.groups;
        let voters = shard
            .context
            .config
            .cluster
            .as_ref()
            .map_or(1, |config| config.voters.len());
        let factor = groups.offsets_topic_replication_factor.min(voters as i16);
        let configs = [
            ("retention.ms", "-1".to_string()),
            ("retention.bytes", "-1".to_string()),
            ("segment.bytes", groups.offsets_segment_bytes.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        let placement = super::cluster_topics::Placement {
            partitions: groups.offsets_topic_partitions,
            replication_factor: factor,
            assignment: None,
        };
        let created =
            super::cluster_topics::create_offsets_topic(&shard, &cluster, placement, configs).await;
        match created {
            Ok(_) => tracing::info!(replication_factor = factor, "created the offsets topic"),
            Err(error) if error.code == ErrorCode::TopicAlreadyExists => {}
            Err(error) => {
                tracing::info!(error = %error.message, "the offsets topic cannot be created yet")
            }
        }
        shard.creating_offsets_topic.set(false);
    });
}

/// NOT_COORDINATOR (or COORDINATOR_NOT_AVAILABLE) for a group another broker coordinates.
fn not_coordinated_here(shard: &Rc<Shard>, group: &str) -> Option<ErrorCode> {
    match group_coordinator(shard, group) {
        Ok(broker) if broker.id == shard.context.config.node_id => None,
        Ok(_) => Some(ErrorCode::NotCoordinator),
        Err(code) => Some(code),
    }
}

/// Whether a partition exists, for commits and offset deletions: in the local catalog on a
/// single node; in a cluster in the controller's view (a broker holds copies only of the
/// topics it hosts, and coordinates groups reading any topic).
fn known_partitions(shard: &Shard) -> impl Fn(&str, i32) -> bool {
    let catalog = shard.context.catalog.snapshot();
    let view = shard
        .context
        .cluster
        .as_ref()
        .map(|cluster| cluster.snapshot());
    move |topic: &str, partition: i32| match &view {
        Some(view) => view
            .topics
            .get(topic)
            .is_some_and(|record| (0..record.partitions.len() as i32).contains(&partition)),
        None => catalog
            .topics
            .get(topic)
            .and_then(|meta| meta.owner(partition))
            .is_some(),
    }
}

pub fn find_coordinator(
    shard: &Rc<Shard>,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // Only group coordinators exist. A transaction coordinator is asked for by a
    // transactional producer: answer a non-retriable error with the reason, so the client
    // fails at once (the Java client's initTransactions() throws it) instead of retrying
    // COORDINATOR_NOT_AVAILABLE until its max.block.ms.
    let (error, message) = match request.key_type {
        0 => (None, None),
        1 => (
            Some(ErrorCode::InvalidRequest),
            Some("transactions are not supported by this broker"),
        ),
        _ => (
            Some(ErrorCode::InvalidRequest),
            Some("only group coordinators (key type 0) exist on this broker"),
        ),
    };
    let message = message.map(|m| text(m.to_string()));
    let answer = |key: &str| match error {
        Some(refused) => (Some(refused), BrokerId(-1), String::new(), -1),
        None => match group_coordinator(shard, key) {
            Ok(broker) => (None, BrokerId(broker.id), broker.host, broker.port),
            Err(unavailable) => (Some(unavailable), BrokerId(-1), String::new(), -1),
        },
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let (error, node, host, port) = answer(key.as_str());
                CoordinatorEntry::default()
                    .with_key(key.clone())
                    .with_node_id(node)
                    .with_host(text(host))
                    .with_port(port)
                    .with_error_code(code(error))
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, node, host, port) = answer(request.key.as_str());
    FindCoordinatorResponse::default()
        .with_error_code(code(error))
        .with_error_message(message)
        .with_node_id(node)
        .with_host(text(host))
        .with_port(port)
}

pub async fn join(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    version: i16,
    client: Client,
) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(refused) = not_coordinated_here(shard, &group) {
        return JoinGroupResponse::default().with_error_code(refused.code());
    }
    let join = JoinRequest {
        group: group.clone(),
        member_id: request.member_id.to_string(),
        instance_id: instance(&request.group_instance_id),
        client_id: client.id,
        client_host: client.host,
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let owner = coordinator_shard(shard, &group);
    let outcome = shard
        .call(owner, move |owner| async move {
            owner.offsets_for(&join.group)?;
            Ok(owner.coordinator.join(join).await)
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(refused) => return JoinGroupResponse::default().with_error_code(refused.code()),
    };
    JoinGroupResponse::default()
        .with_error_code(code(outcome.error))
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(text))
        .with_protocol_name(outcome.protocol_name.map(text))
        .with_leader(text(outcome.leader))
        .with_member_id(text(outcome.member_id))
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(id))
                        .with_group_instance_id(instance.map(text))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}

pub async fn sync(shard: &Rc<Shard>, request: SyncGroupRequest) -> SyncGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(refused) = not_coordinated_here(shard, &group) {
        return SyncGroupResponse::default().with_error_code(refused.code());
    }
    let member = request.member_id.to_string();
    let generation = request.generation_id;
    let instance_id = instance(&request.group_instance_id);
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let owner = coordinator_shard(shard, &group);
    let outcome = shard
        .call(owner, move |owner| async move {
            owner.offsets_for(&group)?;
            Ok(owner
                .coordinator
                .sync(
                    &group,
                    generation,
                    &member,
                    instance_id.as_deref(),
                    assignments,
                )
                .await)
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    match outcome {
        Ok(outcome) => SyncGroupResponse::default()
            .with_error_code(code(outcome.error))
            .with_protocol_type(outcome.protocol_type.map(text))
            .with_protocol_name(outcome.protocol_name.map(text))
            .with_assignment(outcome.assignment),
        Err(refused) => SyncGroupResponse::default().with_error_code(refused.code()),
    }
}

pub async fn heartbeat(shard: &Rc<Shard>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group = request.group_id.0.to_string();
    if let Some(refused) = not_coordinated_here(shard, &group) {
        return HeartbeatResponse::default().with_error_code(refused.code());
    }
    let member = request.member_id.to_string();
    let generation = request.generation_id;
    let instance_id = instance(&request.group_instance_id);
    let owner = coordinator_shard(shard, &group);
    let error = shard
        .call(owner, move |owner| async move {
            if let Err(refused) = owner.offsets_for(&group) {
                return Some(refused);
            }
            owner
                .coordinator
                .heartbeat(&group, generation, &member, instance_id.as_deref())
        })
        .await
        .unwrap_or(Some(ErrorCode::CoordinatorNotAvailable));
    HeartbeatResponse::default().with_error_code(code(error))
}

pub async fn leave(
    shard: &Rc<Shard>,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(refused) = not_coordinated_here(shard, &group) {
        return LeaveGroupResponse::default().with_error_code(refused.code());
    }
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), instance(&m.group_instance_id)))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let leaving = members.clone();
    let owner = coordinator_shard(shard, &group);
    let results = shard
        .call(owner, move |owner| async move {
            if let Err(refused) = owner.offsets_for(&group) {
                return vec![Some(refused); leaving.len()];
            }
            owner.coordinator.leave(&group, &leaving)
        })
        .await
        .unwrap_or_else(|_| vec![Some(ErrorCode::CoordinatorNotAvailable); members.len()]);
    if version < 3 {
        return LeaveGroupResponse::default()
            .with_error_code(code(results.first().copied().flatten()));
    }
    LeaveGroupResponse::default().with_members(
        members
            .into_iter()
            .zip(results)
            .map(|((id, instance), error)| {
                MemberResponse::default()
                    .with_member_id(text(id))
                    .with_group_instance_id(instance.map(text))
                    .with_error_code(code(error))
            })
            .collect(),
    )
}

pub async fn offset_commit(
    shard: &Rc<Shard>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let member = request.member_id.to_string();
    let generation = request.generation_id_or_member_epoch;
    let instance_id = instance(&request.group_instance_id);
    let now = crate::storage::Clock::system().now_ms();
    let known = known_partitions(shard);
    let mut commits = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        for partition in &topic.partitions {
            if !known(&name, partition.partition_index) {
                unknown.push((name.clone(), partition.partition_index));
                continue;
            }
            commits.push((
                (name.clone(), partition.partition_index),
                CommittedOffset {
                    offset: partition.committed_offset,
                    leader_epoch: partition.committed_leader_epoch,
                    metadata: partition.committed_metadata.as_ref().map(|m| m.to_string()),
                    timestamp: now,
                },
            ));
        }
    }
    let owner = coordinator_shard(shard, &group);
    let error = shard
        .call(owner, move |owner| async move {
            let check =
                owner
                    .coordinator
                    .check_commit(&group, generation, &member, instance_id.as_deref());
            if let Some(refused) = check {
                return Some(refused);
            }
            let store = match owner.offsets_for(&group) {
                Ok(store) => store,
                Err(refused) => return Some(refused),
            };
            match store.commit(&group, commits).await {
                Ok(()) => None,
                Err(error) => Some(error.error_code()),
            }
        })
        .await
        .unwrap_or(Some(ErrorCode::CoordinatorNotAvailable));
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let missing = unknown.contains(&(name.clone(), p.partition_index));
                            let error = if missing {
                                Some(ErrorCode::UnknownTopicOrPartition)
                            } else {
                                error
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(error))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// (topic, [(partition, committed offset)]) per topic, in order.
type TopicOffsets = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// (topic, [partitions]) a fetch asks for; `None` means every committed offset.
type Wanted = Option<Vec<(String, Vec<i32>)>>;

async fn fetch_group(
    shard: &Rc<Shard>,
    group: String,
    wanted: Wanted,
) -> Result<TopicOffsets, ErrorCode> {
    let owner = coordinator_shard(shard, &group);
    shard
        .call(owner, move |owner| async move {
            let offsets = owner.offsets_for(&group)?;
            Ok(match wanted {
                Some(topics) => topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let found = partitions
                            .into_iter()
                            .map(|p| (p, offsets.fetch(&group, &topic, p)))
                            .collect();
                        (topic, found)
                    })
                    .collect(),
                None => {
                    let mut by_topic: TopicOffsets = Vec::new();
                    for ((topic, partition), committed) in offsets.fetch_all(&group) {
                        match by_topic.last_mut() {
                            Some((last, partitions)) if *last == topic => {
                                partitions.push((partition, Some(committed)))
                            }
                            _ => by_topic.push((topic, vec![(partition, Some(committed))])),
                        }
                    }
                    by_topic
                }
            })
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// (offset, leader epoch, metadata) of a committed offset, or Kafka's "none committed".
fn committed_fields(committed: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match committed {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            text(c.metadata.unwrap_or_default()),
        ),
        None => (-1, -1, text(String::new())),
    }
}

fn wanted_topics(topics: impl Iterator<Item = (TopicName, Vec<i32>)>) -> Vec<(String, Vec<i32>)> {
    topics
        .map(|(name, partitions)| (name.0.to_string(), partitions))
        .collect()
}

pub async fn offset_fetch(
    shard: &Rc<Shard>,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::new();
        for group in request.groups {
            let wanted = group.topics.map(|topics| {
                wanted_topics(topics.into_iter().map(|t| (t.name, t.partition_indexes)))
            });
            let found = fetch_group(shard, group.group_id.0.to_string(), wanted).await;
            let (found, error) = match found {
                Ok(found) => (found, None),
                Err(refused) => (Vec::new(), Some(refused)),
            };
            let topics = found
                .into_iter()
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(text(topic)))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|(p, committed)| {
                                    let (offset, epoch, metadata) = committed_fields(committed);
                                    OffsetFetchResponsePartitions::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(epoch)
                                        .with_metadata(Some(metadata))
                                })
                                .collect(),
                        )
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_error_code(code(error))
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request
        .topics
        .map(|topics| wanted_topics(topics.into_iter().map(|t| (t.name, t.partition_indexes))));
    let found = match fetch_group(shard, request.group_id.0.to_string(), wanted).await {
        Ok(found) => found,
        Err(refused) => return OffsetFetchResponse::default().with_error_code(refused.code()),
    };
    let topics = found
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, committed)| {
                            let (offset, epoch, metadata) = committed_fields(committed);
                            let partition = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(Some(metadata));
                            if version >= 5 {
                                partition.with_committed_leader_epoch(epoch)
                            } else {
                                partition
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// Kafka's ACL operation bits a group allows here (no ACLs: READ, DELETE, DESCRIBE).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

pub async fn list(
    shard: &Rc<Shard>,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let wanted: Vec<String> = if version >= 4 {
        request
            .states_filter
            .iter()
            .map(|state| state.to_lowercase())
            .collect()
    } else {
        Vec::new()
    };
    let mut groups = Vec::new();
    for coordinator in 0..shard.shard_count() {
        let listed = shard
            .call(coordinator, |owner| async move {
                let mut listed: Vec<(String, String, &'static str)> = owner
                    .coordinator
                    .list()
                    .into_iter()
                    .map(|(name, kind, state)| (name, kind, state.name()))
                    .collect();
                for store in owner.offset_stores() {
                    for name in store.groups() {
                        if !listed.iter().any(|(known, _, _)| *known == name) {
                            listed.push((name, "consumer".to_string(), GroupState::Empty.name()));
                        }
                    }
                }
                listed
            })
            .await;
        let Ok(listed) = listed else {
            return ListGroupsResponse::default()
                .with_error_code(ErrorCode::CoordinatorNotAvailable.code());
        };
        groups.extend(
            listed.into_iter().filter(|(_, _, state)| {
                wanted.is_empty() || wanted.contains(&state.to_lowercase())
            }),
        );
    }
    groups.sort();
    ListGroupsResponse::default().with_groups(
        groups
            .into_iter()
            .map(|(name, kind, state)| {
                ListedGroup::default()
                    .with_group_id(GroupId(text(name)))
                    .with_protocol_type(text(kind))
                    .with_group_state(StrBytes::from_static_str(state))
            })
            .collect(),
    )
}

/// Whether the coordinator knows the group: live state or committed offsets.
fn group_exists(owner: &Shard, offsets: &crate::group::OffsetStore, group: &str) -> bool {
    offsets.has_group(group) || owner.coordinator.describe(group).is_some()
}

/// A group's description from its coordinator: live state, or Empty when only committed
/// offsets remain, or Dead when the group is unknown.
async fn describe_one(shard: &Rc<Shard>, group: String) -> Result<GroupDescription, ErrorCode> {
    if let Some(refused) = not_coordinated_here(shard, &group) {
        return Err(refused);
    }
    let owner = coordinator_shard(shard, &group);
    shard
        .call(owner, move |owner| async move {
            let offsets = owner.offsets_for(&group)?;
            Ok(owner.coordinator.describe(&group).unwrap_or_else(|| {
                let known = offsets.has_group(&group);
                GroupDescription {
                    state: if known {
                        GroupState::Empty
                    } else {
                        GroupState::Dead
                    },
                    protocol_type: if known {
                        "consumer".into()
                    } else {
                        String::new()
                    },
                    protocol: String::new(),
                    members: Vec::new(),
                }
            }))
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

pub async fn describe(shard: &Rc<Shard>, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let operations = if request.include_authorized_operations {
        GROUP_OPERATIONS
    } else {
        i32::MIN
    };
    let mut described = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        let entry = DescribedGroup::default()
            .with_group_id(group.clone())
            .with_authorized_operations(operations);
        let description = match describe_one(shard, group.0.to_string()).await {
            Ok(description) => description,
            Err(refused) => {
                described.push(entry.with_error_code(refused.code()));
                continue;
            }
        };
        described.push(
            entry
                .with_group_state(StrBytes::from_static_str(description.state.name()))
                .with_protocol_type(text(description.protocol_type))
                .with_protocol_data(text(description.protocol))
                .with_members(
                    description
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_group_instance_id(m.instance_id.map(text))
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
        );
    }
    DescribeGroupsResponse::default().with_groups(described)
}

pub async fn delete(shard: &Rc<Shard>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in request.groups_names {
        let name = group.0.to_string();
        let owner = coordinator_shard(shard, &name);
        let error = shard
            .call(owner, move |owner| async move {
                let offsets = match owner.offsets_for(&name) {
                    Ok(offsets) => offsets,
                    Err(refused) => return Some(refused),
                };
                if owner.coordinator.has_members(&name) {
                    return Some(ErrorCode::NonEmptyGroup);
                }
                if !group_exists(&owner, &offsets, &name) {
                    return Some(ErrorCode::GroupIdNotFound);
                }
                let now = crate::storage::Clock::system().now_ms();
                if let Err(error) = offsets.delete(&name, None, now).await {
                    return Some(error.error_code());
                }
                owner.coordinator.forget(&name);
                tracing::info!(group = name, "deleted group");
                None
            })
            .await
            .unwrap_or(Some(ErrorCode::CoordinatorNotAvailable));
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group)
                .with_error_code(code(error)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(
    shard: &Rc<Shard>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group = request.group_id.0.to_string();
    let known = known_partitions(shard);
    // Per requested partition: Err(code) decided here, or Ok(key) to delete.
    let wanted: Vec<(String, Vec<(i32, bool)>)> = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, known(&name, p.partition_index)))
                .collect();
            (name, partitions)
        })
        .collect();
    let owner = coordinator_shard(shard, &group);
    let plan = wanted.clone();
    let outcome = shard
        .call(owner, move |owner| async move {
            let offsets = owner.offsets_for(&group)?;
            if !group_exists(&owner, &offsets, &group) {
                return Err(ErrorCode::GroupIdNotFound);
            }
            let subscribed = owner.coordinator.subscribed_topics(&group);
            let mut errors: Vec<Vec<Option<ErrorCode>>> = Vec::new();
            let mut doomed = Vec::new();
            for (topic, partitions) in &plan {
                let busy = subscribed.contains(topic);
                errors.push(
                    partitions
                        .iter()
                        .map(|(partition, exists)| {
                            if !exists {
                                Some(ErrorCode::UnknownTopicOrPartition)
                            } else if busy {
                                Some(ErrorCode::GroupSubscribedToTopic)
                            } else {
                                doomed.push((topic.clone(), *partition));
                                None
                            }
                        })
                        .collect(),
                );
            }
            let now = crate::storage::Clock::system().now_ms();
            offsets
                .delete(&group, Some(doomed), now)
                .await
                .map_err(|error| error.error_code())?;
            Ok(errors)
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
    let errors = match outcome {
        Ok(errors) => errors,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let topics = wanted
        .into_iter()
        .zip(errors)
        .map(|((topic, partitions), errors)| {
            OffsetDeleteResponseTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .zip(errors)
                        .map(|((partition, _), error)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(partition)
                                .with_error_code(code(error))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
