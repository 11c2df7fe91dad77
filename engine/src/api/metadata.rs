//! Metadata: brokers (this one, or in cluster mode every live one), cluster id, and topics
//! with their partitions; creates requested topics that do not exist when auto-creation is
//! on (Kafka's `auto.create.topics.enable`, default on, `num.partitions` partitions). In
//! cluster mode the topics are the controller quorum's.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use super::topics::create_topic;
use super::ApiError;
use crate::catalog::TopicMeta;
use crate::partition::offline::OfflinePartitions;
use crate::shard::Shard;

/// Kafka's ACL operation bits (`AclOperation` codes) a topic allows with no authorizer:
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// The cluster's, likewise: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
/// "Not asked for" on the wire.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

pub async fn handle(shard: &Rc<Shard>, request: MetadataRequest, version: i16) -> MetadataResponse {
    let topic_operations = if request.include_topic_authorized_operations {
        TOPIC_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let cluster_operations = if request.include_cluster_authorized_operations {
        CLUSTER_OPERATIONS
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    let context = &shard.context;
    let node_id = context.config.node_id;
    let catalog = context.catalog.snapshot();
    // v0: an empty list means every topic; v1+: null means every topic.
    let requested = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let auto_create =
        context.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut topics = Vec::new();
    if let Some(cluster) = &context.cluster {
        topics = cluster_topics(shard, cluster, requested, auto_create).await;
    } else {
        match requested {
            None => topics.extend(
                catalog
                    .topics
                    .values()
                    .map(|meta| topic_entry(meta, node_id, &context.offline)),
            ),
            Some(wanted) => {
                for topic in wanted {
                    let entry = match &topic.name {
                        Some(name) => {
                            let name = name.0.to_string();
                            match catalog.topics.get(&name) {
                                Some(meta) => topic_entry(meta, node_id, &context.offline),
                                None if auto_create => {
                                    match create_topic(shard, &name, -1, BTreeMap::new(), false)
                                        .await
                                    {
                                        Ok(meta) => topic_entry(&meta, node_id, &context.offline),
                                        Err(error) => {
                                            tracing::info!(topic = name, message = %error.message, "auto-creation refused");
                                            let code = if error.code
                                                == ErrorCode::TopicAlreadyExists
                                            {
                                                // Created meanwhile by another connection.
                                                match context.catalog.snapshot().topics.get(&name) {
                                                    Some(meta) => {
                                                        topics.push(topic_entry(
                                                            meta,
                                                            node_id,
                                                            &context.offline,
                                                        ));
                                                        continue;
                                                    }
                                                    None => ErrorCode::UnknownTopicOrPartition,
                                                }
                                            } else {
                                                error.code
                                            };
                                            missing(Some(name), topic.topic_id, code)
                                        }
                                    }
                                }
                                None => missing(
                                    Some(name),
                                    topic.topic_id,
                                    ErrorCode::UnknownTopicOrPartition,
                                ),
                            }
                        }
                        None => match catalog.topic_by_id(topic.topic_id) {
                            Some(meta) => topic_entry(meta, node_id, &context.offline),
                            None => missing(None, topic.topic_id, ErrorCode::UnknownTopicId),
                        },
                    };
                    topics.push(entry);
                }
            }
        }
    }
    let facts = super::cluster::cluster_facts(shard);
    MetadataResponse::default()
        .with_brokers(
            facts
                .brokers
                .into_iter()
                .map(|broker| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(broker.id))
                        .with_host(StrBytes::from_string(broker.host))
                        .with_port(broker.port)
                        .with_rack(broker.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(facts.cluster_id)))
        .with_controller_id(BrokerId(facts.controller_id))
        .with_cluster_authorized_operations(cluster_operations)
        .with_topics(
            topics
                .into_iter()
                .map(|topic| {
                    if topic.error_code == 0 {
                        topic.with_topic_authorized_operations(topic_operations)
                    } else {
                        topic
                    }
                })
                .collect(),
        )
}

/// A topic's partitions; one whose log is offline has KAFKA_STORAGE_ERROR, no leader and
/// its replica listed as offline, as Kafka reports a partition whose only replica's log
/// directory failed.
fn topic_entry(
    meta: &TopicMeta,
    node_id: i32,
    offline: &OfflinePartitions,
) -> MetadataResponseTopic {
    let offline = offline.of_topic(&meta.name);
    let partitions = (0..meta.partition_count() as i32)
        .map(|index| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![BrokerId(node_id)]);
            match offline.contains_key(&index) {
                false => partition
                    .with_leader_id(BrokerId(node_id))
                    .with_isr_nodes(vec![BrokerId(node_id)]),
                true => partition
                    .with_error_code(ErrorCode::KafkaStorageError.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(node_id)]),
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id)
        .with_partitions(partitions)
}

/// Topics as the controller quorum has them; requested ones that do not exist are created
/// through it when auto-creation is on.
async fn cluster_topics(
    shard: &Rc<Shard>,
    cluster: &crate::cluster::ClusterHandle,
    requested: Option<Vec<kafka_protocol::messages::metadata_request::MetadataRequestTopic>>,
    auto_create: bool,
) -> Vec<MetadataResponseTopic> {
    let me = shard.context.config.node_id;
    let offline = &shard.context.offline;
    let view = cluster.snapshot();
    let Some(wanted) = requested else {
        return view
            .topics
            .values()
            .map(|topic| cluster_topic_entry(topic, &view, me, offline))
            .collect();
    };
    let mut topics = Vec::with_capacity(wanted.len());
    for topic in wanted {
        let Some(name) = &topic.name else {
            topics.push(match view.topic_by_id(topic.topic_id) {
                Some(record) => cluster_topic_entry(record, &view, me, offline),
                None => missing(None, topic.topic_id, ErrorCode::UnknownTopicId),
            });
            continue;
        };
        let name = name.0.to_string();
        if let Some(record) = view.topics.get(&name) {
            topics.push(cluster_topic_entry(record, &view, me, offline));
            continue;
        }
        if !auto_create {
            topics.push(missing(
                Some(name),
                topic.topic_id,
                ErrorCode::UnknownTopicOrPartition,
            ));
            continue;
        }
        let placement = super::cluster_topics::Placement {
            partitions: -1,
            replication_factor: -1,
            assignment: None,
        };
        let code = match super::cluster_topics::create(
            shard,
            cluster,
            &name,
            placement,
            BTreeMap::new(),
            false,
        )
        .await
        {
            // Its partitions open as each broker sees it: until then, no leader.
            Ok(_)
            | Err(ApiError {
                code: ErrorCode::TopicAlreadyExists,
                ..
            }) => ErrorCode::LeaderNotAvailable,
            Err(error) => {
                tracing::info!(topic = name, message = %error.message, "auto-creation refused");
                error.code
            }
        };
        topics.push(missing(Some(name), topic.topic_id, code));
    }
    topics
}

/// A cluster topic's partitions: leader, epoch, replicas and ISR as the quorum has them; a
/// partition whose leader is fenced has LEADER_NOT_AVAILABLE, one whose log is offline here
/// KAFKA_STORAGE_ERROR.
fn cluster_topic_entry(
    topic: &crate::cluster::TopicRecord,
    view: &crate::cluster::ClusterView,
    me: i32,
    offline: &OfflinePartitions,
) -> MetadataResponseTopic {
    let offline = offline.of_topic(&topic.name);
    let ids = |brokers: &[i32]| brokers.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, placed)| {
            let index = index as i32;
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_epoch(placed.leader_epoch)
                .with_replica_nodes(ids(&placed.replicas))
                .with_isr_nodes(ids(&placed.isr));
            if placed.leader == me && offline.contains_key(&index) {
                partition
                    .with_error_code(ErrorCode::KafkaStorageError.code())
                    .with_leader_id(BrokerId(-1))
                    .with_offline_replicas(vec![BrokerId(me)])
            } else if !view.is_live(placed.leader) {
                partition
                    .with_error_code(ErrorCode::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
            } else {
                partition.with_leader_id(BrokerId(placed.leader))
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn missing(name: Option<String>, id: uuid::Uuid, code: ErrorCode) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name.map(|name| TopicName(StrBytes::from_string(name))))
        .with_topic_id(id)
}
