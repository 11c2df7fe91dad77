//! CreateTopics and DeleteTopics, and the topic creation Metadata uses for auto-creation.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use super::{by_owner, ApiError};
use crate::catalog::{validate_topic_name, CatalogError, TopicMeta, PARTITIONS_PER_TOPIC_MAX};
use crate::shard::{Shard, ShardError};
use crate::topic_config::topic_settings;

/// Creates a topic: validates it, places its partitions on shards, persists it in the
/// catalog, and opens its partitions on their owners.
///
/// A single-node broker's: in cluster mode topics are made by [`super::cluster_topics`].
pub async fn create_topic(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicMeta, ApiError> {
    super::cluster_topics::refuse_in_cluster(shard, "creating a topic on one broker")?;
    validate_topic_name(name)
        .and_then(|()| crate::catalog::refuse_internal_topic(name, "creating"))
        .map_err(|message| ApiError::new(ErrorCode::InvalidTopicException, message))?;
    let config = shard.effective_config();
    let partitions = if partitions == -1 {
        config.num_partitions
    } else {
        partitions
    };
    if partitions < 1 || partitions as usize > PARTITIONS_PER_TOPIC_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "{partitions} partitions requested; a topic has 1 to {PARTITIONS_PER_TOPIC_MAX}"
            ),
        ));
    }
    topic_settings(&config.log_defaults, &configs)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    crate::server::open_files::room_for(partitions as usize)
        .map_err(|message| ApiError::new(ErrorCode::KafkaStorageError, message))?;
    let shards = shard.shard_count();
    let meta = TopicMeta {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partition_shards: (0..partitions as usize)
            .map(|partition| crate::catalog::placement(name, partition, shards))
            .collect(),
        configs,
        cluster: None,
    };
    let exists = || {
        ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        )
    };
    if validate_only {
        return match shard.context.catalog.snapshot().topics.contains_key(name) {
            true => Err(exists()),
            false => Ok(meta),
        };
    }
    let created = meta.clone();
    shard
        .update_catalog(move |catalog| {
            if catalog.topics.contains_key(&created.name) {
                return Err(Created::Exists);
            }
            catalog.topics.insert(created.name.clone(), created);
            Ok(())
        })
        .await
        .map_err(|created| match created {
            Created::Exists => exists(),
            Created::Catalog(error) => {
                ApiError::new(ErrorCode::KafkaStorageError, error.to_string())
            }
        })?;
    if let Err(error) = open_partitions(shard, &meta, 0..meta.partition_count() as i32).await {
        // Nothing of a topic that cannot open stays behind (its catalog entry, its files).
        tracing::error!(topic = name, error = %error.message, "cannot open the new topic's partitions; the topic is not created");
        if let Err(undo) = delete_topic(shard, name).await {
            tracing::error!(topic = name, error = %undo.message, "removing the topic that could not open failed");
        }
        return Err(error);
    }
    tracing::info!(topic = name, partitions, "created topic");
    Ok(meta)
}

enum Created {
    Exists,
    Catalog(CatalogError),
}

impl From<CatalogError> for Created {
    fn from(error: CatalogError) -> Created {
        Created::Catalog(error)
    }
}

/// Opens (creating, recovering) `partitions` of a topic on their owner shards.
pub async fn open_partitions(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
    partitions: impl IntoIterator<Item = i32>,
) -> Result<(), ApiError> {
    let owned = partitions
        .into_iter()
        .filter_map(|partition| Some((meta.owner(partition)?, partition)));
    for (owner, partitions) in by_owner(owned) {
        let meta = meta.clone();
        shard
            .try_call(owner, move |owner_shard| async move {
                for partition in partitions {
                    owner_shard.partition(&meta, partition).await?;
                }
                Ok::<(), ShardError>(())
            })
            .await
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
    }
    Ok(())
}

pub async fn create(shard: &Rc<Shard>, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let configs = super::config_values(
            topic
                .configs
                .iter()
                .map(|config| (&config.name, &config.value)),
        );
        let outcome = match &shard.context.cluster {
            Some(cluster) => {
                let assignment = (!topic.assignments.is_empty()).then(|| {
                    topic
                        .assignments
                        .iter()
                        .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
                        .collect()
                });
                match manual_partition_count(&topic, &|_| None) {
                    Ok(_) => super::cluster_topics::create(
                        shard,
                        cluster,
                        &name,
                        super::cluster_topics::Placement {
                            partitions: topic.num_partitions,
                            replication_factor: topic.replication_factor,
                            assignment,
                        },
                        configs,
                        request.validate_only,
                    )
                    .await
                    .map(|record| (record.id, record.partitions.len() as i32)),
                    Err(error) => Err(error),
                }
            }
            None => create_local(shard, &name, &topic, configs, request.validate_only).await,
        };
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        results.push(match outcome {
            Ok((id, partitions)) => result
                .with_topic_id(id)
                .with_num_partitions(partitions)
                .with_replication_factor(1),
            Err(error) => result
                .with_error_code(error.code.code())
                .with_error_message(Some(StrBytes::from_string(error.message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// A topic of a single-node broker: one replica, on this broker.
async fn create_local(
    shard: &Rc<Shard>,
    name: &str,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(uuid::Uuid, i32), ApiError> {
    let node_id = shard.context.config.node_id;
    if topic.replication_factor != -1 && topic.replication_factor != 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {} requested; this broker keeps one replica",
                topic.replication_factor
            ),
        ));
    }
    let not_this_broker = |broker: i32| {
        (broker != node_id).then(|| format!("the manual partition assignment includes broker {broker}, but no such broker is registered (this cluster is broker {node_id})"))
    };
    let manual = manual_partition_count(topic, &not_this_broker)?;
    let meta = create_topic(
        shard,
        name,
        manual.unwrap_or(topic.num_partitions),
        configs,
        validate_only,
    )
    .await?;
    Ok((meta.id, meta.partition_count() as i32))
}

/// For a topic created with a manual replica assignment, its partition count, checked as
/// Kafka checks it: partition and replication counts left at -1, partitions numbered from
/// 0 without gaps, each with the same number of distinct replicas, every one a registered
/// broker (`unknown_broker` says why one is not). `None` without an assignment.
fn manual_partition_count(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    unknown_broker: &dyn Fn(i32) -> Option<String>,
) -> Result<Option<i32>, ApiError> {
    if topic.assignments.is_empty() {
        return Ok(None);
    }
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidReplicaAssignment, message);
    for (field, value) in [
        ("numPartitions", topic.num_partitions),
        ("replicationFactor", i32::from(topic.replication_factor)),
    ] {
        if value != -1 {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("a manual partition assignment was given, but {field} was not set to -1"),
            ));
        }
    }
    let replicas = topic.assignments[0].broker_ids.len();
    for (expected, assignment) in topic.assignments.iter().enumerate() {
        let partition = assignment.partition_index;
        if partition != expected as i32 {
            return Err(invalid(
                "partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
        let brokers: Vec<i32> = assignment.broker_ids.iter().map(|id| id.0).collect();
        if brokers.is_empty() {
            return Err(invalid(format!(
                "the manual partition assignment has an empty replica list for partition {partition}"
            )));
        }
        if brokers.len() != replicas {
            return Err(invalid(
                "all partitions in the manual partition assignment should have the same number of replicas".into(),
            ));
        }
        for (at, broker) in brokers.iter().enumerate() {
            if brokers[..at].contains(broker) {
                return Err(invalid(format!(
                    "the manual partition assignment gives partition {partition} the replica {broker} twice"
                )));
            }
            if let Some(message) = unknown_broker(*broker) {
                return Err(invalid(message));
            }
        }
    }
    Ok(Some(topic.assignments.len() as i32))
}

/// Deletes a topic from the catalog, then its partitions from their owners.
pub async fn delete_topic(shard: &Rc<Shard>, name: &str) -> Result<TopicMeta, ApiError> {
    let removing = name.to_string();
    let removed = shard
        .update_catalog(move |catalog| Ok::<_, CatalogError>(catalog.topics.remove(&removing)))
        .await
        .map_err(|error| ApiError::new(ErrorCode::KafkaStorageError, error.to_string()))?;
    let meta = removed.ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    for owner in meta.owner_shards() {
        let topic = meta.clone();
        let dropped = shard
            .try_call(owner, move |owner_shard| async move {
                Ok::<(), ShardError>(owner_shard.drop_topic(&topic).await?)
            })
            .await;
        if let Err(error) = dropped {
            tracing::warn!(topic = name, %error, "deleting partition data failed");
        }
    }
    // Committed offsets of the topic go with it (every shard coordinates some groups), so a
    // topic created again under the name starts without them. In a cluster each broker
    // deletes them from the offsets partitions it leads.
    for coordinator in 0..shard.shard_count() {
        let topic = name.to_string();
        let forgotten = shard
            .call(coordinator, move |owner| async move {
                let now = crate::storage::Clock::system().now_ms();
                for store in owner.offset_stores() {
                    for (group, keys) in store.committed_to(&topic) {
                        if let Err(error) = store.delete(&group, Some(keys), now).await {
                            tracing::warn!(topic, group, %error, "deleting committed offsets failed");
                        }
                    }
                }
            })
            .await;
        if let Err(gone) = forgotten {
            tracing::warn!(topic = name, %gone, "deleting committed offsets failed");
        }
    }
    tracing::info!(topic = name, "deleted topic");
    Ok(meta)
}

pub async fn delete(
    shard: &Rc<Shard>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    // v6 names topics in `topics` (by name or id); earlier versions in `topic_names`.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| {
                (
                    topic.name.as_ref().map(|name| name.0.to_string()),
                    topic.topic_id,
                )
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let name = name.or_else(|| match &shard.context.cluster {
            Some(cluster) => cluster
                .snapshot()
                .topic_by_id(id)
                .map(|topic| topic.name.clone()),
            None => shard
                .context
                .catalog
                .snapshot()
                .topic_by_id(id)
                .map(|topic| topic.name.clone()),
        });
        let result = DeletableTopicResult::default().with_topic_id(id);
        let Some(name) = name else {
            responses.push(
                result
                    .with_error_code(ErrorCode::UnknownTopicId.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "no topic has id {id}"
                    )))),
            );
            continue;
        };
        let result = result.with_name(Some(TopicName(StrBytes::from_string(name.clone()))));
        let deleted = match &shard.context.cluster {
            Some(cluster) => super::cluster_topics::delete(cluster, &name).await,
            None => delete_topic(shard, &name).await.map(|meta| meta.id),
        };
        responses.push(match deleted {
            Ok(id) => result.with_topic_id(id),
            Err(error) => result
                .with_error_code(error.code.code())
                .with_error_message(Some(StrBytes::from_string(error.message))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
