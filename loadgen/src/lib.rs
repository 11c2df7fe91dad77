//! ringlog's load generator (library part).
//!
//! Today it holds the workload payloads: [`payload::BatchTemplate`] builds RecordBatch v2
//! batches of fixed-size records whose values carry a sequence number and a send
//! timestamp, so a consumer can check that nothing was lost, duplicated or reordered and
//! measure end-to-end latency. The storage benchmarks use it to build their batches; the
//! network client and the `loadgen` binary come with the load generator issue.
//!
//! ```
//! use loadgen::payload::{BatchTemplate, RecordStamp};
//!
//! let template = BatchTemplate::new(10, 100);
//! let batch = template.batch(500, 1_700_000_000_000);
//! let stamps = RecordStamp::read_batch(&batch).unwrap();
//! assert_eq!(stamps[3], RecordStamp { sequence: 503, sent_ms: 1_700_000_000_000 });
//! ```

pub mod payload;
