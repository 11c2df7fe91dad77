//! Committed offsets: in memory, and durable in an internal log before a commit is
//! acknowledged.
//!
//! Byte format: each commit request is one RecordBatch v2 in `__consumer_offsets-<shard>`;
//! a record's key is `group \0 topic \0 partition` and its value a JSON object
//! `{"offset","leader_epoch","metadata","timestamp"}`. Crash policy: the log is a partition
//! log like any other (recovered at open); at start-up every such log in the data directory
//! is read and, per key, the commit with the newest timestamp wins, so commits survive a
//! change of `--cores` that moves groups between shards.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use bytes::BytesMut;
use protocol::record_batch::{BatchHeader, RecordBatchBuilder};
use protocol::records::Records;
use serde::{Deserialize, Serialize};

use crate::storage::{Ack, PartitionLog, StorageError};

pub const OFFSETS_LOG_PREFIX: &str = "__consumer_offsets-";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub timestamp: i64,
}

type Key = (String, i32);

/// Committed offsets by group, then by (topic, partition).
pub type GroupOffsets = HashMap<String, HashMap<Key, CommittedOffset>>;

/// The committed offsets of the groups one shard coordinates.
pub struct OffsetStore {
    offsets: RefCell<GroupOffsets>,
    log: PartitionLog,
}

impl OffsetStore {
    pub fn new(log: PartitionLog, replayed: GroupOffsets) -> OffsetStore {
        OffsetStore {
            offsets: RefCell::new(replayed),
            log,
        }
    }

    /// Commits offsets durably, then makes them visible.
    pub async fn commit(
        &self,
        group: &str,
        commits: Vec<(Key, CommittedOffset)>,
    ) -> Result<(), StorageError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut builder = RecordBatchBuilder::new(commits[0].1.timestamp);
        for ((topic, partition), committed) in &commits {
            let key = format!("{group}\0{topic}\0{partition}");
            let value = serde_json::to_vec(committed).expect("offset serializes");
            builder.push(Some(key.as_bytes()), Some(&value), committed.timestamp);
        }
        let appended = self
            .log
            .append(BytesMut::from(&builder.finish()[..]), Ack::Durable)
            .await?;
        appended.wait().await?;
        let mut offsets = self.offsets.borrow_mut();
        let entries = offsets.entry(group.to_string()).or_default();
        for (key, committed) in commits {
            entries.insert(key, committed);
        }
        Ok(())
    }

    /// A group's committed offset for one partition.
    pub fn fetch(&self, group: &str, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.offsets
            .borrow()
            .get(group)?
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// Every committed offset of a group.
    pub fn fetch_all(&self, group: &str) -> Vec<(Key, CommittedOffset)> {
        let offsets = self.offsets.borrow();
        let mut all: Vec<_> = offsets
            .get(group)
            .map(|entries| {
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Reads every `__consumer_offsets-*` log under `data_dir` (valid batches only, stopping at
/// the first bad one in a segment) and keeps the newest commit per (group, topic, partition).
pub fn replay(data_dir: &Path) -> GroupOffsets {
    let mut newest: GroupOffsets = HashMap::new();
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(OFFSETS_LOG_PREFIX)
        {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        let mut logs: Vec<_> = files
            .flatten()
            .map(|f| f.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let Ok(bytes) = std::fs::read(&log) else {
                continue;
            };
            let mut at = 0;
            while let Ok(header) = BatchHeader::parse(&bytes[at..]) {
                let end = at + header.total_bytes();
                let Some(batch) = bytes.get(at..end) else {
                    break;
                };
                if protocol::record_batch::validate_batch(batch, usize::MAX).is_err() {
                    break;
                }
                if let Ok(records) = Records::new(batch) {
                    for record in records.flatten() {
                        let (Some(key), Some(value)) = (record.key, record.value) else {
                            continue;
                        };
                        let key = String::from_utf8_lossy(key);
                        let mut parts = key.split('\0');
                        let (Some(group), Some(topic), Some(partition)) =
                            (parts.next(), parts.next(), parts.next())
                        else {
                            continue;
                        };
                        let Ok(partition) = partition.parse::<i32>() else {
                            continue;
                        };
                        let Ok(committed) = serde_json::from_slice::<CommittedOffset>(value) else {
                            continue;
                        };
                        let entries = newest.entry(group.to_string()).or_default();
                        let slot = (topic.to_string(), partition);
                        if entries
                            .get(&slot)
                            .is_none_or(|existing| existing.timestamp <= committed.timestamp)
                        {
                            entries.insert(slot, committed);
                        }
                    }
                }
                at = end;
            }
        }
    }
    newest
}
