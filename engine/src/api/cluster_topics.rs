//! Topics of a multi-broker cluster: created and deleted through the controller quorum,
//! placed across the live brokers, and copied into each broker's own catalog for the
//! partitions it hosts ([`reconcile`]), each taking the part the view gives it (leader or
//! follower, see `replication`).

use std::collections::BTreeMap;
use std::rc::Rc;

use protocol::ErrorCode;

use super::topics::{delete_topic, open_partitions};
use super::ApiError;
use crate::catalog::{validate_topic_name, ClusterCopy, TopicMeta, PARTITIONS_PER_TOPIC_MAX};
use crate::cluster::rpc::WriteRefused;
use crate::cluster::{ClusterHandle, ClusterView, Command, PartitionRecord, Reply, TopicRecord};
use crate::shard::Shard;
use crate::topic_config::topic_settings;

/// What CreateTopics asked for beyond a name and configs.
pub struct Placement {
    /// -1: `num.partitions`.
    pub partitions: i32,
    /// -1: the default, 1.
    pub replication_factor: i16,
    /// A manual assignment: the replicas of each partition, by partition index.
    pub assignment: Option<Vec<Vec<i32>>>,
}

/// Creates a topic in the cluster: validates it, places each partition on a live broker
/// (round robin from a random start, as Kafka does, or as assigned), and has the quorum
/// write it. Each broker opens its own partitions when it sees the topic.
pub async fn create(
    shard: &Rc<Shard>,
    cluster: &ClusterHandle,
    name: &str,
    placement: Placement,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicRecord, ApiError> {
    crate::catalog::refuse_internal_topic(name, "creating")
        .map_err(|message| ApiError::new(ErrorCode::InvalidTopicException, message))?;
    create_any(shard, cluster, name, placement, configs, validate_only).await
}

/// Creates the internal `__consumer_offsets` topic (see `group`).
pub async fn create_offsets_topic(
    shard: &Rc<Shard>,
    cluster: &ClusterHandle,
    placement: Placement,
    configs: BTreeMap<String, String>,
) -> Result<TopicRecord, ApiError> {
    create_any(
        shard,
        cluster,
        crate::group::OFFSETS_TOPIC,
        placement,
        configs,
        false,
    )
    .await
}

async fn create_any(
    shard: &Rc<Shard>,
    cluster: &ClusterHandle,
    name: &str,
    placement: Placement,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<TopicRecord, ApiError> {
    validate_topic_name(name)
        .map_err(|message| ApiError::new(ErrorCode::InvalidTopicException, message))?;
    let config = shard.effective_config();
    topic_settings(&config.log_defaults, &configs)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    let view = cluster.snapshot();
    let mut live: Vec<i32> = view
        .live_brokers()
        .map(|broker| broker.registration.id)
        .collect();
    live.sort_unstable();
    let replicas: Vec<Vec<i32>> = match placement.assignment {
        Some(assignment) => {
            for (partition, brokers) in assignment.iter().enumerate() {
                let distinct: std::collections::BTreeSet<&i32> = brokers.iter().collect();
                if brokers.is_empty() || distinct.len() != brokers.len() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("the manual partition assignment gives partition {partition} the replicas {brokers:?}: a partition needs one or more distinct brokers"),
                    ));
                }
                if brokers.len() != assignment[0].len() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("the manual partition assignment gives partition {partition} {} replicas and partition 0 {}: every partition needs the same number", brokers.len(), assignment[0].len()),
                    ));
                }
                if let Some(unknown) = brokers.iter().find(|broker| !live.contains(broker)) {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("the manual partition assignment gives partition {partition} broker {unknown}, which is not a live broker of this cluster (live: {live:?})"),
                    ));
                }
            }
            assignment
        }
        None => {
            let partitions = match placement.partitions {
                -1 => config.num_partitions,
                partitions => partitions,
            };
            let factor = match placement.replication_factor {
                -1 => 1,
                factor => factor,
            };
            if factor < 1 || factor as usize > live.len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "replication factor {factor} requested; {} live brokers",
                        live.len()
                    ),
                ));
            }
            if !(1..=PARTITIONS_PER_TOPIC_MAX as i32).contains(&partitions) {
                return Err(ApiError::new(
                    ErrorCode::InvalidPartitions,
                    format!("{partitions} partitions requested; a topic has 1 to {PARTITIONS_PER_TOPIC_MAX}"),
                ));
            }
            let racks: Vec<(i32, Option<String>)> = view
                .live_brokers()
                .map(|broker| (broker.registration.id, broker.registration.rack.clone()))
                .collect();
            let start = (uuid::Uuid::new_v4().as_u128() % live.len() as u128) as usize;
            place_replicas(&racks, partitions as usize, factor as usize, start)
        }
    };
    let record = TopicRecord {
        name: name.to_string(),
        id: uuid::Uuid::new_v4(),
        partitions: replicas.into_iter().map(PartitionRecord::new).collect(),
        configs,
        created_index: 0,
    };
    let exists = || {
        ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        )
    };
    if validate_only {
        return match view.topics.contains_key(name) {
            true => Err(exists()),
            false => Ok(record),
        };
    }
    match cluster.submit(Command::CreateTopic(record.clone())).await {
        Ok(Reply::TopicCreated) => {
            tracing::info!(
                topic = name,
                partitions = record.partitions.len(),
                "created topic in the cluster"
            );
            Ok(record)
        }
        Ok(Reply::TopicExists { .. }) => Err(exists()),
        Ok(other) => Err(ApiError::new(
            ErrorCode::UnknownServerError,
            format!("the controller answered {other:?} to a topic creation"),
        )),
        Err(refused) => Err(refused_error(refused)),
    }
}

/// Replicas for each of `partitions`, `factor` each on distinct brokers: round robin over
/// the brokers from `start`, the next replica on the next broker. When every broker has a
/// rack, the brokers are ordered alternating racks first (Kafka's rack-aware placement), so a
/// partition's replicas are on as many racks as there are, up to `factor`.
pub fn place_replicas(
    brokers: &[(i32, Option<String>)],
    partitions: usize,
    factor: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let mut sorted = brokers.to_vec();
    sorted.sort();
    let order: Vec<i32> = if sorted.iter().all(|(_, rack)| rack.is_some()) {
        let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (id, rack) in &sorted {
            by_rack
                .entry(rack.as_deref().expect("checked"))
                .or_default()
                .push(*id);
        }
        let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
        (0..deepest)
            .flat_map(|round| {
                by_rack
                    .values()
                    .filter_map(move |ids| ids.get(round).copied())
            })
            .collect()
    } else {
        sorted.iter().map(|(id, _)| *id).collect()
    };
    (0..partitions)
        .map(|partition| {
            (0..factor)
                .map(|replica| order[(start + partition + replica) % order.len()])
                .collect()
        })
        .collect()
}

/// Deletes a topic from the cluster; each broker removes its copy when it sees that.
pub async fn delete(cluster: &ClusterHandle, name: &str) -> Result<uuid::Uuid, ApiError> {
    crate::catalog::refuse_internal_topic(name, "deleting")
        .map_err(|message| ApiError::new(ErrorCode::InvalidTopicException, message))?;
    let unknown = || {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    };
    let id = cluster
        .snapshot()
        .topics
        .get(name)
        .map(|topic| topic.id)
        .ok_or_else(unknown)?;
    match cluster
        .submit(Command::DeleteTopic {
            name: name.to_string(),
            id,
        })
        .await
    {
        Ok(Reply::TopicDeleted) => {
            tracing::info!(topic = name, "deleted topic from the cluster");
            Ok(id)
        }
        Ok(_) => Err(unknown()),
        Err(refused) => Err(refused_error(refused)),
    }
}

/// Replaces a cluster topic's config overrides with what `change` makes of the quorum's
/// (validated first); every broker applies them to its partitions when it sees the change.
pub async fn set_configs(
    shard: &Rc<Shard>,
    cluster: &ClusterHandle,
    name: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let topic = known_topic(cluster, name)?;
    let configs = change(&topic.configs)?;
    topic_settings(&shard.effective_config().log_defaults, &configs)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    if validate_only {
        return Ok(());
    }
    let command = Command::SetTopicConfigs {
        name: name.to_string(),
        id: topic.id,
        configs,
    };
    updated(cluster, name, command).await?;
    tracing::info!(topic = name, "altered topic configs in the cluster");
    Ok(())
}

/// Grows a cluster topic to `count` partitions (CreatePartitions): the new partitions are
/// placed as CreateTopics places them (as many replicas as partition 0 has, over the live
/// brokers) or as `assignment` gives them, and the quorum writes them; each broker opens its
/// own when it sees them.
pub async fn add_partitions(
    cluster: &ClusterHandle,
    name: &str,
    count: i32,
    assignment: Option<Vec<Vec<i32>>>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let topic = known_topic(cluster, name)?;
    let have = topic.partitions.len();
    if count < 0 || (count as usize) <= have || count as usize > PARTITIONS_PER_TOPIC_MAX {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("topic '{name}' has {have} partitions; the new count must be larger (at most {PARTITIONS_PER_TOPIC_MAX}), got {count}"),
        ));
    }
    let adding = count as usize - have;
    let factor = topic.partitions.first().map_or(1, |p| p.replicas.len());
    let view = cluster.snapshot();
    let live: Vec<(i32, Option<String>)> = view
        .live_brokers()
        .map(|broker| (broker.registration.id, broker.registration.rack.clone()))
        .collect();
    let replicas = match assignment {
        Some(assignment) => {
            if assignment.len() != adding {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    format!(
                        "{} assignments given for {adding} new partitions",
                        assignment.len()
                    ),
                ));
            }
            for brokers in &assignment {
                let distinct: std::collections::BTreeSet<&i32> = brokers.iter().collect();
                let unknown = brokers
                    .iter()
                    .find(|b| !live.iter().any(|(id, _)| id == *b));
                if brokers.len() != factor || distinct.len() != factor || unknown.is_some() {
                    return Err(ApiError::new(
                        ErrorCode::InvalidReplicaAssignment,
                        format!("a new partition of '{name}' needs {factor} distinct live brokers; got {brokers:?}"),
                    ));
                }
            }
            assignment
        }
        None => {
            if factor > live.len() {
                return Err(ApiError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "'{name}' has {factor} replicas per partition; {} live brokers",
                        live.len()
                    ),
                ));
            }
            let start = (uuid::Uuid::new_v4().as_u128() % live.len().max(1) as u128) as usize;
            place_replicas(&live, adding, factor, start)
        }
    };
    if validate_only {
        return Ok(());
    }
    let command = Command::AddPartitions {
        name: name.to_string(),
        id: topic.id,
        from: have,
        partitions: replicas.into_iter().map(PartitionRecord::new).collect(),
    };
    updated(cluster, name, command).await?;
    tracing::info!(
        topic = name,
        from = have,
        to = count,
        "added partitions in the cluster"
    );
    Ok(())
}

fn known_topic(cluster: &ClusterHandle, name: &str) -> Result<TopicRecord, ApiError> {
    cluster.snapshot().topics.get(name).cloned().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })
}

/// Submits a change of topic `name`; Stale means it was deleted, re-created or grown
/// meanwhile.
async fn updated(cluster: &ClusterHandle, name: &str, command: Command) -> Result<(), ApiError> {
    match cluster.submit(command).await {
        Ok(Reply::TopicUpdated) => Ok(()),
        Ok(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("topic '{name}' changed meanwhile (deleted, re-created or grown); retry"),
        )),
        Err(refused) => Err(refused_error(refused)),
    }
}

fn refused_error(refused: WriteRefused) -> ApiError {
    match refused {
        WriteRefused::NotLeader { .. } => ApiError::new(
            ErrorCode::RequestTimedOut,
            format!("the controller quorum has no leader to write it: {refused}"),
        ),
        WriteRefused::Failed(message) => ApiError::new(ErrorCode::UnknownServerError, message),
    }
}

/// Refuses, in cluster mode, a topic change the quorum does not keep yet (it would change
/// one broker's copy only).
pub fn refuse_in_cluster(shard: &Shard, what: &str) -> Result<(), ApiError> {
    match shard.context.cluster {
        Some(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{what} is not supported yet in a multi-broker cluster (--voters)"),
        )),
        None => Ok(()),
    }
}

/// The error for a partition this broker has no copy of: NOT_LEADER_OR_FOLLOWER when the
/// cluster has it elsewhere, else UNKNOWN_TOPIC_OR_PARTITION.
pub fn missing_partition(shard: &Shard, topic: &str, partition: i32) -> ApiError {
    if let Some(cluster) = &shard.context.cluster {
        let view = cluster.snapshot();
        let placed = view
            .topics
            .get(topic)
            .and_then(|record| record.partitions.get(usize::try_from(partition).ok()?));
        if let Some(placed) = placed {
            return ApiError::new(
                ErrorCode::NotLeaderOrFollower,
                format!(
                    "{topic}-{partition} is led by broker {}, not this one",
                    placed.leader
                ),
            );
        }
    }
    ApiError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("{topic}-{partition} does not exist"),
    )
}

/// The name of the cluster topic of id `id`, in cluster mode.
pub fn cluster_topic_name(shard: &Shard, id: uuid::Uuid) -> Option<String> {
    let cluster = shard.context.cluster.as_ref()?;
    cluster
        .snapshot()
        .topic_by_id(id)
        .map(|topic| topic.name.clone())
}

/// This broker's copy of cluster topic `topic`, of which it hosts `hosted`: partitions keep
/// the shards in `shards_before` (the copy's so far), new ones are placed over `shards`.
fn copy_of(
    topic: &TopicRecord,
    hosted: &std::collections::BTreeSet<i32>,
    shards_before: &[usize],
    shards: usize,
) -> TopicMeta {
    let count = topic.partitions.len();
    TopicMeta {
        name: topic.name.clone(),
        id: topic.id,
        partition_shards: (0..count)
            .map(|partition| match shards_before.get(partition) {
                Some(shard) => *shard,
                None => crate::catalog::placement(&topic.name, partition, shards),
            })
            .collect(),
        configs: topic.configs.clone(),
        cluster: Some(ClusterCopy {
            elsewhere: (0..count as i32)
                .filter(|partition| !hosted.contains(partition))
                .collect(),
            created_index: topic.created_index,
        }),
    }
}

/// Stores `meta` as this broker's copy of its topic in the catalog.
async fn store_copy(
    shard: &Rc<Shard>,
    meta: &TopicMeta,
) -> Result<(), crate::catalog::CatalogError> {
    let copy = meta.clone();
    shard
        .update_catalog(move |catalog| {
            catalog.topics.insert(copy.name.clone(), copy);
            Ok(())
        })
        .await
}

/// Brings the local copy `local` of a cluster topic up to the quorum's `topic`: its configs
/// applied to the partitions open here, partitions added to it opened where hosted here.
async fn update_copy(
    shard: &Rc<Shard>,
    local: &TopicMeta,
    topic: &TopicRecord,
    hosted: &std::collections::BTreeSet<i32>,
) {
    let name = &topic.name;
    let meta = copy_of(topic, hosted, &local.partition_shards, shard.shard_count());
    if let Err(error) = store_copy(shard, &meta).await {
        tracing::error!(topic = name, %error, "cannot update the local copy of a cluster topic");
        return;
    }
    if local.configs != meta.configs {
        for owner in meta.owner_shards() {
            if let Err(error) = super::configs::apply_topic_configs_on(shard, owner, &meta).await {
                tracing::error!(topic = name, error = %error.message, "cannot apply a cluster topic's configs");
            }
        }
        tracing::info!(topic = name, configs = ?meta.configs, "applied a cluster topic's configs");
    }
    let added: Vec<i32> = hosted
        .iter()
        .copied()
        .filter(|partition| *partition as usize >= local.partition_count())
        .collect();
    if !added.is_empty() {
        match open_partitions(shard, &meta, added.iter().copied()).await {
            Ok(()) => {
                tracing::info!(topic = name, partitions = ?added, "opened this broker's new partitions of a cluster topic")
            }
            Err(error) => {
                tracing::error!(topic = name, error = %error.message, "cannot open this broker's new partitions of a cluster topic")
            }
        }
    }
}

/// Reconciles after every change of the cluster's view, until the controller stops.
pub async fn follow(shard: Rc<Shard>, cluster: std::sync::Arc<ClusterHandle>) {
    let mut views = cluster.subscribe();
    loop {
        let view = views.borrow_and_update().clone();
        reconcile(&shard, &view).await;
        if views.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps this broker's catalog in step with the cluster's topics: a topic with a partition
/// here gets a local copy (same id, its partitions opened on their shards, the others
/// marked elsewhere); a copy whose topic is gone from the cluster, or was re-created with
/// another id, is deleted with its data. Runs on shard 0 after every change of the view.
pub async fn reconcile(shard: &Rc<Shard>, view: &ClusterView) {
    let me = shard.context.config.node_id;
    let catalog = shard.context.catalog.snapshot();
    for (name, local) in &catalog.topics {
        let Some(copy) = &local.cluster else {
            continue;
        };
        let stale = match view.topics.get(name) {
            Some(topic) => topic.id != local.id || topic.hosted_on(me).next().is_none(),
            // Not in the view: deleted if the view is past the creation, else the view is
            // older than the copy (as at start-up, before the log is applied again).
            None => view.applied_index >= copy.created_index,
        };
        if stale {
            match delete_topic(shard, name).await {
                Ok(_) => tracing::info!(
                    topic = name,
                    "removed the local copy of a topic gone from the cluster"
                ),
                Err(error) => {
                    tracing::warn!(topic = name, error = %error.message, "cannot remove the local copy of a topic gone from the cluster")
                }
            }
        }
    }
    let catalog = shard.context.catalog.snapshot();
    for (name, topic) in &view.topics {
        let hosted: std::collections::BTreeSet<i32> = topic.hosted_on(me).collect();
        if hosted.is_empty() {
            continue;
        }
        let local = catalog
            .topics
            .get(name)
            .filter(|local| local.id == topic.id);
        if let Some(local) = local {
            if local.configs != topic.configs || local.partition_count() != topic.partitions.len() {
                update_copy(shard, local, topic, &hosted).await;
            }
            continue;
        }
        let meta = copy_of(topic, &hosted, &[], shard.shard_count());
        if let Err(error) = store_copy(shard, &meta).await {
            tracing::error!(topic = name, %error, "cannot keep a local copy of a cluster topic");
            continue;
        }
        match open_partitions(shard, &meta, hosted.iter().copied()).await {
            Ok(()) => {
                tracing::info!(topic = name, partitions = ?hosted, "opened this broker's partitions of a cluster topic")
            }
            Err(error) => {
                tracing::error!(topic = name, error = %error.message, "cannot open this broker's partitions of a cluster topic")
            }
        }
    }
    let caught_up = shard
        .context
        .cluster
        .as_ref()
        .is_some_and(|cluster| cluster.caught_up(view));
    if caught_up {
        crate::replication::assign_roles(shard, view).await;
    }
}

#[cfg(test)]
mod tests {
    use super::place_replicas;

    #[test]
    fn replicas_spread_over_racks_when_every_broker_has_one() {
        let racked: Vec<(i32, Option<String>)> = [(1, "a"), (2, "a"), (3, "b"), (4, "b")]
            .iter()
            .map(|(id, rack)| (*id, Some(rack.to_string())))
            .collect();
        let rack_of = |id: i32| racked.iter().find(|(b, _)| *b == id).unwrap().1.clone();
        for start in 0..4 {
            for replicas in place_replicas(&racked, 8, 2, start) {
                assert_ne!(rack_of(replicas[0]), rack_of(replicas[1]), "{replicas:?}");
            }
        }
        // Without racks (or with some missing): plain round robin over the sorted ids.
        let plain: Vec<(i32, Option<String>)> = vec![(2, None), (1, Some("a".into())), (3, None)];
        assert_eq!(
            place_replicas(&plain, 3, 3, 0),
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]
        );
    }
}
