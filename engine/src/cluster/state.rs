//! The cluster's metadata as the controller quorum agreed on it, and the openraft state
//! machine that keeps it: every committed [`Command`] applied in log order, snapshots as its
//! JSON in `snapshot.json` beside the log.

use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::types::{
    BrokerRegistration, Command, NodeId, Reply, SnapshotData, TopicRecord, TypeConfig, NO_LEADER,
};

/// The snapshot's file in the controller's directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// Producer ids handed to a broker at a time, as Kafka's controller does.
pub const PRODUCER_ID_BLOCK: i64 = 1000;

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub registration: BrokerRegistration,
    /// Log index of its registration (Kafka's broker epoch).
    pub epoch: u64,
    /// Stopped heartbeating: not given to clients.
    pub fenced: bool,
}

/// The cluster's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerState>,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicRecord>,
    /// The first producer id not yet handed to a broker.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Log index of the last command applied: a view is as recent as this.
    #[serde(default)]
    pub applied_index: u64,
}

impl ClusterState {
    /// Applies the command at log `index`.
    pub fn apply(&mut self, index: u64, command: &Command) -> Reply {
        self.applied_index = index;
        match command {
            Command::RegisterBroker(registration) => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(registration.proposed_cluster_id.clone());
                }
                // A new incarnation: the old one's process is gone, with whatever it had not
                // written yet. It gives up its leaderships and ISR places as a fenced broker
                // does, and earns them back by catching up.
                if let Some(old) = self.brokers.get_mut(&registration.id) {
                    if old.registration.incarnation != registration.incarnation {
                        old.fenced = true;
                        self.broker_down(registration.id);
                    }
                }
                self.brokers.insert(
                    registration.id,
                    BrokerState {
                        registration: registration.clone(),
                        epoch: index,
                        fenced: false,
                    },
                );
                self.broker_up(registration.id);
                Reply::Registered { epoch: index }
            }
            Command::CreateTopic(topic) => match self.topics.get(&topic.name) {
                Some(existing) => Reply::TopicExists { id: existing.id },
                None => {
                    let mut topic = topic.clone();
                    topic.created_index = index;
                    self.topics.insert(topic.name.clone(), topic);
                    Reply::TopicCreated
                }
            },
            Command::DeleteTopic { name, id } => match self.topics.get(name) {
                Some(topic) if topic.id == *id => {
                    self.topics.remove(name);
                    Reply::TopicDeleted
                }
                _ => Reply::Stale,
            },
            Command::SetTopicConfigs { name, id, configs } => match self.topics.get_mut(name) {
                Some(topic) if topic.id == *id => {
                    topic.configs = configs.clone();
                    Reply::TopicUpdated
                }
                _ => Reply::Stale,
            },
            Command::AddPartitions {
                name,
                id,
                from,
                partitions,
            } => match self.topics.get_mut(name) {
                Some(topic) if topic.id == *id && topic.partitions.len() == *from => {
                    topic.partitions.extend(partitions.iter().cloned());
                    Reply::TopicUpdated
                }
                _ => Reply::Stale,
            },
            Command::AllocateProducerIds { .. } => {
                let first = self.next_producer_id;
                self.next_producer_id += PRODUCER_ID_BLOCK;
                Reply::ProducerIds {
                    first,
                    count: PRODUCER_ID_BLOCK,
                }
            }
            Command::FenceBroker { id, incarnation } => match self.brokers.get_mut(id) {
                Some(broker) if broker.registration.incarnation == *incarnation => {
                    broker.fenced = true;
                    self.broker_down(*id);
                    Reply::Fenced
                }
                _ => Reply::Stale,
            },
            Command::UnfenceBroker { id, incarnation } => match self.brokers.get_mut(id) {
                Some(broker) if broker.registration.incarnation == *incarnation => {
                    broker.fenced = false;
                    self.broker_up(*id);
                    Reply::Unfenced
                }
                _ => Reply::Stale,
            },
            Command::AlterPartition {
                topic,
                topic_id,
                partition,
                leader,
                leader_epoch,
                isr,
            } => {
                let live = self.live_ids();
                let Some(record) = self
                    .topics
                    .get_mut(topic)
                    .filter(|record| record.id == *topic_id)
                else {
                    return Reply::Stale;
                };
                let Some(placed) = usize::try_from(*partition)
                    .ok()
                    .and_then(|index| record.partitions.get_mut(index))
                else {
                    return Reply::Stale;
                };
                let admissible = placed.leader == *leader
                    && placed.leader_epoch == *leader_epoch
                    && isr.contains(leader)
                    && isr.iter().all(|replica| placed.replicas.contains(replica))
                    && isr
                        .iter()
                        .all(|replica| placed.isr.contains(replica) || live.contains(replica));
                if !admissible {
                    return Reply::Stale;
                }
                placed.isr = placed
                    .replicas
                    .iter()
                    .copied()
                    .filter(|replica| isr.contains(replica))
                    .collect();
                Reply::PartitionAltered
            }
        }
    }

    fn live_ids(&self) -> Vec<i32> {
        self.brokers
            .iter()
            .filter(|(_, broker)| !broker.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Broker `id` is fenced (or restarted): a new leader, from the ISR and live, for every
    /// partition it led (a new leader epoch; none left: no leader, unless the topic allows
    /// an unclean election), and it leaves every ISR it was in with others.
    fn broker_down(&mut self, id: i32) {
        let live = self.live_ids();
        for record in self.topics.values_mut() {
            let unclean = record.unclean_election();
            for placed in &mut record.partitions {
                if placed.leader == id {
                    let in_sync = placed
                        .isr
                        .iter()
                        .copied()
                        .find(|replica| *replica != id && live.contains(replica));
                    let out_of_sync = || {
                        placed
                            .replicas
                            .iter()
                            .copied()
                            .find(|replica| *replica != id && live.contains(replica))
                    };
                    placed.leader_epoch += 1;
                    match (in_sync, unclean.then(out_of_sync).flatten()) {
                        (Some(next), _) => {
                            placed.leader = next;
                            placed.isr.retain(|replica| *replica != id);
                        }
                        (None, Some(next)) => {
                            placed.leader = next;
                            placed.isr = vec![next];
                        }
                        // The last in-sync replica stays in the ISR: it comes back leader.
                        (None, None) => placed.leader = NO_LEADER,
                    }
                } else if placed.isr.contains(&id) && placed.isr.len() > 1 {
                    placed.isr.retain(|replica| *replica != id);
                }
            }
        }
    }

    /// Broker `id` is live again: it leads every leaderless partition whose ISR it is in
    /// (or, with unclean election, whose replica it is).
    fn broker_up(&mut self, id: i32) {
        for record in self.topics.values_mut() {
            let unclean = record.unclean_election();
            for placed in &mut record.partitions {
                if placed.leader != NO_LEADER || !placed.replicas.contains(&id) {
                    continue;
                }
                if placed.isr.contains(&id) {
                    placed.leader = id;
                    placed.leader_epoch += 1;
                } else if unclean {
                    placed.leader = id;
                    placed.isr = vec![id];
                    placed.leader_epoch += 1;
                }
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: ClusterState,
}

struct Inner {
    dir: PathBuf,
    state: ClusterState,
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    /// The last snapshot built or installed, as its file holds it.
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine; clones share it. Every applied change is published on `published`.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<Inner>>,
    published: Arc<watch::Sender<Arc<ClusterState>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read the controller snapshot {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the controller snapshot {} is not valid: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StateMachineStore {
    /// Starts from the snapshot in `dir`, if there is one; openraft applies the log after it.
    pub fn open(dir: &Path) -> Result<StateMachineStore, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            state: ClusterState::default(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: StoredSnapshot =
                    serde_json::from_slice(&bytes).map_err(|source| SnapshotError::Invalid {
                        path: path.clone(),
                        source,
                    })?;
                inner.state = stored.state;
                inner.last_applied = stored.meta.last_log_id;
                inner.last_membership = stored.meta.last_membership.clone();
                inner.snapshot = Some((stored.meta, bytes));
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(SnapshotError::Io { path, source }),
        }
        let (published, _) = watch::channel(Arc::new(inner.state.clone()));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
            published: Arc::new(published),
        })
    }

    /// Every version of the state, as it is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.published.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &ClusterState) {
        self.published.send_replace(Arc::new(state.clone()));
    }
}

/// Writes `bytes` as `dir/name` so that a crash leaves the old file or the new one whole.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!("{name}.new"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        inner.snapshots_built += 1;
        let snapshot_id = match inner.last_applied {
            Some(last) => format!(
                "{}-{}-{}",
                last.leader_id, last.index, inner.snapshots_built
            ),
            None => format!("--{}", inner.snapshots_built),
        };
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.last_membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            state: inner.state.clone(),
        };
        let bytes = serde_json::to_vec(&stored)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        write_durably(&inner.dir, SNAPSHOT_FILE, &bytes)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        inner.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        let inner = self.lock();
        Ok((inner.last_applied, inner.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut replies = Vec::new();
        let mut changed = false;
        for entry in entries {
            inner.last_applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::None,
                EntryPayload::Normal(command) => {
                    changed = true;
                    inner.state.apply(entry.log_id.index, &command)
                }
                EntryPayload::Membership(membership) => {
                    inner.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    Reply::None
                }
            };
            replies.push(reply);
        }
        if changed {
            self.publish(&inner.state);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let stored: StoredSnapshot = serde_json::from_slice(&bytes)
            .map_err(|error| StorageIOError::read_snapshot(Some(meta.signature()), &error))?;
        let mut inner = self.lock();
        write_durably(&inner.dir, SNAPSHOT_FILE, &bytes)
            .map_err(|error| StorageIOError::write_snapshot(Some(meta.signature()), &error))?;
        inner.state = stored.state;
        inner.last_applied = meta.last_log_id;
        inner.last_membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        self.publish(&inner.state);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.lock().snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn registration(id: i32, incarnation: Uuid, cluster_id: &str) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation,
            host: "127.0.0.1".to_string(),
            port: 9092 + id,
            rack: None,
            cluster_address: format!("127.0.0.1:{}", 9192 + id),
            proposed_cluster_id: cluster_id.to_string(),
        }
    }

    #[test]
    fn the_first_registration_names_the_cluster_and_stale_incarnations_change_nothing() {
        let mut state = ClusterState::default();
        let first = Uuid::new_v4();
        assert_eq!(
            state.apply(3, &Command::RegisterBroker(registration(1, first, "a"))),
            Reply::Registered { epoch: 3 }
        );
        state.apply(
            4,
            &Command::RegisterBroker(registration(2, Uuid::new_v4(), "b")),
        );
        assert_eq!(state.cluster_id.as_deref(), Some("a"));
        let fence = Command::FenceBroker {
            id: 1,
            incarnation: first,
        };
        assert_eq!(state.apply(5, &fence), Reply::Fenced);
        assert!(state.brokers[&1].fenced);
        // Broker 1 restarted: a new incarnation registers, unfenced.
        let second = Uuid::new_v4();
        state.apply(6, &Command::RegisterBroker(registration(1, second, "c")));
        assert!(!state.brokers[&1].fenced);
        assert_eq!(state.brokers[&1].epoch, 6);
        // A fence meant for the old incarnation does nothing to the new one.
        assert_eq!(state.apply(7, &fence), Reply::Stale);
        assert!(!state.brokers[&1].fenced);
        let unknown = Command::UnfenceBroker {
            id: 9,
            incarnation: second,
        };
        assert_eq!(state.apply(8, &unknown), Reply::Stale);
        assert_eq!(state.cluster_id.as_deref(), Some("a"), "named once");
    }

    #[test]
    fn topic_configs_and_new_partitions_apply_only_to_the_topic_they_name() {
        let mut state = ClusterState::default();
        let created = topic("t", &[&[1, 2], &[2, 1]], &[("retention.ms", "1000")]);
        let id = created.id;
        state.apply(1, &Command::CreateTopic(created));
        let configs: BTreeMap<String, String> =
            [("max.message.bytes".to_string(), "2000".to_string())].into();
        let set = |id| Command::SetTopicConfigs {
            name: "t".to_string(),
            id,
            configs: configs.clone(),
        };
        assert_eq!(state.apply(2, &set(Uuid::new_v4())), Reply::Stale);
        assert_eq!(state.apply(3, &set(id)), Reply::TopicUpdated);
        assert_eq!(state.topics["t"].configs, configs, "replaced, not merged");
        let grow = |from| Command::AddPartitions {
            name: "t".to_string(),
            id,
            from,
            partitions: vec![crate::cluster::PartitionRecord::new(vec![1, 2])],
        };
        assert_eq!(state.apply(4, &grow(2)), Reply::TopicUpdated);
        assert_eq!(state.topics["t"].partitions.len(), 3);
        // A second growth asked against the old count does not apply.
        assert_eq!(state.apply(5, &grow(2)), Reply::Stale);
        assert_eq!(state.topics["t"].partitions.len(), 3);
        assert_eq!(state.topics["t"].partitions[2].leader, 1);
    }

    fn topic(name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) -> TopicRecord {
        TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions: replicas
                .iter()
                .map(|replicas| crate::cluster::PartitionRecord::new(replicas.to_vec()))
                .collect(),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created_index: 0,
        }
    }

    fn three_brokers() -> (ClusterState, Vec<Uuid>) {
        let mut state = ClusterState::default();
        let incarnations: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for (id, incarnation) in incarnations.iter().enumerate() {
            let id = id as i32 + 1;
            state.apply(
                id as u64,
                &Command::RegisterBroker(registration(id, *incarnation, "c")),
            );
        }
        (state, incarnations)
    }

    fn placed(state: &ClusterState, topic: &str, partition: usize) -> (i32, i32, Vec<i32>) {
        let p = &state.topics[topic].partitions[partition];
        (p.leader, p.leader_epoch, p.isr.clone())
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_and_the_last_one_stays_in_it() {
        let (mut state, incarnations) = three_brokers();
        state.apply(
            10,
            &Command::CreateTopic(topic("t", &[&[1, 2, 3], &[2, 3, 1]], &[])),
        );
        let fence = |id: i32| Command::FenceBroker {
            id,
            incarnation: incarnations[id as usize - 1],
        };
        state.apply(11, &fence(1));
        assert_eq!(placed(&state, "t", 0), (2, 1, vec![2, 3]));
        // A follower fenced leaves the ISR; the leader and its epoch stay.
        assert_eq!(placed(&state, "t", 1), (2, 0, vec![2, 3]));
        state.apply(12, &fence(2));
        assert_eq!(placed(&state, "t", 0), (3, 2, vec![3]));
        state.apply(13, &fence(3));
        assert_eq!(placed(&state, "t", 0), (NO_LEADER, 3, vec![3]));
        // Broker 1 is back but was not in sync: no leader (clean election only).
        state.apply(
            14,
            &Command::UnfenceBroker {
                id: 1,
                incarnation: incarnations[0],
            },
        );
        assert_eq!(placed(&state, "t", 0).0, NO_LEADER);
        // Broker 3, the last in sync, restarts (a new incarnation) and leads again.
        state.apply(
            15,
            &Command::RegisterBroker(registration(3, Uuid::new_v4(), "c")),
        );
        assert_eq!(placed(&state, "t", 0), (3, 4, vec![3]));
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let (mut state, incarnations) = three_brokers();
        state.apply(
            10,
            &Command::CreateTopic(topic(
                "u",
                &[&[1, 2]],
                &[("unclean.leader.election.enable", "true")],
            )),
        );
        let fence = |id: i32| Command::FenceBroker {
            id,
            incarnation: incarnations[id as usize - 1],
        };
        state.apply(11, &fence(2));
        assert_eq!(placed(&state, "u", 0), (1, 0, vec![1]));
        state.apply(
            12,
            &Command::UnfenceBroker {
                id: 2,
                incarnation: incarnations[1],
            },
        );
        state.apply(13, &fence(1));
        assert_eq!(placed(&state, "u", 0), (2, 1, vec![2]));
    }

    #[test]
    fn isr_changes_apply_only_from_the_current_leader_and_epoch() {
        let (mut state, incarnations) = three_brokers();
        let record = topic("t", &[&[1, 2, 3]], &[]);
        let id = record.id;
        state.apply(10, &Command::CreateTopic(record));
        let alter = |leader: i32, leader_epoch: i32, isr: &[i32]| Command::AlterPartition {
            topic: "t".to_string(),
            topic_id: id,
            partition: 0,
            leader,
            leader_epoch,
            isr: isr.to_vec(),
        };
        assert_eq!(
            state.apply(11, &alter(1, 0, &[3, 1])),
            Reply::PartitionAltered
        );
        assert_eq!(placed(&state, "t", 0), (1, 0, vec![1, 3]));
        assert_eq!(state.apply(12, &alter(2, 0, &[1, 2, 3])), Reply::Stale);
        assert_eq!(state.apply(13, &alter(1, 1, &[1, 2, 3])), Reply::Stale);
        assert_eq!(
            state.apply(14, &alter(1, 0, &[2, 3])),
            Reply::Stale,
            "without its leader"
        );
        state.apply(
            15,
            &Command::FenceBroker {
                id: 2,
                incarnation: incarnations[1],
            },
        );
        assert_eq!(
            state.apply(16, &alter(1, 0, &[1, 2, 3])),
            Reply::Stale,
            "a fenced broker cannot join"
        );
        assert_eq!(state.apply(17, &alter(1, 0, &[1])), Reply::PartitionAltered);
        assert_eq!(placed(&state, "t", 0), (1, 0, vec![1]));
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut state = ClusterState::default();
        let blocks: Vec<Reply> = (1..=3)
            .map(|broker| state.apply(broker as u64, &Command::AllocateProducerIds { broker }))
            .collect();
        assert_eq!(
            blocks,
            (0..3)
                .map(|block| Reply::ProducerIds {
                    first: block * PRODUCER_ID_BLOCK,
                    count: PRODUCER_ID_BLOCK
                })
                .collect::<Vec<_>>()
        );
    }
}
