//! Helpers shared by the storage tests: batches, backends, and whole-log reads.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use engine::io::sim::{SimDisk, SimRng};
use engine::io::{self, Backend, Disk};
use engine::storage::{Clock, LogConfig, PartitionLog, WriteMode};
use protocol::record_batch::{BatchHeader, RecordBatchBuilder};

/// Where a test's log lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Real files through io_uring, O_DIRECT writes.
    UringDirect,
    /// Real files through io_uring, buffered writes.
    UringBuffered,
    /// Real files through the portable backend.
    Portable,
    /// The simulated disk.
    Sim,
}

pub const EVERY_PLACE: [Place; 4] = [
    Place::UringDirect,
    Place::UringBuffered,
    Place::Portable,
    Place::Sim,
];

/// A test environment: a disk, a directory on it, and a config for the place.
pub struct Env {
    pub place: Place,
    pub disk: Disk,
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Env {
    pub fn new(place: Place) -> Env {
        match place {
            Place::Sim => Env {
                place,
                disk: Disk::Sim(SimDisk::new()),
                dir: PathBuf::from("/sim/topic-0"),
                _temp: None,
            },
            _ => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().join("topic-0");
                let disk = Disk::new(backend(place));
                Env {
                    place,
                    disk,
                    dir,
                    _temp: Some(temp),
                }
            }
        }
    }

    pub fn config(&self) -> LogConfig {
        LogConfig {
            write_mode: if self.place == Place::UringBuffered {
                WriteMode::Buffered
            } else {
                WriteMode::Direct
            },
            preallocate_step_bytes: 64 * 1024,
            ..LogConfig::default()
        }
    }

    pub fn run<F: Future>(&self, future: F) -> F::Output {
        io::block_on(backend(self.place), future).expect("runtime starts")
    }

    pub async fn open(&self, config: LogConfig, clock: Clock) -> PartitionLog {
        PartitionLog::open(self.disk.clone(), self.dir.clone(), config, clock)
            .await
            .unwrap_or_else(|error| panic!("{:?}: open failed: {error}", self.place))
    }

    pub fn sim(&self) -> &SimDisk {
        match &self.disk {
            Disk::Sim(sim) => sim,
            _ => panic!("not a simulated disk"),
        }
    }

    /// Current bytes of a file in the log directory.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        match &self.disk {
            Disk::Sim(sim) => sim.file_bytes(&path),
            _ => std::fs::read(&path).ok(),
        }
    }

    /// Replaces a file in the log directory (to damage it).
    pub fn write_file(&self, name: &str, bytes: Vec<u8>) {
        let path = self.dir.join(name);
        match &self.disk {
            Disk::Sim(sim) => sim.replace_file_bytes(&path, bytes),
            _ => std::fs::write(&path, bytes).expect("write file"),
        }
    }

    pub fn remove_file(&self, name: &str) {
        let path = self.dir.join(name);
        match &self.disk {
            Disk::Sim(sim) => sim.replace_file_bytes(&path, Vec::new()),
            _ => std::fs::remove_file(&path).expect("remove file"),
        }
    }

    pub fn file_names(&self) -> Vec<String> {
        let mut names = self.disk.list_dir(&self.dir).expect("list dir");
        names.sort();
        names
    }
}

fn backend(place: Place) -> Backend {
    match place {
        Place::UringDirect | Place::UringBuffered => Backend::Uring,
        Place::Portable | Place::Sim => Backend::Portable,
    }
}

pub const T0: i64 = 1_700_000_000_000;

/// A batch of `records` records of `value_bytes` bytes each; values encode `tag` and the
/// record index so every record is distinct.
pub fn batch(tag: u64, records: usize, value_bytes: usize, timestamp: i64) -> Vec<u8> {
    let mut builder = RecordBatchBuilder::new(timestamp);
    for i in 0..records {
        let mut value = format!("{tag}:{i}:").into_bytes();
        value.resize(value_bytes.max(value.len()), b'x');
        let key = format!("key-{}", i % 7);
        builder.push(Some(key.as_bytes()), Some(&value), timestamp + i as i64);
    }
    builder.finish()
}

pub fn bytes_mut(batch: &[u8]) -> BytesMut {
    BytesMut::from(batch)
}

/// The batch as the log stores it: base offset patched.
pub fn stored(batch: &[u8], base_offset: i64) -> Vec<u8> {
    let mut stored = batch.to_vec();
    protocol::record_batch::patch_base_offset(&mut stored, base_offset);
    stored
}

/// Splits read chunks into (base offset, batch bytes).
pub fn split_batches(chunks: &[bytes::Bytes]) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in chunks {
        let mut at = 0;
        while at < chunk.len() {
            let header = BatchHeader::parse(&chunk[at..]).expect("reads return whole batches");
            let end = at + header.total_bytes();
            out.push((header.base_offset, chunk[at..end].to_vec()));
            at = end;
        }
    }
    out
}

/// Every batch from the log start to the high watermark.
pub async fn read_everything(log: &PartitionLog) -> Vec<(i64, Vec<u8>)> {
    let mut offset = log.log_start_offset();
    let high_watermark = log.high_watermark();
    let mut out = Vec::new();
    while offset < high_watermark {
        let read = log.read(offset, 64 * 1024).await.expect("read");
        let batches = split_batches(&read.chunks);
        assert!(
            !batches.is_empty(),
            "read at {offset} below the high watermark {high_watermark} returned nothing"
        );
        for (base, bytes) in batches {
            let header = BatchHeader::parse(&bytes).unwrap();
            assert!(
                header.base_offset <= offset || out.is_empty() || base == offset,
                "batches are contiguous"
            );
            offset = header.last_offset() + 1;
            out.push((base, bytes));
        }
    }
    out
}

pub fn rng(seed: u64) -> SimRng {
    SimRng::new(seed)
}

pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Appends with `Ack::Durable`, waits for the ack, returns the base offset.
pub async fn append_durable(log: &PartitionLog, batch: &[u8]) -> i64 {
    let appended = log
        .append(bytes_mut(batch), engine::storage::Ack::Durable)
        .await
        .expect("append");
    let base_offset = appended.base_offset;
    appended.wait().await.expect("durable ack");
    base_offset
}
