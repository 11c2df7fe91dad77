//! The topic catalog: every topic's name, id, partitions (with their owner shard) and
//! configs, plus the cluster id.
//!
//! Byte format: `<data-dir>/catalog.json`, one JSON document. Crash policy: every change is
//! written to `catalog.json.tmp`, fsynced, renamed over `catalog.json`, and the directory is
//! fsynced, so after a crash the file holds either the old or the new catalog, whole.
//!
//! Readers take an immutable snapshot (`Arc<Catalog>`); changes are serialized by a mutex
//! and publish a new snapshot. The file writes block: shards make changes through
//! `Shard::update_catalog`, which runs them on a helper thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// UUID, as Metadata v10+ reports it.
    pub id: uuid::Uuid,
    /// Owner shard of each partition, by partition index.
    pub partition_shards: Vec<usize>,
    /// Topic-level config overrides (`retention.ms`, ...), validated at creation.
    pub configs: BTreeMap<String, String>,
    /// In cluster mode, the local copy of a topic the controller quorum keeps: its
    /// partitions with no replica on this broker are listed here, and have no owner shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterCopy>,
}

/// What a cluster topic's local copy records beside the usual.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCopy {
    /// Partitions hosted by other brokers only.
    pub elsewhere: std::collections::BTreeSet<i32>,
    /// The quorum's log index of the topic's creation: a cluster view that has applied
    /// past it and lacks the topic means the topic was deleted.
    pub created_index: u64,
}

impl TopicMeta {
    pub fn partition_count(&self) -> usize {
        self.partition_shards.len()
    }

    /// The shards owning at least one partition, each once.
    pub fn owner_shards(&self) -> Vec<usize> {
        let mut owners = self.partition_shards.clone();
        owners.sort_unstable();
        owners.dedup();
        owners
    }

    /// Owner shard of a partition, if the partition exists here.
    pub fn owner(&self, partition: i32) -> Option<usize> {
        if self
            .cluster
            .as_ref()
            .is_some_and(|copy| copy.elsewhere.contains(&partition))
        {
            return None;
        }
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.partition_shards.get(index).copied())
    }
}

/// One immutable view of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Producer ids below this may have been handed out; ids are reserved in blocks.
    #[serde(default)]
    pub producer_ids_reserved: i64,
    /// Broker configs set through the admin APIs (see `broker_config`).
    #[serde(default)]
    pub broker_configs: crate::broker_config::DynamicBrokerConfigs,
}

impl Catalog {
    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<&TopicMeta> {
        self.topics.values().find(|topic| topic.id == id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the catalog's helper thread failed: {0}")]
    Helper(String),
    #[error("{path} is not a valid catalog: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// The catalog as stored in a data directory.
pub struct CatalogStore {
    path: PathBuf,
    current: RwLock<Arc<Catalog>>,
    writer: Mutex<()>,
    /// Next producer id to hand out; below `producer_ids_reserved`.
    next_producer_id: Mutex<i64>,
}

/// Producer ids reserved (persisted) at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl CatalogStore {
    /// Loads `<data_dir>/catalog.json`, or starts an empty catalog with a new cluster id.
    pub fn open(data_dir: &Path) -> Result<CatalogStore, CatalogError> {
        let path = data_dir.join("catalog.json");
        let io = |action, source| CatalogError::Io {
            action,
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir)
            .map_err(|source| io("create the directory of", source))?;
        let catalog = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| CatalogError::Corrupt {
                path: path.clone(),
                reason: error.to_string(),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Catalog {
                cluster_id: uuid::Uuid::new_v4().simple().to_string(),
                topics: BTreeMap::new(),
                ..Catalog::default()
            },
            Err(source) => return Err(io("read", source)),
        };
        let next_producer_id = catalog.producer_ids_reserved;
        let store = CatalogStore {
            path,
            current: RwLock::new(Arc::new(catalog)),
            writer: Mutex::new(()),
            next_producer_id: Mutex::new(next_producer_id),
        };
        store.persist(&store.snapshot())?;
        Ok(store)
    }

    /// Re-places every partition whose owner shard does not exist with `shards` shards (the
    /// broker restarted with fewer `--cores`) onto one that does, and persists the change.
    /// Partition files stay where they are: their directories do not name a shard.
    /// Returns how many partitions moved.
    pub fn place_on(&self, shards: usize) -> Result<usize, CatalogError> {
        assert!(shards > 0);
        let misplaced = |catalog: &Catalog| {
            catalog
                .topics
                .values()
                .flat_map(|topic| topic.partition_shards.iter())
                .filter(|owner| **owner >= shards)
                .count()
        };
        if misplaced(&self.snapshot()) == 0 {
            return Ok(0);
        }
        self.update(|catalog| {
            let moved = misplaced(catalog);
            for topic in catalog.topics.values_mut() {
                for (partition, owner) in topic.partition_shards.iter_mut().enumerate() {
                    if *owner >= shards {
                        *owner = placement(&topic.name, partition, shards);
                    }
                }
            }
            Ok::<_, CatalogError>(moved)
        })
    }

    pub fn snapshot(&self) -> Arc<Catalog> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies `change` to a copy of the catalog; when it succeeds, persists and publishes
    /// the copy. Changes are serialized.
    pub fn update<T, E: From<CatalogError>>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, E>,
    ) -> Result<T, E> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = (*self.snapshot()).clone();
        let outcome = change(&mut next)?;
        self.persist(&next)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(next);
        Ok(outcome)
    }

    /// A producer id never handed out before, even across restarts: ids are reserved in
    /// persisted blocks, and a restart skips the rest of the block it was in.
    pub fn next_producer_id(&self) -> Result<i64, CatalogError> {
        let mut next = self
            .next_producer_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *next >= self.snapshot().producer_ids_reserved {
            let reserved = self.update(|catalog| {
                catalog.producer_ids_reserved =
                    catalog.producer_ids_reserved.max(*next) + PRODUCER_ID_BLOCK;
                Ok::<_, CatalogError>(catalog.producer_ids_reserved)
            })?;
            *next = reserved - PRODUCER_ID_BLOCK;
        }
        let id = *next;
        *next += 1;
        Ok(id)
    }

    fn persist(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        use std::io::Write;
        let tmp = self.path.with_extension("json.tmp");
        let io = |action, path: &Path, source| CatalogError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(catalog).expect("catalog serializes");
        let mut file = std::fs::File::create(&tmp).map_err(|source| io("create", &tmp, source))?;
        file.write_all(&bytes)
            .map_err(|source| io("write", &tmp, source))?;
        file.sync_all()
            .map_err(|source| io("fsync", &tmp, source))?;
        std::fs::rename(&tmp, &self.path).map_err(|source| io("rename", &tmp, source))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| io("fsync", dir, source))
    }
}

/// FNV-1a: a stable hash (the same on every build), for placing partitions and groups on
/// shards.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shard that owns `partition` of topic `topic` among `shards` shards: a topic's
/// partitions go round-robin over the shards, starting from one its name picks.
pub fn placement(topic: &str, partition: usize, shards: usize) -> usize {
    assert!(shards > 0);
    let first = (stable_hash(topic.as_bytes()) % shards as u64) as usize;
    (first + partition) % shards
}

/// Refuses client writes, creations and deletions of the internal offsets topic (the
/// broker alone writes `__consumer_offsets`; on a single node its name would also collide
/// with the per-shard offsets logs).
pub fn refuse_internal_topic(name: &str, what: &str) -> Result<(), String> {
    if name == crate::group::OFFSETS_TOPIC {
        return Err(format!(
            "'{name}' is the internal topic of committed offsets: {what} it is not allowed"
        ));
    }
    Ok(())
}

/// Checks a topic name as Kafka does: 1 to 249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name '{name}' is not allowed"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(format!(
            "topic name is {} characters, the limit is {TOPIC_NAME_BYTES_MAX}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name '{name}' contains '{bad}'; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_persist_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        let cluster_id = store.snapshot().cluster_id.clone();
        store
            .update(|catalog| {
                catalog.topics.insert(
                    "orders".into(),
                    TopicMeta {
                        name: "orders".into(),
                        id: uuid::Uuid::new_v4(),
                        partition_shards: vec![0, 1, 0],
                        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
                        cluster: None,
                    },
                );
                Ok::<_, CatalogError>(())
            })
            .unwrap();
        let reopened = CatalogStore::open(dir.path()).unwrap().snapshot();
        assert_eq!(reopened.cluster_id, cluster_id);
        assert_eq!(reopened.topics["orders"].owner(2), Some(0));
        assert_eq!(reopened.topics["orders"].owner(3), None);
        assert_eq!(*reopened, *store.snapshot());
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| store.next_producer_id().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(store);
        let store = CatalogStore::open(dir.path()).unwrap();
        assert!(store.next_producer_id().unwrap() >= 1000);
    }

    #[test]
    fn a_failed_change_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CatalogStore::open(dir.path()).unwrap();
        let before = store.snapshot();
        let result: Result<(), CatalogError> = store.update(|catalog| {
            catalog.topics.clear();
            catalog.cluster_id = "changed".into();
            Err(CatalogError::Corrupt {
                path: "x".into(),
                reason: "refused".into(),
            })
        });
        assert!(result.is_err());
        assert_eq!(*store.snapshot(), *before);
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("payment-done.v1_2").is_ok());
        for bad in ["", ".", "..", "a b", "tópic", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
