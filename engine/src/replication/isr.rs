//! ISR upkeep on each shard: every leader partition is checked on a timer, and a follower
//! that has not caught up for `replica.lag.time.max.ms` is taken out of the ISR, one that
//! has caught up is put back, through the controller (Kafka's AlterPartition). The leader
//! applies the new ISR when the controller's view brings it, as every broker does (and
//! counts the change in the metrics then, whatever caused it).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::{ClusterHandle, Command, Reply};
use crate::shard::Shard;

/// How often the leaders of a shard are checked, at most and at least.
const CHECK_INTERVAL_MAX: Duration = Duration::from_secs(1);
const CHECK_INTERVAL_MIN: Duration = Duration::from_millis(100);

pub async fn maintain(shard: Rc<Shard>, cluster: Arc<ClusterHandle>, lag_max: Duration) {
    let me = shard.context.config.node_id;
    let interval = (lag_max / 2).clamp(CHECK_INTERVAL_MIN, CHECK_INTERVAL_MAX);
    loop {
        tokio::time::sleep(interval).await;
        let view = cluster.snapshot();
        let mut under_replicated = 0u64;
        let mut max_lag = 0i64;
        for ((topic, partition), local) in shard.local_partition_entries() {
            if let Some(facts) = local.leader_facts() {
                under_replicated += u64::from(facts.under_replicated);
                max_lag = max_lag.max(facts.max_lag);
            }
            let Some(change) = local.isr_change(lag_max, |id| view.is_live(id)) else {
                continue;
            };
            let command = Command::AlterPartition {
                topic: topic.clone(),
                topic_id: local.topic_id,
                partition,
                leader: me,
                leader_epoch: change.leader_epoch,
                isr: change.isr.clone(),
            };
            match cluster.submit(command).await {
                Ok(Reply::PartitionAltered) => {
                    tracing::info!(topic, partition, isr = ?change.isr, joining = ?change.joining, leaving = ?change.leaving, "ISR changed");
                }
                Ok(other) => {
                    tracing::debug!(
                        topic,
                        partition,
                        ?other,
                        "the controller did not change the ISR"
                    );
                    local.isr_change_failed();
                }
                Err(refused) => {
                    tracing::debug!(topic, partition, %refused, "ISR change not written");
                    local.isr_change_failed();
                }
            }
        }
        shard.context.metrics.publish_replication(
            shard.id,
            under_replicated,
            max_lag.max(0) as u64,
        );
    }
}
