//! `State`: the in-memory state of a partition log, shared by its appenders, readers and
//! flusher on the owner shard (behind a `RefCell`, never borrowed across an await).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use protocol::record_batch::{self, BatchHeader};
use tokio::sync::oneshot;

use super::config::{FlushPolicy, LogConfig};
use super::error::StorageError;
use super::partition_log::{Ack, Appended};
use super::segment::{Segment, SegmentFiles, SegmentPaths};
use super::tail_cache::TailCache;

pub(super) struct Waiter {
    pub last_offset: i64,
    pub reply: oneshot::Sender<Result<(), StorageError>>,
}

/// A segment made ahead of its roll (files under `prepared.*`, first space reserved).
pub(super) struct PreparedSegment {
    pub paths: SegmentPaths,
    pub files: SegmentFiles,
    pub allocated_bytes: u64,
    /// The log file is a recycled segment's (blocks written before).
    pub recycled: bool,
}

pub(super) struct State {
    pub segments: BTreeMap<i64, Segment>,
    /// Bases of segments not yet sealed, oldest first; the last is the active segment.
    pub open_bases: Vec<i64>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub written_offset: i64,
    pub durable_offset: i64,
    pub written_waiters: VecDeque<Waiter>,
    pub durable_waiters: VecDeque<Waiter>,
    pub tail_cache: TailCache,
    pub failure: Option<Arc<StorageError>>,
    pub closed: bool,
    pub rolling: bool,
    pub preparing: bool,
    pub prepared: Option<PreparedSegment>,
    /// Log files of deleted segments, kept for reuse (at most `recycle_segments_max`).
    pub recycled: Vec<PathBuf>,
}

pub(super) enum Blocked {
    /// The active segment must roll first.
    Roll,
    /// The write buffer is full: wait for the write in flight.
    Full,
    Failed(StorageError),
}

impl State {
    pub fn active(&mut self) -> &mut Segment {
        let base = *self
            .open_bases
            .last()
            .expect("a log always has an active segment");
        self.segments.get_mut(&base).expect("open segment exists")
    }

    pub fn check_usable(&self) -> Result<(), StorageError> {
        if let Some(failure) = &self.failure {
            return Err(StorageError::Offline(failure.clone()));
        }
        if self.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    pub fn high_watermark(&self, policy: FlushPolicy) -> i64 {
        match policy {
            FlushPolicy::EveryWrite => self.durable_offset,
            FlushPolicy::OnDemand => self.written_offset,
        }
    }

    pub(super) fn try_append(
        &mut self,
        batch: &mut BytesMut,
        mut header: BatchHeader,
        ack: Ack,
        config: &LogConfig,
        now_ms: i64,
    ) -> Result<Appended, Blocked> {
        self.check_usable().map_err(Blocked::Failed)?;
        let base_offset = self.log_end_offset;
        let active = self.active();
        let len = batch.len() as u64;
        let relative_end = base_offset - active.base_offset + i64::from(header.last_offset_delta);
        let needs_roll = !active.is_empty()
            && (active.size_bytes() + len > config.segment_bytes
                || now_ms - active.created_ms >= config.segment_ms
                || relative_end > i64::from(u32::MAX));
        if needs_roll {
            return Err(Blocked::Roll);
        }
        record_batch::patch_base_offset(batch, base_offset);
        header.base_offset = base_offset;
        if !active.try_append(batch, &header) {
            return Err(Blocked::Full);
        }
        let last_offset = header.last_offset();
        self.log_end_offset = last_offset + 1;
        let bytes = std::mem::take(batch).freeze();
        self.tail_cache.push(base_offset, last_offset, bytes);
        let done = match ack {
            Ack::None => None,
            Ack::Written => Some(register(&mut self.written_waiters, last_offset)),
            Ack::Durable => Some(register(&mut self.durable_waiters, last_offset)),
        };
        Ok(Appended {
            base_offset,
            last_offset,
            done,
        })
    }

    /// Takes the log offline: every waiting append fails.
    pub fn fail(&mut self, error: StorageError) {
        tracing::error!(%error, "partition log failed; it is offline until reopened");
        let failure = Arc::new(error);
        self.failure = Some(failure.clone());
        for waiter in self
            .written_waiters
            .drain(..)
            .chain(self.durable_waiters.drain(..))
        {
            let _ = waiter
                .reply
                .send(Err(StorageError::Offline(failure.clone())));
        }
    }

    /// Answers the waiters whose batches the frontiers now cover.
    pub fn resolve_waiters(&mut self) {
        resolve(&mut self.written_waiters, self.written_offset);
        resolve(&mut self.durable_waiters, self.durable_offset);
    }

    /// The segment holding `offset`, or the first one after it for an offset at a segment's
    /// end.
    pub fn segment_holding(&self, offset: i64) -> Option<&Segment> {
        self.segments
            .range(..=offset)
            .next_back()
            .map(|(_, segment)| segment)
            .filter(|segment| offset < segment.appended.end_offset)
            .or_else(|| {
                self.segments
                    .range(offset + 1..)
                    .next()
                    .map(|(_, segment)| segment)
            })
    }

    /// Bytes of `segment` readers may see.
    pub(super) fn readable_bytes(&self, segment: &Segment, policy: FlushPolicy) -> u64 {
        if segment.is_sealed() {
            return segment.appended.bytes;
        }
        match policy {
            FlushPolicy::EveryWrite => segment.durable.bytes,
            FlushPolicy::OnDemand => segment.written.bytes,
        }
    }
}

pub(super) fn register(
    waiters: &mut VecDeque<Waiter>,
    last_offset: i64,
) -> oneshot::Receiver<Result<(), StorageError>> {
    let (reply, receiver) = oneshot::channel();
    waiters.push_back(Waiter { last_offset, reply });
    receiver
}

fn resolve(waiters: &mut VecDeque<Waiter>, frontier: i64) {
    while waiters
        .front()
        .is_some_and(|waiter| waiter.last_offset < frontier)
    {
        let waiter = waiters.pop_front().expect("checked");
        let _ = waiter.reply.send(Ok(()));
    }
}
