//! Data replication in a cluster, as Kafka does it: every broker takes the part the
//! controller's view gives it in each partition it hosts ([`assign_roles`]), followers
//! fetch from leaders (one [`fetcher`] per owner shard and leader broker, batching that
//! shard's partitions), and leaders ask the controller to shrink or grow their ISR
//! ([`isr`]).

pub mod fetcher;
pub mod isr;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::catalog::TopicMeta;
use crate::cluster::{ClusterView, PartitionRecord, NO_LEADER};
use crate::partition::replica::Assignment;
use crate::shard::Shard;

/// This broker's part in a partition, from its record in the view.
pub fn assignment(me: i32, placed: &PartitionRecord, lag_max: Duration) -> Assignment {
    match placed.leader {
        leader if leader == me => Assignment::Leader {
            epoch: placed.leader_epoch,
            replicas: placed.replicas.clone(),
            isr: placed.isr.clone(),
            lag_max,
        },
        NO_LEADER => Assignment::Leaderless,
        leader => Assignment::Follower {
            leader,
            epoch: placed.leader_epoch,
        },
    }
}

/// Gives every partition this broker hosts its part from `view`, on its owner shard, and
/// starts the fetchers its followers need there. Runs on shard 0 after each change of the
/// view (once the local copies are in step with it).
pub async fn assign_roles(shard: &Rc<Shard>, view: &ClusterView) {
    let me = shard.context.config.node_id;
    let Some(config) = &shard.context.config.cluster else {
        return;
    };
    let lag_max = config.replica_lag_time_max;
    let catalog = shard.context.catalog.snapshot();
    let mut by_owner: BTreeMap<usize, Vec<(TopicMeta, i32, Assignment)>> = BTreeMap::new();
    for (name, topic) in &view.topics {
        let Some(local) = catalog
            .topics
            .get(name)
            .filter(|local| local.id == topic.id)
        else {
            continue;
        };
        for partition in topic.hosted_on(me) {
            let Some(owner) = local.owner(partition) else {
                continue;
            };
            let placed = &topic.partitions[partition as usize];
            by_owner.entry(owner).or_default().push((
                local.clone(),
                partition,
                assignment(me, placed, lag_max),
            ));
        }
    }
    for (owner, assignments) in by_owner {
        let done = shard
            .call(owner, move |owner_shard| async move {
                for (meta, partition, assignment) in assignments {
                    let assigned = match owner_shard.partition(&meta, partition).await {
                        Ok(local) => {
                            let assigned = local.assign(assignment).await;
                            if meta.name == crate::group::OFFSETS_TOPIC {
                                owner_shard.offsets_partition_changed(partition, local);
                            }
                            assigned
                        }
                        Err(error) => Err(error),
                    };
                    match assigned {
                        Ok(changed) => owner_shard.context.metrics.isr_changed(
                            owner_shard.id,
                            changed.shrinks,
                            changed.expands,
                        ),
                        Err(error) => {
                            tracing::error!(topic = %meta.name, partition, %error, "cannot take this broker's part in a partition")
                        }
                    }
                }
                fetcher::ensure(&owner_shard);
            })
            .await;
        if let Err(gone) = done {
            tracing::warn!(%gone, "partition roles not assigned");
        }
    }
}
