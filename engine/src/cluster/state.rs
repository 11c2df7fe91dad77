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
    BrokerRegistration, Command, NodeId, Reply, SnapshotData, TopicRecord, TypeConfig,
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
                self.brokers.insert(
                    registration.id,
                    BrokerState {
                        registration: registration.clone(),
                        epoch: index,
                        fenced: false,
                    },
                );
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
                    Reply::Fenced
                }
                _ => Reply::Stale,
            },
            Command::UnfenceBroker { id, incarnation } => match self.brokers.get_mut(id) {
                Some(broker) if broker.registration.incarnation == *incarnation => {
                    broker.fenced = false;
                    Reply::Unfenced
                }
                _ => Reply::Stale,
            },
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
