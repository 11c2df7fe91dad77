//! Committed offsets: in memory, and durable in an internal log before a commit is
//! acknowledged.
//!
//! Byte format: each commit request is one RecordBatch v2 in `__consumer_offsets-<shard>`;
//! a record's key is `group \0 topic \0 partition` and its value a JSON object
//! `{"offset","leader_epoch","metadata","timestamp"}`, or null for a deleted offset (a
//! tombstone: DeleteGroups, OffsetDelete, a deleted topic, or expiry after
//! `offsets.retention.minutes`). Crash policy: the log is a partition
//! log like any other (recovered at open); at start-up every such log in the data directory
//! is read and, per key, the commit or tombstone with the newest timestamp wins, so commits survive a
//! change of `--cores` that moves groups between shards.
//!
//! In a cluster the same records go to one partition of the replicated `__consumer_offsets`
//! topic (the group's, by its name's hash), appended by its leader like a produce with
//! acks=all: a commit is acknowledged once the ISR has it and the leader fsynced it. The
//! broker that becomes leader of such a partition reads it from its start to its end
//! before it coordinates the partition's groups ([`OffsetStore::load_replicated`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use protocol::record_batch::{BatchHeader, RecordBatchBuilder};
use protocol::records::Records;
use protocol::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::io::Disk;
use crate::partition::replica::ReplicaError;
use crate::partition::{LocalPartition, PartitionError, ValidBatch};
use crate::shard::AppendGate;
use crate::storage::{Ack, Clock, LogConfig, PartitionLog, StorageError};

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

/// Bytes read at a time while replaying an offsets log.
const REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// Most records in one batch of a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 512;

/// How long a commit in a cluster waits for the ISR (Kafka's `offsets.commit.timeout.ms`).
const REPLICATED_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why committed offsets could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the offsets partition refused the commit: {0}")]
    Partition(#[from] PartitionError),
    #[error("the offsets partition refused the commit: {0}")]
    Replica(#[from] ReplicaError),
    #[error("this broker no longer leads the group's offsets partition in epoch {0}")]
    Moved(i32),
}

impl OffsetsError {
    /// The code a group client sees, as Kafka's coordinator maps its offsets log's errors:
    /// a moved leader is NOT_COORDINATOR (find the new one), a short ISR or a timeout
    /// COORDINATOR_NOT_AVAILABLE (retry), a batch too large INVALID_COMMIT_OFFSET_SIZE.
    pub fn error_code(&self) -> ErrorCode {
        let replica = |error: &ReplicaError| match error {
            ReplicaError::NotEnoughReplicas { .. }
            | ReplicaError::NotEnoughReplicasAfterAppend { .. }
            | ReplicaError::TimedOut(_) => ErrorCode::CoordinatorNotAvailable,
            _ => ErrorCode::NotCoordinator,
        };
        let storage = |error: &StorageError| match error.error_code() {
            ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => {
                ErrorCode::InvalidCommitOffsetSize
            }
            code => code,
        };
        match self {
            OffsetsError::Storage(error) => storage(error),
            OffsetsError::Partition(PartitionError::Storage(error)) => storage(error),
            OffsetsError::Partition(PartitionError::Replica(error)) => replica(error),
            OffsetsError::Partition(PartitionError::Sequence(_)) => ErrorCode::UnknownServerError,
            OffsetsError::Replica(error) => replica(error),
            OffsetsError::Moved(_) => ErrorCode::NotCoordinator,
        }
    }
}

/// Where commits are written.
enum Backing {
    /// A single node's own log for one shard.
    Local(PartitionLog),
    /// A partition of the cluster's `__consumer_offsets`, led by this broker in `epoch`.
    Replicated {
        partition: Rc<LocalPartition>,
        gate: AppendGate,
        epoch: i32,
    },
}

/// The committed offsets of the groups one shard coordinates (on a single node), or of
/// the groups of one `__consumer_offsets` partition this broker leads (in a cluster).
pub struct OffsetStore {
    offsets: RefCell<GroupOffsets>,
    backing: Backing,
    /// Bytes the last snapshot took; the log is compacted again once it holds twice that
    /// (and more than one segment).
    snapshot_bytes: Cell<u64>,
    compacting: Cell<bool>,
}

impl OffsetStore {
    pub fn new(log: PartitionLog, replayed: GroupOffsets) -> OffsetStore {
        OffsetStore {
            offsets: RefCell::new(replayed),
            backing: Backing::Local(log),
            snapshot_bytes: Cell::new(0),
            compacting: Cell::new(false),
        }
    }

    /// The store of a `__consumer_offsets` partition this broker leads in `epoch`: every
    /// commit and tombstone in its log, from its start to its end, newest per key winning
    /// (what is above the high watermark too: the new leader's log is the one its
    /// followers will hold).
    pub async fn load_replicated(
        partition: Rc<LocalPartition>,
        gate: AppendGate,
        epoch: i32,
    ) -> Result<OffsetStore, ReplayError> {
        let mut newest = Newest::new();
        let dir = partition.log.dir().to_path_buf();
        // As a follower it wrote commits without syncing them, and its log serves only
        // what is durable: sync it all first, or the newest commits would be left out.
        partition
            .log
            .flush()
            .await
            .map_err(|source| ReplayError::Log {
                dir: dir.clone(),
                source,
            })?;
        replay_log(&partition.log, &dir, &mut newest).await?;
        Ok(OffsetStore {
            offsets: RefCell::new(live_offsets(newest)),
            backing: Backing::Replicated {
                partition,
                gate,
                epoch,
            },
            snapshot_bytes: Cell::new(0),
            compacting: Cell::new(false),
        })
    }

    /// The leader epoch a replicated store was loaded in (None on a single node).
    pub fn epoch(&self) -> Option<i32> {
        match &self.backing {
            Backing::Local(_) => None,
            Backing::Replicated { epoch, .. } => Some(*epoch),
        }
    }

    /// Compacts the log: writes every live offset again (a snapshot, each with its own
    /// commit timestamp), durably, then deletes the segments wholly before the snapshot.
    /// Tombstones are not carried over: what they deleted is absent from the snapshot, and
    /// the older segments that held it are gone. Run at start-up (so a shard's log holds
    /// only its own groups, whatever `--cores` was before) and whenever the log has rolled
    /// and doubled since the last snapshot.
    /// A replicated store is not compacted (see DESIGN: its followers would need the log
    /// start moved with it).
    pub async fn compact(&self) -> Result<(), StorageError> {
        let Backing::Local(log) = &self.backing else {
            return Ok(());
        };
        if self.compacting.replace(true) {
            return Ok(());
        }
        let result = self.write_snapshot(log).await;
        self.compacting.set(false);
        result
    }

    async fn write_snapshot(&self, log: &PartitionLog) -> Result<(), StorageError> {
        let mut entries: Vec<(String, Key, CommittedOffset)> = {
            let offsets = self.offsets.borrow();
            offsets
                .iter()
                .flat_map(|(group, entries)| {
                    entries
                        .iter()
                        .map(move |(key, c)| (group.clone(), key.clone(), c.clone()))
                })
                .collect()
        };
        entries.sort_by_key(|(_, _, committed)| committed.timestamp);
        let start = log.log_end_offset();
        let size_before = log.size_bytes();
        for chunk in entries.chunks(SNAPSHOT_BATCH_RECORDS) {
            let mut builder = RecordBatchBuilder::new(chunk[0].2.timestamp);
            for (group, (topic, partition), committed) in chunk {
                push_commit(&mut builder, group, topic, *partition, committed);
            }
            append_local(log, builder).await?;
        }
        let written = log.size_bytes().saturating_sub(size_before);
        let deleted = log.delete_segments_before(start).await?;
        self.snapshot_bytes.set(written.max(1));
        tracing::debug!(
            offsets = entries.len(),
            bytes = written,
            segments_deleted = deleted,
            "compacted the offsets log"
        );
        Ok(())
    }

    /// Compacts when the log has rolled and grown to twice its last snapshot.
    async fn maybe_compact(&self) -> Result<(), OffsetsError> {
        let Backing::Local(log) = &self.backing else {
            return Ok(());
        };
        if log.segment_count() > 1 && log.size_bytes() > 2 * self.snapshot_bytes.get() {
            self.compact().await?;
        }
        Ok(())
    }

    /// Writes one batch of commits or tombstones: fdatasync'ed on a single node; in a
    /// cluster appended as leader of the epoch the store was loaded in, then waited for
    /// until the ISR has it (as a produce with acks=all).
    async fn append_durably(&self, builder: RecordBatchBuilder) -> Result<(), OffsetsError> {
        match &self.backing {
            Backing::Local(log) => Ok(append_local(log, builder).await?),
            Backing::Replicated {
                partition,
                gate,
                epoch,
            } => {
                let bytes = BytesMut::from(&builder.finish()[..]);
                let max_bytes = partition.settings.borrow().log.max_message_bytes;
                let header = protocol::record_batch::validate_batch(&bytes, max_bytes)
                    .map_err(|error| OffsetsError::Storage(error.into()))?;
                let deadline = tokio::time::Instant::now() + REPLICATED_COMMIT_TIMEOUT;
                let appended = {
                    let _gate = gate.clone().lock_owned().await;
                    // Checked after the gate and right before the append (no await
                    // between): a store loaded in an earlier leadership never writes in a
                    // later one, whose own store may already have read past this point.
                    if partition.leader_epoch() != Some(*epoch) {
                        return Err(OffsetsError::Moved(*epoch));
                    }
                    partition
                        .append(vec![ValidBatch { bytes, header }], Ack::Durable)
                        .await?
                };
                let mut last_offset = -1;
                for wait in appended.waits {
                    last_offset = last_offset.max(wait.last_offset);
                    match tokio::time::timeout_at(deadline, wait.wait()).await {
                        Ok(done) => done?,
                        Err(_) => {
                            return Err(ReplicaError::TimedOut(REPLICATED_COMMIT_TIMEOUT).into())
                        }
                    }
                }
                partition
                    .wait_replicated(
                        last_offset,
                        appended.leader_epoch,
                        deadline,
                        REPLICATED_COMMIT_TIMEOUT,
                    )
                    .await?;
                Ok(())
            }
        }
    }

    /// Deletes committed offsets durably (tombstones), then forgets them. `keys` of `None`
    /// deletes every offset of the group. Returns what was deleted.
    pub async fn delete(
        &self,
        group: &str,
        keys: Option<Vec<Key>>,
        now_ms: i64,
    ) -> Result<Vec<Key>, OffsetsError> {
        let doomed: Vec<Key> = {
            let offsets = self.offsets.borrow();
            let Some(entries) = offsets.get(group) else {
                return Ok(Vec::new());
            };
            match keys {
                Some(keys) => keys
                    .into_iter()
                    .filter(|k| entries.contains_key(k))
                    .collect(),
                None => entries.keys().cloned().collect(),
            }
        };
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let mut builder = RecordBatchBuilder::new(now_ms);
        for (topic, partition) in &doomed {
            builder.push(
                Some(record_key(group, topic, *partition).as_bytes()),
                None,
                now_ms,
            );
        }
        self.append_durably(builder).await?;
        {
            let mut offsets = self.offsets.borrow_mut();
            if let Some(entries) = offsets.get_mut(group) {
                for key in &doomed {
                    entries.remove(key);
                }
                if entries.is_empty() {
                    offsets.remove(group);
                }
            }
        }
        self.maybe_compact().await?;
        Ok(doomed)
    }

    /// Groups with committed offsets.
    /// Waits until everything written to the offsets log is durable (commits are fsynced
    /// before they are acknowledged; this covers snapshots and tombstones at shutdown).
    pub async fn flush(&self) -> Result<(), StorageError> {
        match &self.backing {
            Backing::Local(log) => log.flush().await,
            Backing::Replicated { partition, .. } => partition.log.flush().await,
        }
    }

    pub fn groups(&self) -> Vec<String> {
        self.offsets.borrow().keys().cloned().collect()
    }

    /// Whether the group has any committed offset.
    pub fn has_group(&self, group: &str) -> bool {
        self.offsets.borrow().contains_key(group)
    }

    /// (group, its offsets of `topic`) for every group that committed to `topic`.
    pub fn committed_to(&self, topic: &str) -> Vec<(String, Vec<Key>)> {
        self.offsets
            .borrow()
            .iter()
            .map(|(group, entries)| {
                let keys: Vec<Key> = entries
                    .keys()
                    .filter(|(t, _)| t == topic)
                    .cloned()
                    .collect();
                (group.clone(), keys)
            })
            .filter(|(_, keys)| !keys.is_empty())
            .collect()
    }

    /// Groups whose newest commit is older than `cutoff_ms` (candidates for expiry).
    pub fn idle_since(&self, cutoff_ms: i64) -> Vec<String> {
        self.offsets
            .borrow()
            .iter()
            .filter(|(_, entries)| entries.values().all(|c| c.timestamp < cutoff_ms))
            .map(|(group, _)| group.clone())
            .collect()
    }

    /// Commits offsets durably, then makes them visible.
    pub async fn commit(
        &self,
        group: &str,
        commits: Vec<(Key, CommittedOffset)>,
    ) -> Result<(), OffsetsError> {
        if commits.is_empty() {
            return Ok(());
        }
        let mut builder = RecordBatchBuilder::new(commits[0].1.timestamp);
        for ((topic, partition), committed) in &commits {
            push_commit(&mut builder, group, topic, *partition, committed);
        }
        self.append_durably(builder).await?;
        {
            let mut offsets = self.offsets.borrow_mut();
            let entries = offsets.entry(group.to_string()).or_default();
            for (key, committed) in commits {
                entries.insert(key, committed);
            }
        }
        self.maybe_compact().await
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

/// Appends one batch to a single node's offsets log and waits until it is fdatasync'ed.
async fn append_local(log: &PartitionLog, builder: RecordBatchBuilder) -> Result<(), StorageError> {
    let appended = log
        .append(BytesMut::from(&builder.finish()[..]), Ack::Durable)
        .await?;
    appended.wait().await
}

/// One commit as a record: its key, its JSON value, its commit time.
fn push_commit(
    builder: &mut RecordBatchBuilder,
    group: &str,
    topic: &str,
    partition: i32,
    committed: &CommittedOffset,
) {
    let value = serde_json::to_vec(committed).expect("offset serializes");
    builder.push(
        Some(record_key(group, topic, partition).as_bytes()),
        Some(&value),
        committed.timestamp,
    );
}

fn record_key(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}\0{topic}\0{partition}")
}

/// Why the committed offsets could not be read at start-up.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot list {}: {source}", dir.display())]
    List {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the committed offsets in {}: {source}", dir.display())]
    Log {
        dir: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("cannot read the committed offsets in {}: the record at offset {offset} {reason}", dir.display())]
    Record {
        dir: PathBuf,
        offset: i64,
        reason: String,
    },
}

/// Per key: (timestamp, the commit or None for a tombstone).
type Newest = HashMap<String, HashMap<Key, (i64, Option<CommittedOffset>)>>;

/// Reads every `__consumer_offsets-*` log under `data_dir` through the storage layer (each
/// opened, so recovered and CRC-checked, as a partition log, then read from its start to
/// its end) and keeps the newest commit per (group, topic, partition). A log that cannot be
/// opened or read, or a record that is not a commit, is an error naming the log: the broker
/// must not start with committed offsets silently missing.
pub async fn replay(
    disk: &Disk,
    data_dir: &Path,
    config: &LogConfig,
) -> Result<GroupOffsets, ReplayError> {
    let mut newest = Newest::new();
    let names = disk
        .list_dir(data_dir)
        .map_err(|source| ReplayError::List {
            dir: data_dir.to_path_buf(),
            source,
        })?;
    let mut dirs: Vec<PathBuf> = names
        .iter()
        .filter(|name| name.starts_with(OFFSETS_LOG_PREFIX))
        .map(|name| data_dir.join(name))
        .collect();
    dirs.sort();
    for dir in dirs {
        let failed = |source| ReplayError::Log {
            dir: dir.clone(),
            source,
        };
        let log = PartitionLog::open(disk.clone(), dir.clone(), config.clone(), Clock::system())
            .await
            .map_err(failed)?;
        let read = replay_log(&log, &dir, &mut newest).await;
        log.close().await.map_err(failed)?;
        read?;
    }
    Ok(live_offsets(newest))
}

/// The live commits of `newest` (tombstones dropped), by group.
fn live_offsets(newest: Newest) -> GroupOffsets {
    newest
        .into_iter()
        .map(|(group, entries)| {
            let live: HashMap<Key, CommittedOffset> = entries
                .into_iter()
                .filter_map(|(key, (_, committed))| committed.map(|c| (key, c)))
                .collect();
            (group, live)
        })
        .filter(|(_, entries)| !entries.is_empty())
        .collect()
}

/// Every record of one offsets log into `newest`.
async fn replay_log(
    log: &PartitionLog,
    dir: &Path,
    newest: &mut Newest,
) -> Result<(), ReplayError> {
    let failed = |source| ReplayError::Log {
        dir: dir.to_path_buf(),
        source,
    };
    let mut offset = log.log_start_offset();
    let end = log.high_watermark();
    while offset < end {
        let read = log.read(offset, REPLAY_READ_BYTES).await.map_err(failed)?;
        let batches = read.batch_headers();
        if batches.is_empty() {
            break;
        }
        for chunk in &read.chunks {
            let mut at = 0;
            while at < chunk.len() {
                let header =
                    BatchHeader::parse(&chunk[at..]).map_err(|error| failed(error.into()))?;
                let batch = &chunk[at..at + header.total_bytes()];
                let records = Records::new(batch).map_err(|error| ReplayError::Record {
                    dir: dir.to_path_buf(),
                    offset: header.base_offset,
                    reason: error.to_string(),
                })?;
                for record in records {
                    let record = record.map_err(|error| ReplayError::Record {
                        dir: dir.to_path_buf(),
                        offset: header.base_offset,
                        reason: error.to_string(),
                    })?;
                    if record.offset < log.log_start_offset() {
                        continue;
                    }
                    note_record(newest, &record).map_err(|reason| ReplayError::Record {
                        dir: dir.to_path_buf(),
                        offset: record.offset,
                        reason,
                    })?;
                }
                at += header.total_bytes();
            }
        }
        offset = batches.last().expect("batches read").last_offset() + 1;
    }
    Ok(())
}

/// One commit or tombstone record: the newest per key wins.
fn note_record(newest: &mut Newest, record: &protocol::records::Record<'_>) -> Result<(), String> {
    let key = record.key.ok_or("has no key")?;
    let key = std::str::from_utf8(key).map_err(|_| "has a key that is not text".to_string())?;
    let mut parts = key.split('\0');
    let (Some(group), Some(topic), Some(partition)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("has the key {key:?}, not group/topic/partition"));
    };
    let partition: i32 = partition
        .parse()
        .map_err(|_| format!("has the partition {partition:?} in its key"))?;
    let (timestamp, committed) = match record.value {
        None => (record.timestamp, None),
        Some(value) => {
            let committed: CommittedOffset = serde_json::from_slice(value)
                .map_err(|error| format!("is not a commit: {error}"))?;
            (committed.timestamp, Some(committed))
        }
    };
    let entries = newest.entry(group.to_string()).or_default();
    let slot = (topic.to_string(), partition);
    if entries
        .get(&slot)
        .is_none_or(|(existing, _)| *existing <= timestamp)
    {
        entries.insert(slot, (timestamp, committed));
    }
    Ok(())
}
