//! Per-partition log settings, named after Kafka's topic configs where one exists.

use super::error::StorageError;

/// How segment space is reserved ahead of the write position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    /// Write zeros ahead, in small steps each followed by its own fdatasync: the data
    /// writes that follow find the blocks already written, so their syncs commit no extent
    /// conversion, at the price of writing every block twice. Steps grow with the data the
    /// segment holds from 1 to 4 MiB; half a step is kept ahead until the segment holds
    /// four steps, then four steps, so a quiet partition reserves at most a step beyond its
    /// data. It was the default while a durable round was a write and then an fdatasync
    /// (results/preallocation.md: p99 0.76x of fallocate's); with a round as one O_DSYNC
    /// write it lost to fallocate in every pair (results/preallocation-dsync).
    ZeroFill,
    /// fallocate ahead (the default) in steps that grow with the segment up to
    /// `preallocate_step_bytes`: reserves space without writing it, so every block is
    /// written once; each durable write converts the unwritten extents it covers, in the
    /// inode block its sync writes anyway for the file's mtime. Against zero-fill, 6
    /// alternating pairs at 1M msg/s durable: produce p99 median 1.93 vs 2.95 ms (lower in
    /// every pair), p50 1.10 vs 0.97 ms; maximum rate 1.10x, the disk written half as much
    /// (results/preallocation-dsync). Segments recycled by retention are already written.
    Fallocate,
    /// Let the file grow with each write.
    None,
}

impl std::str::FromStr for Preallocation {
    type Err = String;

    fn from_str(name: &str) -> Result<Preallocation, String> {
        match name {
            "zero-fill" => Ok(Preallocation::ZeroFill),
            "fallocate" => Ok(Preallocation::Fallocate),
            "none" => Ok(Preallocation::None),
            other => Err(format!(
                "preallocation '{other}': expected zero-fill, fallocate or none"
            )),
        }
    }
}

/// How log bytes reach the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// O_DIRECT: 4 KiB-aligned writes from aligned buffers; the partial last block is
    /// written again by the next write.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// When the log fdatasyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// After every write (group-committed): the high watermark is the fsynced offset, so
    /// consumers never see data a crash could take back.
    EveryWrite,
    /// Only when an `Ack::Durable` append waits, and at segment roll; the high watermark is
    /// the written offset (Kafka's default, `flush.messages` unset).
    OnDemand,
}

/// Largest segment: positions in the sparse index are u32, and Kafka's `segment.bytes` is
/// an int.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Largest read a single `read` call will allocate for.
pub const READ_BYTES_MAX: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll a non-empty active segment this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: one sparse index entry per this many log bytes.
    pub index_interval_bytes: u32,
    /// `retention.ms`; `None` keeps data forever.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`; `None` means unlimited.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    pub preallocation: Preallocation,
    /// Space is reserved ahead of the write position in steps that grow with what the
    /// segment holds, from 1 MiB up to this size.
    pub preallocate_step_bytes: u64,
    pub write_mode: WriteMode,
    pub flush_policy: FlushPolicy,
    /// Most bytes handed to one write; appends beyond it wait for the write in flight.
    pub write_buffer_bytes: usize,
    /// Recent batches kept in memory for tailing readers (O_DIRECT writes bypass the page
    /// cache, so without it every tailing fetch would hit the disk).
    pub tail_cache_bytes: usize,
    /// Segments deleted by retention are kept (renamed) for reuse as new segments, up to
    /// this many per partition: their blocks are already written, so appends into them
    /// need neither preallocation nor unwritten-extent conversion at fdatasync.
    pub recycle_segments_max: usize,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1024 * 1024 + 12,
            preallocation: Preallocation::Fallocate,
            preallocate_step_bytes: 32 * 1024 * 1024,
            write_mode: WriteMode::Direct,
            flush_policy: FlushPolicy::EveryWrite,
            write_buffer_bytes: 1024 * 1024,
            tail_cache_bytes: 1024 * 1024,
            recycle_segments_max: 2,
        }
    }
}

impl LogConfig {
    /// Checks the settings hang together; the message names the setting at fault.
    pub fn validate(&self) -> Result<(), StorageError> {
        let fail = |message: String| Err(StorageError::InvalidConfig(message));
        if self.segment_bytes < 14 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return fail(format!(
                "segment.bytes {} must be between 14 and {SEGMENT_BYTES_MAX}",
                self.segment_bytes
            ));
        }
        if self.segment_ms < 1 {
            return fail(format!("segment.ms {} must be at least 1", self.segment_ms));
        }
        if self.index_interval_bytes == 0 {
            return fail("index.interval.bytes must be at least 1".into());
        }
        if self.max_message_bytes < protocol::record_batch::HEADER_BYTES
            || self.max_message_bytes > protocol::record_batch::MAX_BATCH_BYTES
        {
            return fail(format!(
                "max.message.bytes {} must be between {} and {}",
                self.max_message_bytes,
                protocol::record_batch::HEADER_BYTES,
                protocol::record_batch::MAX_BATCH_BYTES
            ));
        }
        if self.preallocate_step_bytes == 0 {
            return fail("preallocate step must be at least 1 byte".into());
        }
        if matches!(self.retention_ms, Some(ms) if ms < 0) {
            return fail("retention.ms must be -1 (unlimited) or at least 0".into());
        }
        Ok(())
    }

    /// Capacity of a write buffer: room for the largest batch plus a partial block.
    pub fn write_buffer_capacity(&self) -> usize {
        self.write_buffer_bytes
            .max(self.max_message_bytes + 2 * crate::io::BLOCK_BYTES)
    }
}
