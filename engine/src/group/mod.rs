//! The group coordinator: Kafka's classic consumer group protocol.
//!
//! A group lives on shard `hash(group) % shards`; its state machine, timers and committed
//! offsets are owned by that shard alone. States: Empty, PreparingRebalance (members
//! (re)join; answers are held until everyone known has joined or the rebalance timeout
//! passes), CompletingRebalance (the leader's SyncGroup carries the assignment), Stable.
//! A ticker expires members whose session timed out (or that never sent SyncGroup within
//! the rebalance timeout) and finishes overdue rebalances. Static members
//! (`group.instance.id`) keep their place across restarts; the id they held is fenced.
//!
//! Committed offsets are kept in memory and written durably (fdatasync'ed) to an internal
//! log per shard (`__consumer_offsets-<shard>`) before a commit is acknowledged; every shard
//! replays every such log at start-up, newest commit per key winning. Offsets of deleted
//! topics are deleted with them; those of groups without members expire after
//! `offsets.retention.minutes` without a commit.
//!
//! In a cluster, groups are spread over the partitions of the replicated
//! `__consumer_offsets` topic by their name's hash; the leader of a group's partition is
//! its coordinator (on the shard that owns that partition), so a group and its committed
//! offsets move with the partition's leadership when a broker fails. Members of a moved
//! group rejoin at the new coordinator (NOT_COORDINATOR / UNKNOWN_MEMBER_ID send them
//! there), which has every acknowledged commit: commits are acknowledged only once the
//! partition's ISR has them.

mod coordinator;
mod offsets;

pub use coordinator::{
    consumer_subscription, Coordinator, GroupDescription, GroupSettings, GroupState, JoinOutcome,
    JoinRequest, MemberDescription, SyncOutcome,
};
pub use offsets::{
    replay, CommittedOffset, GroupOffsets, OffsetStore, OffsetsError, ReplayError,
    OFFSETS_LOG_PREFIX,
};

/// The replicated topic of a cluster's committed offsets (Kafka's name).
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition of `group` among `partitions`.
pub fn offsets_partition(group: &str, partitions: i32) -> i32 {
    (crate::catalog::stable_hash(group.as_bytes()) % partitions.max(1) as u64) as i32
}

/// The settings of the internal offsets logs: never deleted by retention nor recycled (only
/// compaction removes old segments), segments of `offsets.topic.segment.bytes`.
pub fn offsets_log_config(config: &crate::config::BrokerConfig) -> crate::storage::LogConfig {
    crate::storage::LogConfig {
        retention_ms: None,
        retention_bytes: None,
        segment_bytes: config.groups.offsets_segment_bytes,
        recycle_segments_max: 0,
        ..config.log_defaults.clone()
    }
}

/// The shard that coordinates `group` among `shards` shards.
pub fn coordinator_shard(group: &str, shards: usize) -> usize {
    (crate::catalog::stable_hash(group.as_bytes()) % shards.max(1) as u64) as usize
}
