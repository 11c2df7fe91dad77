//! ringlog's broker engine.
//!
//! The storage half lives in [`storage`]: a [`storage::PartitionLog`] is one partition's log
//! of segments, owned by one shard thread, written through [`io`] (io_uring by default).
//!
//! ```
//! use engine::io::{self, Backend, Disk};
//! use engine::storage::{Ack, Clock, LogConfig, PartitionLog};
//! use protocol::record_batch::RecordBatchBuilder;
//!
//! io::block_on(Backend::Uring, async {
//!     let temp = tempfile::tempdir().unwrap();
//!     let dir = temp.path().join("payments-0");
//!     let log = PartitionLog::open(Disk::new(Backend::Uring), dir, LogConfig::default(), Clock::system())
//!         .await
//!         .unwrap();
//!     let mut batch = RecordBatchBuilder::new(1_700_000_000_000);
//!     batch.push(Some(b"key"), Some(b"value"), 1_700_000_000_000);
//!     let appended = log.append(batch.finish().as_slice().into(), Ack::Durable).await.unwrap();
//!     let offset = appended.base_offset;
//!     appended.wait().await.unwrap(); // written and fdatasync'ed
//!     let read = log.read(offset, 1 << 20).await.unwrap();
//!     assert_eq!(read.batch_count(), 1);
//!     log.close().await.unwrap();
//! })
//! .unwrap();
//! ```

pub mod api;
pub mod broker_config;
pub mod catalog;
pub mod cluster;
pub mod config;
pub mod group;
pub mod io;
pub mod metrics;
pub mod partition;
pub mod replication;
pub mod server;
pub mod shard;
pub mod storage;
pub mod topic_config;
