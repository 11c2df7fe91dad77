//! `Shard`: one pinned thread with its own runtime, the partitions it owns, and an inbox.
//! Layers: `server` (connections) and `api` (handlers) call into shards; a shard calls into
//! `partition`, `catalog`, `group` and `storage`, never back up.
//!
//! Shards share nothing mutable. Work for a partition runs on its owner shard: a connection's
//! shard calls [`Shard::call`], which runs a closure on the owner (sent through the owner's
//! bounded inbox) and returns its answer; work for local partitions runs in place, with no
//! hop. Callers batch everything bound for one shard into one call.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::catalog::{Catalog, CatalogError, CatalogStore, TopicMeta};
use crate::config::BrokerConfig;
use crate::io::Disk;
use crate::partition::LocalPartition;
use crate::storage::{Clock, PartitionLog, StorageError};
use crate::topic_config::topic_settings;

/// A unit of work sent to a shard: built on the sender, run on the receiving shard.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// What every shard can see: settings, the catalog, and every shard's inbox.
pub struct BrokerContext {
    pub config: BrokerConfig,
    pub catalog: CatalogStore,
    pub inboxes: Vec<mpsc::Sender<Job>>,
    /// Host and port clients are told to use.
    pub advertised: (String, i32),
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Committed offsets read from every offsets log at start-up, by group.
    pub replayed_offsets: Arc<crate::group::GroupOffsets>,
    /// Partitions that cannot serve, for Metadata.
    pub offline: Arc<crate::partition::offline::OfflinePartitions>,
    /// Connections open, against max.connections and max.connections.per.ip.
    pub connections: Arc<crate::server::limits::ConnectionLimits>,
    /// Bytes of request frames held broker-wide (queued.max.request.bytes).
    pub queued_bytes: Arc<crate::server::budget::ByteBudget>,
    /// Connections each shard serves, for placing new ones.
    pub placement: Arc<crate::server::placement::ConnectionPlacement>,
    /// The cluster as the controller quorum has it, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::ClusterHandle>>,
}

/// A `__consumer_offsets` partition this broker leads, as its shard holds it.
pub enum GroupPartition {
    /// Its log is being read (the leadership began in `epoch`).
    Loading { epoch: i32 },
    Ready {
        store: Rc<crate::group::OffsetStore>,
    },
}

/// See [`Shard::append_gates`].
pub type AppendGate = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, thiserror::Error)]
#[error("shard {0} is gone (the broker is shutting down)")]
pub struct ShardGone(pub usize);

/// Why work sent to a shard failed.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error(transparent)]
    Gone(#[from] ShardGone),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ShardError {
    /// The Kafka error code a client sees (retriable where a retry can succeed).
    pub fn error_code(&self) -> protocol::ErrorCode {
        match self {
            ShardError::Gone(_) => protocol::ErrorCode::NotLeaderOrFollower,
            ShardError::Storage(error) => error.error_code(),
        }
    }
}

pub struct Shard {
    pub id: usize,
    pub context: Arc<BrokerContext>,
    pub disk: Disk,
    partitions: RefCell<HashMap<(String, i32), Rc<LocalPartition>>>,
    /// One fair lock per partition, held while a request appends to it, so appends land in
    /// the order requests reached the shard even when one of them must wait (segment roll,
    /// full write buffer, producer state loading).
    append_gates: RefCell<HashMap<(String, i32), AppendGate>>,
    open_lock: tokio::sync::Mutex<()>,
    /// Woken whenever a local partition's high watermark may have moved.
    pub data_arrived: Rc<Notify>,
    /// The consumer groups this shard coordinates.
    pub coordinator: crate::group::Coordinator,
    /// A single node's store of committed offsets (its own log).
    offsets: std::cell::OnceCell<Rc<crate::group::OffsetStore>>,
    /// In a cluster, the `__consumer_offsets` partitions this shard owns and this broker
    /// leads, by partition: their groups are coordinated here.
    group_partitions: RefCell<std::collections::BTreeMap<i32, GroupPartition>>,
    /// A creation of `__consumer_offsets` asked for by this shard is under way.
    pub creating_offsets_topic: std::cell::Cell<bool>,
    /// Leader brokers a replica fetcher of this shard runs for (cluster mode).
    pub fetchers: RefCell<std::collections::BTreeSet<i32>>,
    me: std::rc::Weak<Shard>,
}

impl Shard {
    pub fn new(id: usize, context: Arc<BrokerContext>, disk: Disk) -> Rc<Shard> {
        let group_settings = context.config.groups.clone();
        Rc::new_cyclic(|me| Shard {
            id,
            context,
            disk,
            partitions: RefCell::new(HashMap::new()),
            append_gates: RefCell::new(HashMap::new()),
            open_lock: tokio::sync::Mutex::new(()),
            data_arrived: Rc::new(Notify::new()),
            coordinator: crate::group::Coordinator::new(group_settings),
            offsets: std::cell::OnceCell::new(),
            group_partitions: RefCell::new(std::collections::BTreeMap::new()),
            creating_offsets_topic: std::cell::Cell::new(false),
            fetchers: RefCell::new(std::collections::BTreeSet::new()),
            me: me.clone(),
        })
    }

    /// The broker's settings with the dynamic broker configs of the catalog laid over them
    /// (log defaults, `num.partitions`).
    pub fn effective_config(&self) -> crate::config::BrokerConfig {
        crate::broker_config::effective(
            &self.context.config,
            &self.context.catalog.snapshot().broker_configs,
        )
    }

    /// The committed offsets of `group`, if this shard coordinates it: on a single node its
    /// own store (opened at start-up); in a cluster the store of the group's
    /// `__consumer_offsets` partition, once loaded (COORDINATOR_LOAD_IN_PROGRESS until
    /// then), while this broker leads it (NOT_COORDINATOR otherwise).
    pub fn offsets_for(
        &self,
        group: &str,
    ) -> Result<Rc<crate::group::OffsetStore>, protocol::ErrorCode> {
        if self.context.cluster.is_none() {
            return Ok(self
                .offsets
                .get()
                .expect("offsets are opened before the shard serves")
                .clone());
        }
        let partitions = self.context.config.groups.offsets_topic_partitions;
        let partition = crate::group::offsets_partition(group, partitions);
        match self.group_partitions.borrow().get(&partition) {
            Some(GroupPartition::Ready { store }) => Ok(store.clone()),
            Some(GroupPartition::Loading { .. }) => {
                Err(protocol::ErrorCode::CoordinatorLoadInProgress)
            }
            None => Err(protocol::ErrorCode::NotCoordinator),
        }
    }

    /// Every store of committed offsets this shard holds now.
    pub fn offset_stores(&self) -> Vec<Rc<crate::group::OffsetStore>> {
        let mut stores: Vec<_> = self.offsets.get().cloned().into_iter().collect();
        stores.extend(
            self.group_partitions
                .borrow()
                .values()
                .filter_map(|state| match state {
                    GroupPartition::Ready { store } => Some(store.clone()),
                    GroupPartition::Loading { .. } => None,
                }),
        );
        stores
    }

    /// Follows a change of this broker's part in a `__consumer_offsets` partition this
    /// shard owns: on becoming its leader, loads its commits (in the background; its groups
    /// answer COORDINATOR_LOAD_IN_PROGRESS meanwhile); on losing it, forgets its groups
    /// (their members rejoin at the new coordinator).
    pub fn offsets_partition_changed(&self, partition: i32, local: Rc<LocalPartition>) {
        let epoch = local.leader_epoch();
        let current = match self.group_partitions.borrow().get(&partition) {
            Some(GroupPartition::Loading { epoch }) => Some(*epoch),
            Some(GroupPartition::Ready { store }) => store.epoch(),
            None => None,
        };
        if epoch.is_some() && epoch == current {
            return;
        }
        if current.is_some() {
            self.group_partitions.borrow_mut().remove(&partition);
            let partitions = self.context.config.groups.offsets_topic_partitions;
            for (group, _, _) in self.coordinator.list() {
                if crate::group::offsets_partition(&group, partitions) == partition {
                    self.coordinator.drop_group(&group);
                }
            }
            tracing::info!(
                partition,
                "no longer coordinating the groups of this offsets partition"
            );
        }
        let Some(epoch) = epoch else {
            return;
        };
        self.group_partitions
            .borrow_mut()
            .insert(partition, GroupPartition::Loading { epoch });
        let topic = crate::group::OFFSETS_TOPIC.to_string();
        let gate = self
            .append_gates(std::iter::once((&topic, partition)))
            .remove(0);
        let shard = self.rc();
        tokio::task::spawn_local(async move {
            let loaded = crate::group::OffsetStore::load_replicated(local, gate, epoch).await;
            let mut states = shard.group_partitions.borrow_mut();
            if !matches!(states.get(&partition), Some(GroupPartition::Loading { epoch: loading }) if *loading == epoch)
            {
                return;
            }
            match loaded {
                Ok(store) => {
                    tracing::info!(
                        partition,
                        epoch,
                        groups = store.groups().len(),
                        "coordinating the groups of this offsets partition"
                    );
                    states.insert(
                        partition,
                        GroupPartition::Ready {
                            store: Rc::new(store),
                        },
                    );
                }
                Err(error) => {
                    // Its groups answer NOT_COORDINATOR; the next change of the view retries.
                    tracing::error!(partition, %error, "cannot load the offsets partition");
                    states.remove(&partition);
                }
            }
        });
    }

    /// Opens this shard's offsets log and takes the replayed offsets of its groups (a
    /// single node; in a cluster, offsets live in `__consumer_offsets`).
    pub async fn open_offsets(&self) -> Result<(), StorageError> {
        if self.context.cluster.is_some() {
            return Ok(());
        }
        let dir = self.context.config.data_dir.join(format!(
            "{}{}",
            crate::group::OFFSETS_LOG_PREFIX,
            self.id
        ));
        let config = crate::group::offsets_log_config(&self.context.config);
        let log = PartitionLog::open(self.disk.clone(), dir, config, Clock::system()).await?;
        let shards = self.shard_count();
        let mine = self
            .context
            .replayed_offsets
            .iter()
            .filter(|(group, _)| crate::group::coordinator_shard(group, shards) == self.id)
            .map(|(group, offsets)| (group.clone(), offsets.clone()))
            .collect();
        let store = Rc::new(crate::group::OffsetStore::new(log, mine));
        let _ = self.offsets.set(store.clone());
        store.compact().await
    }

    pub fn shard_count(&self) -> usize {
        self.context.inboxes.len()
    }

    fn rc(&self) -> Rc<Shard> {
        self.me.upgrade().expect("a running shard is alive")
    }

    /// Runs `work` on shard `target` and returns its answer. On this shard it runs in place.
    pub async fn call<T, F, Fut>(&self, target: usize, work: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(work(self.rc()).await);
        }
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                let _ = reply.send(work(shard).await);
            })
        });
        let inbox = self.context.inboxes.get(target).ok_or(ShardGone(target))?;
        inbox.send(job).await.map_err(|_| ShardGone(target))?;
        answer.await.map_err(|_| ShardGone(target))
    }

    /// `call` for work that can fail: the shard being gone is one more failure.
    pub async fn try_call<T, E, F, Fut>(&self, target: usize, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<ShardGone> + Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
    {
        self.call(target, work).await?
    }

    /// The local log of a partition this shard owns, opened (and recovered) on first use.
    pub async fn partition(
        &self,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<Rc<LocalPartition>, StorageError> {
        let key = (topic.name.clone(), partition);
        if let Some(local) = self.local(&key, topic.id) {
            return Ok(local);
        }
        let _opening = self.open_lock.lock().await;
        if let Some(local) = self.local(&key, topic.id) {
            return Ok(local);
        }
        let settings = topic_settings(&self.effective_config().log_defaults, &topic.configs)
            .map_err(StorageError::InvalidConfig)?;
        let dir = partition_dir(&self.context.config, &topic.name, partition);
        let replication = match topic.cluster {
            Some(_) => crate::partition::Replication::Cluster {
                node_id: self.context.config.node_id,
            },
            None => crate::partition::Replication::Single,
        };
        let opened = async {
            crate::partition::dir::claim(&self.disk, &dir, topic.id).await?;
            LocalPartition::open(
                self.disk.clone(),
                dir,
                settings,
                topic.id,
                self.data_arrived.clone(),
                replication,
            )
            .await
        }
        .await;
        let offline = &self.context.offline;
        let local = match opened {
            Ok(local) => Rc::new(local),
            Err(error) => {
                offline.mark(&topic.name, partition, error.to_string());
                return Err(error);
            }
        };
        offline.clear(&topic.name, partition);
        // Its cache (empty until the first append) gets its share, the others theirs.
        self.partitions.borrow_mut().insert(key, local.clone());
        self.share_tail_caches();
        Ok(local)
    }

    /// Gives every open partition of this shard its equal share of the shard's tail-cache
    /// budget (after a partition opened or closed).
    fn share_tail_caches(&self) {
        let partitions = self.partitions.borrow();
        let share = tail_cache_share(
            self.context.config.tail_cache_bytes_per_shard,
            partitions.len(),
        );
        for local in partitions.values() {
            local.log.set_tail_cache_capacity(share);
        }
    }

    /// Applies `change` to the catalog and persists it (file writes and fsyncs) on a helper
    /// thread, so this shard keeps serving meanwhile.
    pub async fn update_catalog<T, E>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<CatalogError> + Send + 'static,
    {
        let context = self.context.clone();
        tokio::task::spawn_blocking(move || context.catalog.update(change))
            .await
            .unwrap_or_else(|error| Err(CatalogError::Helper(error.to_string()).into()))
    }

    /// A new producer id; when a new block must be reserved, it is persisted on a helper
    /// thread.
    pub async fn next_producer_id(&self) -> Result<i64, CatalogError> {
        let context = self.context.clone();
        tokio::task::spawn_blocking(move || context.catalog.next_producer_id())
            .await
            .unwrap_or_else(|error| Err(CatalogError::Helper(error.to_string())))
    }

    /// The append gates of these partitions, each once.
    pub fn append_gates<'a>(
        &self,
        partitions: impl Iterator<Item = (&'a String, i32)>,
    ) -> Vec<AppendGate> {
        let mut gates = self.append_gates.borrow_mut();
        let mut wanted: Vec<AppendGate> = Vec::new();
        for (topic, partition) in partitions {
            let key = (topic.clone(), partition);
            let gate = gates.entry(key).or_default().clone();
            if !wanted.iter().any(|seen| Arc::ptr_eq(seen, &gate)) {
                wanted.push(gate);
            }
        }
        wanted
    }

    fn local(&self, key: &(String, i32), topic_id: uuid::Uuid) -> Option<Rc<LocalPartition>> {
        let partitions = self.partitions.borrow();
        partitions
            .get(key)
            .filter(|local| local.topic_id == topic_id)
            .cloned()
    }

    /// Closes the local partitions of a deleted topic and discards the directories of the
    /// ones this shard owns (renamed at once, removed in the background).
    pub async fn drop_topic(&self, topic: &TopicMeta) -> Result<(), StorageError> {
        let name = &topic.name;
        self.context.metrics.forget_topic(name);
        self.context.offline.forget_topic(name);
        self.append_gates
            .borrow_mut()
            .retain(|(gated, _), _| gated != name);
        let open: Vec<_> = {
            let mut partitions = self.partitions.borrow_mut();
            let keys: Vec<_> = partitions
                .keys()
                .filter(|(open, _)| open == name)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|key| partitions.remove(&key))
                .collect()
        };
        self.share_tail_caches();
        for local in open {
            match Rc::try_unwrap(local) {
                Ok(local) => {
                    if let Err(error) = local.log.close().await {
                        tracing::warn!(topic = %name, %error, "closing a deleted partition failed");
                    }
                }
                // A request still holds it: its flusher stops when the last one lets go.
                Err(_) => tracing::debug!(topic = %name, "deleted partition still in use"),
            }
        }
        let owned = topic
            .partition_shards
            .iter()
            .enumerate()
            .filter(|(_, owner)| **owner == self.id);
        for (partition, _) in owned {
            let dir = partition_dir(&self.context.config, name, partition as i32);
            if let Some(trash) = crate::partition::dir::discard(&self.disk, &dir, topic.id).await? {
                let disk = self.disk.clone();
                tokio::task::spawn_local(async move {
                    if let Err(error) = crate::partition::dir::remove(&disk, &trash).await {
                        tracing::warn!(%error, "removing a deleted partition's directory failed");
                    }
                });
            }
        }
        Ok(())
    }

    /// Applies every topic's configs (over the current broker defaults) to its open local
    /// partitions: after a change of the dynamic broker configs.
    pub fn apply_all_topic_configs(&self) -> Result<(), StorageError> {
        let defaults = self.effective_config().log_defaults;
        let catalog = self.context.catalog.snapshot();
        for topic in catalog.topics.values() {
            self.apply_settings(topic, &defaults)?;
        }
        Ok(())
    }

    /// Applies a topic's changed configs to its open local partitions.
    pub fn apply_topic_configs(&self, topic: &TopicMeta) -> Result<(), StorageError> {
        self.apply_settings(topic, &self.effective_config().log_defaults)
    }

    fn apply_settings(
        &self,
        topic: &TopicMeta,
        defaults: &crate::storage::LogConfig,
    ) -> Result<(), StorageError> {
        let settings =
            topic_settings(defaults, &topic.configs).map_err(StorageError::InvalidConfig)?;
        let partitions = self.partitions.borrow();
        for ((name, _), local) in partitions.iter() {
            if name == &topic.name && local.topic_id == topic.id {
                local.log.set_config(settings.log.clone())?;
                *local.settings.borrow_mut() = settings.clone();
            }
        }
        Ok(())
    }

    /// (topic, partition) and log size of every local partition.
    pub fn local_partition_sizes(&self) -> Vec<((String, i32), u64)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(key, local)| (key.clone(), local.log.size_bytes()))
            .collect()
    }

    /// Marks the open partitions whose log a failed write or fdatasync took offline.
    pub fn publish_offline_logs(&self) {
        let partitions = self.partitions.borrow();
        for ((topic, partition), local) in partitions.iter() {
            if let Some(reason) = local.log.offline_reason() {
                self.context.offline.mark(topic, *partition, reason);
            }
        }
    }

    /// Reopens the partitions a full disk took offline once the data directory has room
    /// again (`REOPEN_FREE_BYTES`): recovery cuts the unacknowledged tail and appends
    /// resume, without a restart. One an I/O error took offline stays so until a restart.
    pub async fn reopen_logs_offline_for_space(&self) {
        let full: Vec<(String, i32)> = self
            .partitions
            .borrow()
            .iter()
            .filter(|(_, local)| local.log.offline_for_space())
            .map(|(key, _)| key.clone())
            .collect();
        if full.is_empty() {
            return;
        }
        let free = free_bytes(&self.context.config.data_dir);
        if free.is_none_or(|free| free < REOPEN_FREE_BYTES) {
            return;
        }
        let catalog = self.context.catalog.snapshot();
        for (topic, partition) in full {
            let Some(meta) = catalog.topics.get(&topic) else {
                continue;
            };
            // A request still holding the old log finishes against it (offline).
            drop(
                self.partitions
                    .borrow_mut()
                    .remove(&(topic.clone(), partition)),
            );
            match self.partition(meta, partition).await {
                Ok(_) => {
                    tracing::info!(topic = %topic, partition, ?free, "reopened a partition the full disk took offline")
                }
                Err(error) => {
                    tracing::warn!(topic = %topic, partition, %error, "reopening a partition the full disk took offline failed")
                }
            }
        }
    }

    /// Every local partition with its topic and index.
    pub fn local_partition_entries(&self) -> Vec<((String, i32), Rc<LocalPartition>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(key, local)| (key.clone(), local.clone()))
            .collect()
    }

    /// Every local partition (for retention and shutdown).
    pub fn local_partitions(&self) -> Vec<Rc<LocalPartition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Closes every local partition: flushes data and writes indexes. A partition a request
    /// still holds is flushed (it closes when the request lets go). Every partition that
    /// could not be flushed is named in the log.
    pub async fn close_all(&self) {
        self.group_partitions.borrow_mut().clear();
        let all: Vec<_> = self.partitions.borrow_mut().drain().collect();
        let mut unflushed = Vec::new();
        for ((topic, partition), local) in all {
            let flushed = match Rc::try_unwrap(local) {
                Ok(local) => local.log.close().await,
                Err(shared) => shared.log.flush().await,
            };
            if let Err(error) = flushed {
                tracing::error!(topic = %topic, partition, %error, "shutdown could not flush the partition");
                unflushed.push(format!("{topic}-{partition}"));
            }
        }
        if let Some(store) = self.offsets.get() {
            if let Err(error) = store.flush().await {
                tracing::error!(shard = self.id, %error, "shutdown could not flush the offsets log");
                unflushed.push(format!("{}{}", crate::group::OFFSETS_LOG_PREFIX, self.id));
            }
        }
        if !unflushed.is_empty() {
            tracing::error!(shard = self.id, partitions = ?unflushed, "shard stopped with partitions not flushed");
        }
    }
}

/// Free space a data directory needs before partitions a full disk took offline reopen.
const REOPEN_FREE_BYTES: u64 = 8 * 1024 * 1024;

/// Bytes an unprivileged process may still write on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into `stats`; `path` is a valid C string.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return None;
    }
    Some(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Least tail cache a partition gets, however many share the shard's budget: a consumer
/// keeping up with its producers still reads from memory.
pub const TAIL_CACHE_SHARE_MIN: usize = 1024 * 1024;
/// Most tail cache one partition gets, however few share the budget.
pub const TAIL_CACHE_SHARE_MAX: usize = 64 * 1024 * 1024;

/// One partition's share of a shard's tail-cache budget of `budget` bytes when `partitions`
/// are open on the shard. The shard holds at most `budget` (or `TAIL_CACHE_SHARE_MIN` a
/// partition, when that is more). A consumer more than its partition's share behind the log
/// end reads from disk; with 1 MiB a partition (the share before there was a budget), a
/// consumer 20 ms behind a 50 MB/s partition did, and its O_DIRECT reads beside the
/// appends' fdatasyncs halved the rate producers got (results/tail-cache/).
pub fn tail_cache_share(budget: usize, partitions: usize) -> usize {
    (budget / partitions.max(1)).clamp(TAIL_CACHE_SHARE_MIN, TAIL_CACHE_SHARE_MAX)
}

/// `<data-dir>/<topic>-<partition>`.
pub fn partition_dir(config: &BrokerConfig, topic: &str, partition: i32) -> std::path::PathBuf {
    config.data_dir.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_cache_budget_is_shared_within_a_floor_and_a_ceiling() {
        const MIB: usize = 1024 * 1024;
        assert_eq!(tail_cache_share(256 * MIB, 8), 32 * MIB);
        assert_eq!(tail_cache_share(256 * MIB, 2), 64 * MIB, "ceiling");
        assert_eq!(tail_cache_share(256 * MIB, 0), 64 * MIB);
        assert_eq!(tail_cache_share(256 * MIB, 1000), MIB, "floor");
        assert_eq!(tail_cache_share(0, 3), MIB);
    }
}
