//! Partitions that cannot serve — their log would not open, or a write or fdatasync failed
//! and took it offline — with the reason, so that Metadata on any shard reports them
//! (KAFKA_STORAGE_ERROR) instead of a healthy leader. Written by the owner shard when it
//! opens a partition or checks its logs; read per Metadata request, never on the data path.

use std::collections::BTreeMap;
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct OfflinePartitions {
    partitions: RwLock<BTreeMap<(String, i32), String>>,
}

impl OfflinePartitions {
    pub fn mark(&self, topic: &str, partition: i32, reason: String) {
        let mut partitions = self.write();
        let key = (topic.to_string(), partition);
        if partitions.get(&key) != Some(&reason) {
            tracing::error!(topic, partition, %reason, "partition is offline");
            partitions.insert(key, reason);
        }
    }

    pub fn clear(&self, topic: &str, partition: i32) {
        if self
            .write()
            .remove(&(topic.to_string(), partition))
            .is_some()
        {
            tracing::info!(topic, partition, "partition is back online");
        }
    }

    /// Offline partitions of `topic`, with why.
    pub fn of_topic(&self, topic: &str) -> BTreeMap<i32, String> {
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|((name, _), _)| name == topic)
            .map(|((_, partition), reason)| (*partition, reason.clone()))
            .collect()
    }

    /// Every offline partition, with why.
    pub fn all(&self) -> Vec<((String, i32), String)> {
        self.partitions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(key, reason)| (key.clone(), reason.clone()))
            .collect()
    }

    pub fn forget_topic(&self, topic: &str) {
        self.write().retain(|(name, _), _| name != topic);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<(String, i32), String>> {
        self.partitions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
