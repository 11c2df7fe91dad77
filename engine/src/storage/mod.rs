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
