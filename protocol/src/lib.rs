//! Kafka wire protocol for ringlog, sans-io.
//!
//! The main types:
//! - [`record_batch::BatchHeader`]: a zero-copy, validated view of a RecordBatch v2 header
//!   (the unit the broker stores), with [`record_batch::validate_batch`] and
//!   [`record_batch::patch_base_offset`] for the produce path.
//! - [`record_batch::RecordBatchBuilder`]: builds uncompressed RecordBatch v2 bytes (tests,
//!   benchmarks, the load generator).
//! - [`records::Records`]: iterates the records of an uncompressed batch.
//! - [`ErrorCode`]: the Kafka error codes clients see.
//! - [`frame`]: length-prefixed frames, sizes checked before buffering.
//! - [`versions`]: the table of supported APIs; the `ApiVersions` answer comes from it.
//! - [`request`] / [`response`]: decoding request frames (schemas from the `kafka-protocol`
//!   crate) and encoding response frames.
//! - [`client`]: a small async client for the CLI and tests (the only I/O in this crate).
//!
//! ```
//! use protocol::record_batch::{validate_batch, RecordBatchBuilder, MAX_BATCH_BYTES};
//!
//! let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
//! builder.push(Some(b"key"), Some(b"value"), 1_700_000_000_000);
//! let bytes = builder.finish();
//! let header = validate_batch(&bytes, MAX_BATCH_BYTES).unwrap();
//! assert_eq!(header.record_count, 1);
//! ```

pub mod alloc;
pub mod client;
pub mod codec;
pub mod error_code;
pub mod frame;
pub mod partitioner;
pub mod record_batch;
pub mod records;
pub mod request;
pub mod response;
pub mod varint;
pub mod versions;

pub use kafka_protocol;

pub use error_code::ErrorCode;
