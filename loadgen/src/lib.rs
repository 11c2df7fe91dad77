//! ringlog's load generator: its own Kafka client on the `protocol` crate, built for rate,
//! and the measurements around it.
//!
//! - [`payload`]: batches filled from a layout encoded once, every value stamped with
//!   producer, sequence and intended send time.
//!
//! ```
//! use loadgen::payload::{BatchTemplate, RecordStamp};
//!
//! let template = BatchTemplate::new(10, 100);
//! let batch = template.batch(500, 1_700_000_000_000);
//! let stamps = RecordStamp::read_batch(&batch).unwrap();
//! assert_eq!(stamps[3].sequence, 503);
//! assert_eq!(stamps[3].sent_us, 1_700_000_000_000_000);
//! ```

pub mod consumer;
pub mod disk;
pub mod group;
pub mod payload;
pub mod producer;
pub mod report;
pub mod result;
pub mod run;
pub mod stats;
pub mod timer;
pub mod wire;
pub mod workload;
