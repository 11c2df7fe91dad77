//! `PartitionLog`: one partition's log of segments, owned and driven by one shard thread.
//!
//! Appends copy validated batches into the active segment's write buffer and return at
//! once with their offsets; a flusher task (see `flusher`) writes whatever is pending as one
//! write, then one fdatasync (or, when a producer waits for durability, one O_DSYNC write
//! that is both), and answers every append the write covered (group commit). One write is
//! in flight per partition; what arrives meanwhile rides the next one.
//!
//! Durability frontiers, as offsets (each the first offset *not* covered):
//! `log_end_offset` (appended) >= `written_offset` (write completed) >= `durable_offset`
//! (fdatasync completed). Readers see up to the high watermark: the durable offset under
//! `FlushPolicy::EveryWrite`, the written offset under `FlushPolicy::OnDemand`.
//!
//! A failed write or sync takes the log offline: every waiting and later append fails with
//! `StorageError::Offline`, and nothing more is written until the log is reopened (and
//! recovered) — after a failed fdatasync the page cache can no longer be trusted.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use protocol::record_batch::{self, BatchHeader};
use protocol::records::Records;
use tokio::sync::{oneshot, Notify};

use super::clock::Clock;
use super::config::{FlushPolicy, LogConfig, READ_BYTES_MAX};
use super::error::StorageError;
use super::flusher;
use super::log_state::{register, Blocked, State};
use super::recovery::LogLoader;
use super::retention::{segments_to_delete, SegmentFacts};
use super::segment::{self, Frontier, Segment, SegmentFiles, SegmentPaths};
use super::tail_cache::TailCache;
use crate::io::Disk;

/// What an append waits for before it counts as done (the producer's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// acks=0: nothing.
    None,
    /// acks=1: the write reached the OS.
    Written,
    /// acks=all: the write and its fdatasync completed.
    Durable,
}

/// An accepted append: its offsets, and a wait for the durability it asked for.
#[derive(Debug)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    pub(super) done: Option<oneshot::Receiver<Result<(), StorageError>>>,
}

impl Appended {
    /// Resolves when the batch is as durable as its `Ack` asked.
    pub async fn wait(self) -> Result<(), StorageError> {
        match self.done {
            None => Ok(()),
            Some(receiver) => receiver.await.unwrap_or(Err(StorageError::Closed)),
        }
    }
}

/// Batches returned by a read.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    /// Whole batches, in offset order, split into chunks (each chunk whole batches).
    pub chunks: Vec<Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

impl ReadResult {
    pub fn len_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Headers of the batches returned.
    pub fn batch_headers(&self) -> Vec<BatchHeader> {
        let mut headers = Vec::new();
        for chunk in &self.chunks {
            let mut at = 0;
            while let Ok(header) = BatchHeader::parse(&chunk[at..]) {
                at += header.total_bytes();
                headers.push(header);
            }
        }
        headers
    }

    pub fn batch_count(&self) -> usize {
        self.batch_headers().len()
    }
}

/// The first record at or after a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    pub offset: i64,
    pub timestamp: i64,
}

/// All three frontiers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontiers {
    pub log_end_offset: i64,
    pub written_offset: i64,
    pub durable_offset: i64,
}

pub(super) struct Inner {
    pub disk: Disk,
    pub dir: PathBuf,
    pub config: RefCell<LogConfig>,
    pub clock: Clock,
    pub state: RefCell<State>,
    /// Wakes the flusher: something was appended or a sync is wanted.
    pub flush_wake: Rc<Notify>,
    /// Wakes appenders and others waiting for the flusher, a roll or a preallocation.
    pub progress: Rc<Notify>,
    pub shutdown: Cell<bool>,
    /// Told whenever the high watermark may have moved (long-polling fetches wait on it).
    pub data_notify: RefCell<Option<Rc<Notify>>>,
    /// Held while the stored log start offset is replaced, so that stores land in order.
    pub log_start_store: tokio::sync::Mutex<()>,
    /// The log is a follower replica's: its writes are synced on demand only, whatever the
    /// configured policy (see [`PartitionLog::set_follower`]).
    pub follower: Cell<bool>,
}

impl Inner {
    /// The flush policy in force: the configured one, or on demand for a follower's log.
    pub fn flush_policy(&self) -> FlushPolicy {
        if self.follower.get() {
            return FlushPolicy::OnDemand;
        }
        self.config.borrow().flush_policy
    }
}

/// One partition's log. Not `Send`: it lives on its owner shard's thread.
pub struct PartitionLog {
    inner: Rc<Inner>,
    flusher: Option<tokio::task::JoinHandle<()>>,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering it after a crash. Must run
    /// inside a runtime from [`crate::io::block_on`] (it spawns the flusher task).
    pub async fn open(
        disk: Disk,
        dir: PathBuf,
        config: LogConfig,
        clock: Clock,
    ) -> Result<PartitionLog, StorageError> {
        config.validate()?;
        let now_ms = clock.now_ms();
        let loaded = LogLoader {
            disk: &disk,
            dir: &dir,
            config: &config,
            now_ms,
        }
        .load()
        .await?;
        let segments = loaded.segments;
        let recycled = loaded.recycled;
        let active = segments
            .values()
            .next_back()
            .expect("loader returns a segment");
        let log_end_offset = active.appended.end_offset;
        // Records below an offset DeleteRecords moved the start to stay deleted (clamped to
        // the log end, which recovery may have cut below it under `FlushPolicy::OnDemand`).
        let first_base = *segments.keys().next().expect("loader returns a segment");
        let log_start_offset = super::log_start::load(&disk, &dir)
            .await?
            .map_or(first_base, |stored| {
                stored.clamp(first_base, log_end_offset)
            });
        let open_bases = vec![active.base_offset];
        let state = State {
            segments,
            open_bases,
            log_start_offset,
            log_end_offset,
            written_offset: log_end_offset,
            durable_offset: log_end_offset,
            written_waiters: VecDeque::new(),
            durable_waiters: VecDeque::new(),
            tail_cache: TailCache::new(config.tail_cache_bytes),
            failure: None,
            closed: false,
            rolling: false,
            preparing: false,
            prepared: None,
            recycled,
        };
        let inner = Rc::new(Inner {
            disk,
            dir,
            config: RefCell::new(config),
            clock,
            state: RefCell::new(state),
            flush_wake: Rc::new(Notify::new()),
            progress: Rc::new(Notify::new()),
            shutdown: Cell::new(false),
            data_notify: RefCell::new(None),
            log_start_store: tokio::sync::Mutex::new(()),
            follower: Cell::new(false),
        });
        let flusher = tokio::task::spawn_local(flusher::run(Rc::downgrade(&inner)));
        Ok(PartitionLog {
            inner,
            flusher: Some(flusher),
        })
    }

    /// `notify` is woken (all waiters) whenever the high watermark may have moved.
    pub fn set_data_notify(&self, notify: Rc<Notify>) {
        *self.inner.data_notify.borrow_mut() = Some(notify);
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.inner.dir
    }

    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Makes this the log of a follower replica (true) or of a leader or single broker
    /// (false). A follower's writes are not fdatasynced one by one, as Kafka's followers leave
    /// them to the OS: in a cluster acks=all means the leader fsynced the records and every
    /// in-sync replica has them, so a follower reports its log end once written, and per-write
    /// fsyncs on every replica would only load the disk the leader syncs on. It still syncs
    /// what it holds at a roll, a flush and on close. Back to the configured policy, whatever
    /// was written but not yet synced is synced at once (a new leader counts as its own log
    /// end only what is durable).
    pub fn set_follower(&self, follower: bool) {
        if self.inner.follower.replace(follower) && !follower {
            self.inner.flush_wake.notify_one();
        }
    }

    /// Bytes of recent batches kept in memory for tailing readers from now on (the oldest
    /// are forgotten at once when it holds more).
    pub fn set_tail_cache_capacity(&self, bytes: usize) {
        self.inner.state.borrow_mut().tail_cache.set_capacity(bytes);
    }

    /// Applies new settings; they take effect for the next append, roll and retention run.
    pub fn set_config(&self, config: LogConfig) -> Result<(), StorageError> {
        config.validate()?;
        *self.inner.config.borrow_mut() = config;
        Ok(())
    }

    /// Validates `batch` (one RecordBatch v2), assigns its offsets by patching its header,
    /// and queues it for the next write. Waits only when the write buffer is full or a
    /// segment roll is under way. A refused batch changes nothing.
    pub async fn append(&self, batch: BytesMut, ack: Ack) -> Result<Appended, StorageError> {
        let max_bytes = self.inner.config.borrow().max_message_bytes;
        let header = record_batch::validate_batch(&batch, max_bytes)?;
        self.append_validated(batch, header, ack).await
    }

    /// [`append`](Self::append) for a batch its caller already validated (the header is
    /// what `validate_batch` returned for exactly these bytes), so the CRC is checked once
    /// per produce. Only the cheap structural checks are repeated.
    pub async fn append_validated(
        &self,
        mut batch: BytesMut,
        header: BatchHeader,
        ack: Ack,
    ) -> Result<Appended, StorageError> {
        let config = self.config();
        debug_assert_eq!(record_batch::compute_crc(&batch), header.crc);
        if header.total_bytes() != batch.len() {
            return Err(StorageError::from(
                record_batch::BatchError::LengthMismatch {
                    declared: header.total_bytes(),
                    actual: batch.len(),
                },
            ));
        }
        if batch.len() > config.max_message_bytes {
            return Err(StorageError::from(record_batch::BatchError::TooLarge {
                bytes: batch.len(),
                max_bytes: config.max_message_bytes,
            }));
        }
        loop {
            let mut progressed = pin!(self.inner.progress.notified());
            progressed.as_mut().enable();
            let now_ms = self.inner.clock.now_ms();
            let outcome = self
                .inner
                .state
                .borrow_mut()
                .try_append(&mut batch, header, ack, &config, now_ms);
            match outcome {
                Ok(appended) => {
                    self.inner.flush_wake.notify_one();
                    self.maybe_prepare_next_segment(&config);
                    return Ok(appended);
                }
                Err(Blocked::Failed(error)) => return Err(error),
                Err(Blocked::Full) => progressed.await,
                Err(Blocked::Roll) => {
                    if self.inner.state.borrow().rolling {
                        progressed.await;
                    } else {
                        self.roll(&config).await?;
                    }
                }
            }
        }
    }

    /// Starts a new active segment at the log end offset.
    async fn roll(&self, config: &LogConfig) -> Result<(), StorageError> {
        let (base_offset, prepared) = {
            let mut state = self.inner.state.borrow_mut();
            state.rolling = true;
            (state.log_end_offset, state.prepared.take())
        };
        let now_ms = self.inner.clock.now_ms();
        let paths = SegmentPaths::for_base(&self.inner.dir, base_offset);
        let recycled = prepared.as_ref().is_some_and(|prepared| prepared.recycled);
        let segment = match prepared {
            Some(prepared) => {
                let mut segment =
                    Segment::empty(base_offset, paths, prepared.files, now_ms, config);
                segment.prepared_paths = Some(prepared.paths);
                segment.allocated_bytes = prepared.allocated_bytes;
                Ok(segment)
            }
            None => self.create_segment(paths, now_ms, config).await,
        };
        let mut state = self.inner.state.borrow_mut();
        state.rolling = false;
        self.inner.progress.notify_waiters();
        let segment = segment?;
        super::stats::count(|cells| {
            cells.segments_rolled.fetch_add(1, Ordering::Relaxed);
            cells
                .segments_recycled
                .fetch_add(u64::from(recycled), Ordering::Relaxed);
        });
        tracing::debug!(dir = %self.inner.dir.display(), base_offset, "rolled to a new segment");
        state.segments.insert(base_offset, segment);
        state.open_bases.push(base_offset);
        self.inner.flush_wake.notify_one();
        Ok(())
    }

    async fn create_segment(
        &self,
        paths: SegmentPaths,
        now_ms: i64,
        config: &LogConfig,
    ) -> Result<Segment, StorageError> {
        let files = SegmentFiles::open(&self.inner.disk, &paths, config, true).await?;
        self.inner
            .disk
            .sync_dir(&self.inner.dir)
            .await
            .map_err(|source| StorageError::io("cannot sync directory", &self.inner.dir, source))?;
        let base_offset = parse_base(&paths);
        Ok(Segment::empty(base_offset, paths, files, now_ms, config))
    }

    /// Once the active segment is half full, creates and preallocates the next one in the
    /// background, so the roll itself only renames files.
    fn maybe_prepare_next_segment(&self, config: &LogConfig) {
        let mut state = self.inner.state.borrow_mut();
        let pending_rename = state
            .open_bases
            .iter()
            .any(|base| state.segments[base].prepared_paths.is_some());
        let half_full = state.active().size_bytes() >= config.segment_bytes / 2;
        if state.preparing || state.prepared.is_some() || pending_rename || !half_full {
            return;
        }
        state.preparing = true;
        let inner = Rc::downgrade(&self.inner);
        tokio::task::spawn_local(flusher::prepare_segment(inner));
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (the first batch is
    /// whole whatever its size), all below the high watermark. Empty at the high
    /// watermark; `OffsetOutOfRange` below the log start or past the log end. A log a
    /// failed write took offline still serves what it acknowledged: the frontiers only ever
    /// moved over writes (and fdatasyncs) that completed.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, StorageError> {
        let max_bytes = max_bytes.min(READ_BYTES_MAX);
        let policy = self.inner.flush_policy();
        let (plan, mut result) = {
            let state = self.inner.state.borrow();
            if state.closed {
                return Err(StorageError::Closed);
            }
            let high_watermark = state.high_watermark(policy);
            let result = ReadResult {
                chunks: Vec::new(),
                high_watermark,
                log_start_offset: state.log_start_offset,
            };
            if offset < state.log_start_offset || offset > state.log_end_offset {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: state.log_end_offset,
                });
            }
            if offset >= high_watermark {
                return Ok(result);
            }
            if let Some(chunks) = state.tail_cache.read(offset, max_bytes, high_watermark) {
                super::stats::count(|cells| {
                    cells.cache_reads.fetch_add(1, Ordering::Relaxed);
                });
                return Ok(ReadResult { chunks, ..result });
            }
            let segment = state
                .segment_holding(offset)
                .expect("an offset below the high watermark lies in a segment");
            let start = segment.scan_start(offset);
            let plan = (
                segment.files.reader.clone(),
                start,
                segment.base_offset,
                state.readable_bytes(segment, policy),
            );
            (plan, result)
        };
        let (reader, start, base_offset, limit) = plan;
        if let Some(bytes) =
            segment::read_batches(&reader, start, base_offset, offset, max_bytes, limit).await?
        {
            super::stats::count(|cells| {
                cells.disk_reads.fetch_add(1, Ordering::Relaxed);
                cells
                    .disk_read_bytes
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            });
            result.chunks.push(bytes);
        }
        Ok(result)
    }

    /// The first record whose timestamp is at or after `timestamp`, among readable data.
    pub async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        let policy = self.inner.flush_policy();
        let candidates: Vec<_> = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            state
                .segments
                .values()
                .filter(|segment| segment.max_timestamp() >= timestamp)
                .map(|segment| {
                    let indexes = &segment.indexes;
                    let k = indexes.time_index.first_at_or_after(timestamp);
                    let start = k
                        .checked_sub(1)
                        .map(|at| indexes.offset_index.entries()[at])
                        .unwrap_or(super::offset_index::IndexEntry {
                            relative_offset: 0,
                            position: 0,
                        });
                    let limit = state.readable_bytes(segment, policy);
                    (
                        segment.files.reader.clone(),
                        segment.base_offset,
                        start,
                        limit,
                    )
                })
                .collect()
        };
        for (reader, base_offset, start, limit) in candidates {
            let mut found = None;
            let expected = base_offset + i64::from(start.relative_offset);
            segment::scan_log(
                &reader,
                u64::from(start.position),
                limit,
                expected,
                false,
                |position, header| {
                    if header.max_timestamp >= timestamp {
                        found = Some((position, *header));
                        std::ops::ControlFlow::Break(())
                    } else {
                        std::ops::ControlFlow::Continue(())
                    }
                },
            )
            .await?;
            if let Some((position, header)) = found {
                let bytes = reader
                    .read_at(header.total_bytes(), position)
                    .await
                    .map_err(|source| StorageError::io("cannot read", reader.path(), source))?;
                return Ok(Some(first_record_at_or_after(&bytes, &header, timestamp)));
            }
        }
        Ok(None)
    }

    /// Headers of the readable batches in about the last `bytes` of the active segment,
    /// oldest first (to rebuild per-producer state after a restart).
    pub async fn tail_headers(&self, bytes: u64) -> Result<Vec<BatchHeader>, StorageError> {
        let policy = self.inner.flush_policy();
        let (reader, start, base_offset, limit) = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            let active_base = *state.open_bases.last().expect("an active segment");
            let segment = &state.segments[&active_base];
            let limit = state.readable_bytes(segment, policy);
            let from = limit.saturating_sub(bytes);
            let entries = segment.indexes.offset_index.entries();
            let at = entries.partition_point(|entry| u64::from(entry.position) <= from);
            let start = at.checked_sub(1).map(|at| entries[at]).unwrap_or(
                super::offset_index::IndexEntry {
                    relative_offset: 0,
                    position: 0,
                },
            );
            (segment.files.reader.clone(), start, active_base, limit)
        };
        let mut headers = Vec::new();
        let expected = base_offset + i64::from(start.relative_offset);
        segment::scan_log(
            &reader,
            u64::from(start.position),
            limit,
            expected,
            false,
            |_, header| {
                headers.push(*header);
                std::ops::ControlFlow::Continue(())
            },
        )
        .await?;
        Ok(headers)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.state.borrow().log_start_offset
    }

    /// Why the log is offline (a write or fdatasync failed), if it is.
    pub fn offline_reason(&self) -> Option<String> {
        let state = self.inner.state.borrow();
        state.failure.as_ref().map(|failure| failure.to_string())
    }

    /// Whether the log went offline because the disk was full (ENOSPC, EDQUOT): reopening
    /// it once there is room again is safe, unlike after an I/O error.
    pub fn offline_for_space(&self) -> bool {
        let state = self.inner.state.borrow();
        state.failure.as_ref().is_some_and(|failure| {
            matches!(
                failure.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            )
        })
    }

    pub fn log_end_offset(&self) -> i64 {
        self.inner.state.borrow().log_end_offset
    }

    pub fn high_watermark(&self) -> i64 {
        let policy = self.inner.flush_policy();
        self.inner.state.borrow().high_watermark(policy)
    }

    pub fn frontiers(&self) -> Frontiers {
        let state = self.inner.state.borrow();
        Frontiers {
            log_end_offset: state.log_end_offset,
            written_offset: state.written_offset,
            durable_offset: state.durable_offset,
        }
    }

    /// Largest record timestamp in the log (-1 when empty).
    pub fn max_timestamp(&self) -> i64 {
        let state = self.inner.state.borrow();
        state
            .segments
            .values()
            .map(Segment::max_timestamp)
            .max()
            .unwrap_or(-1)
    }

    pub fn segment_count(&self) -> usize {
        self.inner.state.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<i64> {
        self.inner.state.borrow().segments.keys().copied().collect()
    }

    pub fn size_bytes(&self) -> u64 {
        self.inner
            .state
            .borrow()
            .segments
            .values()
            .map(Segment::size_bytes)
            .sum()
    }

    /// A wait for offsets already appended (up to `last_offset`) to become as durable as
    /// `ack` asks: for a retried batch that was stored before, acknowledged only when the
    /// original is.
    pub fn wait_for(&self, base_offset: i64, last_offset: i64, ack: Ack) -> Appended {
        let mut state = self.inner.state.borrow_mut();
        let done = if let Some(failure) = state.failure.clone() {
            let (reply, receiver) = oneshot::channel();
            let _ = reply.send(Err(StorageError::Offline(failure)));
            Some(receiver)
        } else {
            match ack {
                Ack::None => None,
                Ack::Written if last_offset < state.written_offset => None,
                Ack::Durable if last_offset < state.durable_offset => None,
                Ack::Written => Some(register(&mut state.written_waiters, last_offset)),
                Ack::Durable => Some(register(&mut state.durable_waiters, last_offset)),
            }
        };
        if done.is_some() {
            self.inner.flush_wake.notify_one();
        }
        Appended {
            base_offset,
            last_offset,
            done,
        }
    }

    /// Waits until everything appended so far is durable (written and fdatasync'ed).
    pub async fn flush(&self) -> Result<(), StorageError> {
        let receiver = {
            let mut state = self.inner.state.borrow_mut();
            state.check_usable()?;
            if state.durable_offset >= state.log_end_offset {
                return Ok(());
            }
            let last_offset = state.log_end_offset - 1;
            register(&mut state.durable_waiters, last_offset)
        };
        self.inner.flush_wake.notify_one();
        receiver.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Removes every batch at or after the batch holding `offset`; returns the new log end
    /// offset. Appends must not run concurrently.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, StorageError> {
        self.flush().await?;
        flusher::truncate(&self.inner, offset).await
    }

    /// Deletes closed segments past `retention.ms` / `retention.bytes`; returns how many.
    pub async fn apply_retention(&self) -> Result<usize, StorageError> {
        let config = self.config();
        let now_ms = self.inner.clock.now_ms();
        let sealed: Vec<(i64, SegmentFacts, crate::io::File)> = {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            state
                .segments
                .values()
                .map(|segment| {
                    let facts = segment.retention_facts();
                    (segment.base_offset, facts, segment.files.reader.clone())
                })
                .collect()
        };
        let mut facts = Vec::with_capacity(sealed.len());
        for (_, segment_facts, reader) in &sealed {
            let mut segment_facts = *segment_facts;
            if segment_facts.max_timestamp < 0 || segment_facts.max_timestamp > now_ms {
                segment_facts.modified_ms = reader
                    .modified_ms()
                    .await
                    .map_err(|source| StorageError::io("cannot stat", reader.path(), source))?;
            }
            facts.push(segment_facts);
        }
        let by_policy =
            segments_to_delete(&facts, config.retention_ms, config.retention_bytes, now_ms);
        // Segments wholly below the log start (DeleteRecords) go too.
        let log_start_offset = self.log_start_offset();
        let below_start = sealed
            .windows(2)
            .take_while(|pair| pair[1].0 <= log_start_offset)
            .count();
        match by_policy.max(below_start) {
            0 => Ok(0),
            count => flusher::delete_segments_below(&self.inner, sealed[count].0).await,
        }
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the high
    /// watermark), so records below it are no longer served, and deletes the segments that
    /// then hold only such records. The new start is stored durably before this returns;
    /// returns the log start offset (the low watermark), unchanged when `offset` is below it.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let policy = self.inner.flush_policy();
        let _storing = self.inner.log_start_store.lock().await;
        {
            let state = self.inner.state.borrow();
            state.check_usable()?;
            let high_watermark = state.high_watermark(policy);
            if offset < 0 || offset > high_watermark {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset: state.log_start_offset,
                    log_end_offset: high_watermark,
                });
            }
            if offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
        }
        super::log_start::store(&self.inner.disk, &self.inner.dir, offset).await?;
        {
            let mut state = self.inner.state.borrow_mut();
            state.log_start_offset = state.log_start_offset.max(offset);
        }
        tracing::info!(dir = %self.inner.dir.display(), log_start_offset = offset, "records deleted before offset");
        self.delete_segments_before(offset).await?;
        Ok(self.log_start_offset())
    }

    /// Deletes the closed segments that hold only offsets below `offset` (whose successor
    /// starts at or before it); returns how many. The active segment always stays.
    pub async fn delete_segments_before(&self, offset: i64) -> Result<usize, StorageError> {
        let bases = self.segment_bases();
        let count = bases
            .windows(2)
            .take_while(|pair| pair[1] <= offset)
            .count();
        if count == 0 {
            return Ok(0);
        }
        flusher::delete_segments_below(&self.inner, bases[count]).await
    }

    /// Flushes everything, writes the indexes, and stops the flusher.
    pub async fn close(mut self) -> Result<(), StorageError> {
        let flushed = self.flush().await;
        let closed = flusher::close(&self.inner).await;
        self.inner.shutdown.set(true);
        self.inner.flush_wake.notify_one();
        if let Some(handle) = self.flusher.take() {
            let _ = handle.await;
        }
        flushed.and(closed)
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.inner.shutdown.set(true);
        self.inner.flush_wake.notify_one();
    }
}

fn parse_base(paths: &SegmentPaths) -> i64 {
    paths
        .log
        .file_name()
        .and_then(|name| segment::parse_log_file_name(&name.to_string_lossy()))
        .expect("segment paths are named by base offset")
}

/// The first record of an uncompressed batch at or after `timestamp`; for a compressed
/// batch (or one stamped with LogAppendTime), the batch itself.
fn first_record_at_or_after(batch: &[u8], header: &BatchHeader, timestamp: i64) -> TimestampOffset {
    let whole_batch = TimestampOffset {
        offset: header.base_offset,
        timestamp: header.max_timestamp,
    };
    if header.is_log_append_time() {
        return whole_batch;
    }
    let Ok(records) = Records::new(batch) else {
        return whole_batch;
    };
    for record in records {
        match record {
            Ok(record) if record.timestamp >= timestamp => {
                return TimestampOffset {
                    offset: record.offset,
                    timestamp: record.timestamp,
                };
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    whole_batch
}

/// Frontier helper for the flusher.
pub(super) fn frontier(bytes: u64, end_offset: i64) -> Frontier {
    Frontier { bytes, end_offset }
}
