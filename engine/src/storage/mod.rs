//! The storage engine: one [`PartitionLog`] per partition, a log of segments.
//!
//! - [`segment`]: a `.log` of RecordBatch v2 bytes with its sparse [`offset_index`] and
//!   [`time_index`], named by base offset.
//! - [`partition_log`]: appends (offset assignment, group commit), reads, timestamps,
//!   truncation, retention; [`flusher`] is its single writer task.
//! - [`recovery`]: the start-up scan that truncates torn tails and rebuilds indexes.
//! - [`retention`]: which closed segments to delete, as a pure predicate.
//! - [`log_start`]: the log start offset DeleteRecords moved, kept across restarts.
//!
//! See DESIGN.md ("Storage") for the on-disk layout and the durability rules.

pub mod clock;
pub mod config;
pub mod error;
mod flusher;
pub mod log_start;
mod log_state;
pub mod offset_index;
pub mod partition_log;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod stats;
pub mod tail_cache;
pub mod time_index;
pub mod write_buffer;

pub use clock::Clock;
pub use config::{FlushPolicy, LogConfig, Preallocation, WriteMode};
pub use error::StorageError;
pub use partition_log::{Ack, Appended, Frontiers, PartitionLog, ReadResult, TimestampOffset};

/// A small metadata file parsed by `parse`: `None` when it does not exist; an unreadable or
/// unparsable one is an error naming the file.
pub async fn read_metadata_file<T>(
    disk: &crate::io::Disk,
    path: &std::path::Path,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, StorageError> {
    let Some(bytes) = disk
        .read_small_file(path)
        .await
        .map_err(|source| StorageError::io("cannot read", path, source))?
    else {
        return Ok(None);
    };
    parse(&bytes)
        .map(Some)
        .map_err(|reason| StorageError::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            reason,
        })
}
