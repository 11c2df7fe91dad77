//! The controller quorum's Raft types and the commands its log carries.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Raft node id: the broker's `--node-id`.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the controller quorum.
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::BasicNode,
);

/// A snapshot of the state machine as it travels and is stored: its JSON.
pub type SnapshotData = Cursor<Vec<u8>>;

/// What a broker tells the controller about itself when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// New at every start of the process: a registration of an earlier run is stale.
    pub incarnation: Uuid,
    /// Where Kafka clients reach it.
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Where the other brokers reach its controller (`--cluster-listen`).
    pub cluster_address: String,
    /// The cluster id this broker would give a new cluster; the first registration applied
    /// names the cluster, later ones adopt it.
    pub proposed_cluster_id: String,
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Brokers holding a replica, the preferred leader first.
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

impl PartitionRecord {
    /// A new partition on `replicas`: the first leads, in epoch 0, all in sync.
    pub fn new(replicas: Vec<i32>) -> PartitionRecord {
        PartitionRecord {
            leader: replicas[0],
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
        }
    }
}

/// No leader: every in-sync replica is fenced (and unclean election is off).
pub const NO_LEADER: i32 = -1;

/// A topic as the cluster keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionRecord>,
    /// Topic-level config overrides given at creation.
    pub configs: std::collections::BTreeMap<String, String>,
    /// Log index of its creation, set when it is applied.
    #[serde(default)]
    pub created_index: u64,
}

impl TopicRecord {
    /// `unclean.leader.election.enable`: a replica outside the ISR may become leader when
    /// no in-sync replica is left (losing what only the ISR had).
    pub fn unclean_election(&self) -> bool {
        self.configs
            .get("unclean.leader.election.enable")
            .is_some_and(|value| value == "true")
    }

    /// Partitions with a replica on `broker`.
    pub fn hosted_on(&self, broker: i32) -> impl Iterator<Item = i32> + '_ {
        self.partitions
            .iter()
            .enumerate()
            .filter(move |(_, partition)| partition.replicas.contains(&broker))
            .map(|(index, _)| index as i32)
    }
}

/// A change to the cluster's metadata, applied in log order on every controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    RegisterBroker(BrokerRegistration),
    /// Creates the topic unless one of that name exists.
    CreateTopic(TopicRecord),
    /// Deletes the topic of that name if it still has that id.
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    /// Replaces the topic's config overrides, if the topic still has that id.
    SetTopicConfigs {
        name: String,
        id: Uuid,
        configs: std::collections::BTreeMap<String, String>,
    },
    /// Grows the topic by these partitions (Kafka's CreatePartitions), if it still has that
    /// id and exactly `from` partitions (so two growths asked at once cannot both apply).
    AddPartitions {
        name: String,
        id: Uuid,
        from: usize,
        partitions: Vec<PartitionRecord>,
    },
    /// Hands a broker the next block of producer ids (Kafka's AllocateProducerIds).
    AllocateProducerIds {
        broker: i32,
    },
    /// The broker stopped heartbeating: clients are no longer sent to it.
    FenceBroker {
        id: i32,
        incarnation: Uuid,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        id: i32,
        incarnation: Uuid,
    },
    /// A partition's leader changes its ISR (Kafka's AlterPartition): applied only if
    /// `leader` still leads the partition in `leader_epoch`.
    AlterPartition {
        topic: String,
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
}

/// What applying a [`Command`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Registered; `epoch` is the log index of the registration (Kafka's broker epoch).
    Registered {
        epoch: u64,
    },
    Fenced,
    Unfenced,
    TopicCreated,
    /// A topic of that name exists (its id given).
    TopicExists {
        id: Uuid,
    },
    TopicDeleted,
    /// A topic's configs or partitions changed as asked.
    TopicUpdated,
    /// Producer ids `first..first + count` are this broker's to give out.
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// The ISR was changed as asked.
    PartitionAltered,
    /// The command named an incarnation that is no longer registered: nothing changed.
    Stale,
    /// A Raft-internal entry (blank, membership).
    None,
}
