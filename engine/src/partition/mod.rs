//! `LocalPartition`: one partition on its owner shard — its log, its topic settings, and the
//! state of its idempotent producers. Only the owner shard touches it (it is not `Send`).
//!
//! Appending is the one place where producer state and the log change together: each
//! batch's sequence is checked against the producer's history, new batches are appended and
//! recorded, and a retry of a batch already stored is answered with the original's offset
//! once the original is as durable as the retry asks.

pub mod dir;
pub mod epochs;
pub mod offline;
pub mod producers;
pub mod replica;

use std::cell::{Cell, RefCell, RefMut};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::BytesMut;
use protocol::record_batch::BatchHeader;
use protocol::ErrorCode;
use tokio::sync::Notify;

use crate::io::Disk;
use crate::storage::{Ack, Appended, Clock, PartitionLog, StorageError};
use crate::topic_config::TopicSettings;
use epochs::EpochCache;
use producers::{ProducerStates, SequenceCheck, SequenceError};
use replica::{ReplicaError, Role};

/// Bytes at the end of a log read back to rebuild producer state after opening.
const PRODUCER_STATE_REBUILD_BYTES: u64 = 1024 * 1024;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

impl PartitionError {
    /// The Kafka error code a client sees.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            PartitionError::Storage(error) => error.error_code(),
            PartitionError::Sequence(error) => error.error_code(),
            PartitionError::Replica(error) => error.error_code(),
        }
    }
}

/// A batch checked by its caller and ready to append: its bytes and the header
/// `validate_batch` returned for exactly these bytes.
pub struct ValidBatch {
    pub bytes: BytesMut,
    pub header: BatchHeader,
}

/// What one append of a request's batches to a partition did.
pub struct AppendedBatches {
    /// Offset of the first batch (for a retried batch, the original's), -1 when empty.
    pub base_offset: i64,
    /// One wait per batch for the durability the producer asked for.
    pub waits: Vec<Appended>,
    /// Records and bytes newly stored (retries not counted).
    pub records: u64,
    pub bytes: u64,
    /// The leader epoch they were appended in (None on a single node): acks=all waits
    /// for the ISR in that epoch.
    pub leader_epoch: Option<i32>,
}

/// A partition log this shard owns, with its topic settings and idempotent producers.
pub struct LocalPartition {
    pub log: PartitionLog,
    pub settings: RefCell<TopicSettings>,
    pub topic_id: uuid::Uuid,
    /// Loaded from the log's tail on the first idempotent batch after opening.
    producers: RefCell<Option<ProducerStates>>,
    disk: Disk,
    /// This broker's id (its replica id in a cluster).
    node_id: i32,
    role: RefCell<Role>,
    /// The replicated high watermark (unused on a single node).
    high_watermark: Cell<i64>,
    /// Woken when the high watermark or the role changes (acks=all waits on it).
    hw_moved: Rc<Notify>,
    /// Woken when readers may see more (long-polling fetches wait on it).
    data_arrived: Rc<Notify>,
    epochs: RefCell<EpochCache>,
}

/// Where a partition is opened: on a single node, or as a replica of a cluster (which
/// serves nothing until the controller's view gives it its part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    Single,
    Cluster { node_id: i32 },
}

impl LocalPartition {
    /// Opens (and so recovers) the partition's log in `dir`; `data_arrived` is told whenever
    /// its high watermark may have moved.
    pub async fn open(
        disk: Disk,
        dir: PathBuf,
        settings: TopicSettings,
        topic_id: uuid::Uuid,
        data_arrived: Rc<Notify>,
        replication: Replication,
    ) -> Result<LocalPartition, StorageError> {
        let log =
            PartitionLog::open(disk.clone(), dir, settings.log.clone(), Clock::system()).await?;
        log.set_data_notify(data_arrived.clone());
        let (role, node_id, epochs) = match replication {
            Replication::Single => (Role::Single, -1, EpochCache::default()),
            Replication::Cluster { node_id } => {
                let epochs = EpochCache::load(&disk, log.dir(), log.log_end_offset()).await?;
                (Role::Waiting, node_id, epochs)
            }
        };
        let high_watermark = Cell::new(log.log_start_offset());
        Ok(LocalPartition {
            log,
            settings: RefCell::new(settings),
            topic_id,
            producers: RefCell::new(None),
            disk,
            node_id,
            role: RefCell::new(role),
            high_watermark,
            hw_moved: Rc::new(Notify::new()),
            data_arrived,
            epochs: RefCell::new(epochs),
        })
    }

    /// Appends a request's batches for this partition in order. A batch from an idempotent
    /// producer is checked against its sequence history first: a retry of a stored batch is
    /// not written again, a batch out of order or from a fenced epoch stops the append.
    pub async fn append(
        &self,
        batches: Vec<ValidBatch>,
        ack: Ack,
    ) -> Result<AppendedBatches, PartitionError> {
        let leader_epoch = self.epoch_for_append(ack)?;
        let mut appended = AppendedBatches {
            base_offset: -1,
            waits: Vec::with_capacity(batches.len()),
            records: 0,
            bytes: 0,
            leader_epoch,
        };
        for ValidBatch {
            mut bytes,
            mut header,
        } in batches
        {
            if let Some(epoch) = leader_epoch {
                replica::stamp_epoch(&mut bytes, &mut header, epoch);
            }
            if header.producer_id >= 0 {
                if let SequenceCheck::Duplicate { base_offset } =
                    self.producers().await?.check(&header)?
                {
                    let last_offset = base_offset + i64::from(header.last_offset_delta);
                    appended
                        .waits
                        .push(self.log.wait_for(base_offset, last_offset, ack));
                    continue;
                }
            }
            let batch_bytes = bytes.len() as u64;
            let stored = self.log.append_validated(bytes, header, ack).await?;
            appended.records += u64::from(header.record_count.max(0) as u32);
            appended.bytes += batch_bytes;
            if header.producer_id >= 0 {
                self.producers().await?.record(&header, stored.base_offset);
            }
            appended.waits.push(stored);
        }
        appended.base_offset = appended.waits.first().map_or(-1, |wait| wait.base_offset);
        Ok(appended)
    }

    /// The producer state, rebuilt from the log tail if this is its first use.
    async fn producers(&self) -> Result<RefMut<'_, ProducerStates>, StorageError> {
        if self.producers.borrow().is_none() {
            let mut states = ProducerStates::new();
            for header in self.log.tail_headers(PRODUCER_STATE_REBUILD_BYTES).await? {
                states.record(&header, header.base_offset);
            }
            let mut slot = self.producers.borrow_mut();
            if slot.is_none() {
                *slot = Some(states);
            }
        }
        Ok(RefMut::map(self.producers.borrow_mut(), |slot| {
            slot.as_mut().expect("loaded above")
        }))
    }
}
