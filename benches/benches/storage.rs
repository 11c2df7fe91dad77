//! Storage engine benchmarks, each next to a raw baseline measured in the same run.
//!
//! - `append_fsync/*`, `append_nosync/*`: one batch at a time (append, wait for the ack,
//!   next), batches of 1, 16, 64 and 256 KiB of 100-byte records. `raw` is plain sequential
//!   io_uring `write_at` (+ fdatasync) of the same bytes, O_DIRECT, to a zero-filled
//!   preallocated file on the same filesystem; `engine` is `PartitionLog::append` with
//!   `Ack::Durable` (fsync) or `Ack::Written` (nosync). engine/raw is the figure of merit.
//!   The engine runs as a broker would in steady state: 64 MiB segments, retention keeping
//!   128 MiB, deleted segments recycled; every log is warmed through a few segment lifetimes
//!   before measuring.
//! - `append_fsync_64k_variants/*`: the choices behind the defaults, at 64 KiB: O_DIRECT vs
//!   buffered writes, recycled segments vs zero-fill vs fallocate vs no preallocation, and a
//!   buffered raw write.
//! - `group_commit/*`: 1 KiB batches with 64 appends in flight, fsync: how far group commit
//!   carries small batches.
//! - `index_lookup`: sparse offset index lookup in a full 1 GiB segment's index.
//! - `recovery_1gib/*`: reopening a 1 GiB segment: normal restart (scan from the last index
//!   entry) and with the indexes deleted (full scan and CRC check), page cache dropped first
//!   when the process may do so.
//!
//! Data goes to a temporary directory under `RINGLOG_BENCH_DIR` (default: the current
//! directory's `target/`), so it lands on the disk under test, not on a tmpfs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::io::{AlignedBuf, Disk, File, OpenOptions, BLOCK_BYTES};
use engine::storage::offset_index::{IndexEntry, OffsetIndex};
use engine::storage::{Ack, Clock, FlushPolicy, LogConfig, PartitionLog, Preallocation, WriteMode};
use loadgen::payload::BatchTemplate;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const RAW_REGION_BYTES: u64 = 512 * MIB as u64;
const RECORD_BYTES: usize = 100;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("RINGLOG_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("temp dir")
}

fn runtime() -> tokio_uring::Runtime {
    tokio_uring::Runtime::new(&tokio_uring::builder()).expect("io_uring runtime")
}

fn label(batch_bytes: usize) -> String {
    format!("{}KiB", batch_bytes / KIB)
}

/// A file with `RAW_REGION_BYTES` already written with zeros, for the raw baseline.
struct RawFile {
    file: File,
    buf: Option<AlignedBuf>,
    position: u64,
}

impl RawFile {
    async fn create(path: &Path, direct: bool, batch: &[u8]) -> RawFile {
        let disk = Disk::Uring;
        let file = disk
            .open(
                path,
                OpenOptions {
                    direct,
                    ..OpenOptions::CREATE
                },
            )
            .await
            .expect("raw file");
        let mut zeros = AlignedBuf::with_capacity(MIB);
        zeros.resize_zeroed(MIB);
        let mut position = 0;
        while position < RAW_REGION_BYTES {
            let (result, returned) = file.write_all_at(zeros, MIB, position).await;
            result.expect("zero fill");
            zeros = returned;
            position += MIB as u64;
        }
        file.sync_data().await.expect("sync");
        let mut buf = AlignedBuf::with_capacity(batch.len() + BLOCK_BYTES);
        buf.extend_from_slice(batch);
        let padded = if direct {
            batch.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES
        } else {
            batch.len()
        };
        buf.resize_zeroed(padded);
        RawFile {
            file,
            buf: Some(buf),
            position: 0,
        }
    }

    async fn write(&mut self, fsync: bool) {
        let buf = self.buf.take().expect("buffer");
        let len = buf.len();
        if self.position + len as u64 > RAW_REGION_BYTES {
            self.position = 0;
        }
        let (result, buf) = self.file.write_all_at(buf, len, self.position).await;
        result.expect("raw write");
        if fsync {
            self.file.sync_data().await.expect("raw fdatasync");
        }
        self.buf = Some(buf);
        self.position += len as u64;
    }
}

/// The engine as a broker runs it in steady state: 64 MiB segments, retention keeping two
/// of them, deleted segments recycled (`recycle` false turns recycling off).
fn engine_config(
    write_mode: WriteMode,
    preallocation: Preallocation,
    fsync: bool,
    recycle: bool,
) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * MIB as u64,
        retention_ms: None,
        retention_bytes: Some(128 * MIB as u64),
        recycle_segments_max: if recycle { 2 } else { 0 },
        write_mode,
        preallocation,
        flush_policy: if fsync {
            FlushPolicy::EveryWrite
        } else {
            FlushPolicy::OnDemand
        },
        ..LogConfig::default()
    }
}

/// Opens a log and runs it through a few segment lifetimes, so that measuring starts in
/// steady state (retention deleting, recycled segments in the pool).
async fn open_warm_log(dir: &Path, config: LogConfig, batch: &[u8]) -> PartitionLog {
    let log = open_log(dir, config).await;
    let mut written = 0;
    while written < 200 * MIB {
        log.append(BytesMut::from(batch), Ack::None)
            .await
            .expect("append");
        written += batch.len();
        if written % (16 * MIB) < batch.len() {
            log.apply_retention().await.expect("retention");
        }
    }
    log.flush().await.expect("flush");
    log.apply_retention().await.expect("retention");
    log
}

async fn append_one_at_a_time(
    log: &PartitionLog,
    batch: &[u8],
    iterations: u64,
    ack: Ack,
) -> Duration {
    let start = Instant::now();
    for i in 0..iterations {
        let appended = log
            .append(BytesMut::from(batch), ack)
            .await
            .expect("append");
        appended.wait().await.expect("ack");
        // The broker runs retention on a timer; here every 64 appends.
        if i % 64 == 63 {
            log.apply_retention().await.expect("retention");
        }
    }
    start.elapsed()
}

/// Keeps `in_flight` appends outstanding; an iteration is one batch.
async fn append_pipelined(
    log: &PartitionLog,
    batch: &[u8],
    iterations: u64,
    in_flight: usize,
) -> Duration {
    let start = Instant::now();
    let mut pending = std::collections::VecDeque::with_capacity(in_flight);
    for _ in 0..iterations {
        if pending.len() == in_flight {
            let appended: engine::storage::Appended = pending.pop_front().expect("non-empty");
            appended.wait().await.expect("ack");
        }
        pending.push_back(
            log.append(BytesMut::from(batch), Ack::Durable)
                .await
                .expect("append"),
        );
    }
    for appended in pending {
        appended.wait().await.expect("ack");
    }
    start.elapsed()
}

fn bench_append(c: &mut Criterion) {
    let runtime = runtime();
    let dir = bench_dir();
    for fsync in [true, false] {
        let mut group = c.benchmark_group(if fsync {
            "append_fsync"
        } else {
            "append_nosync"
        });
        group
            .sample_size(15)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4));
        for batch_bytes in [KIB, 16 * KIB, 64 * KIB, 256 * KIB] {
            let batch = BatchTemplate::for_batch_bytes(batch_bytes, RECORD_BYTES)
                .batch(0, 1_700_000_000_000);
            group.throughput(Throughput::Bytes(batch.len() as u64));
            let tag = format!("{}-{}", label(batch_bytes), fsync);
            let mut raw = runtime.block_on(RawFile::create(
                &dir.path().join(format!("raw-{tag}")),
                true,
                &batch,
            ));
            group.bench_function(BenchmarkId::new("raw", label(batch_bytes)), |b| {
                b.iter_custom(|iterations| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iterations {
                            raw.write(fsync).await;
                        }
                        start.elapsed()
                    })
                })
            });
            let config = engine_config(WriteMode::Direct, Preallocation::ZeroFill, fsync, true);
            let log = runtime.block_on(open_warm_log(
                &dir.path().join(format!("engine-{tag}")),
                config,
                &batch,
            ));
            let ack = if fsync { Ack::Durable } else { Ack::Written };
            group.bench_function(BenchmarkId::new("engine", label(batch_bytes)), |b| {
                b.iter_custom(|iterations| {
                    runtime.block_on(append_one_at_a_time(&log, &batch, iterations, ack))
                })
            });
            runtime.block_on(log.close()).expect("close");
        }
        group.finish();
    }

    let mut group = c.benchmark_group("append_fsync_64k_variants");
    group
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let batch = BatchTemplate::for_batch_bytes(64 * KIB, RECORD_BYTES).batch(0, 1_700_000_000_000);
    group.throughput(Throughput::Bytes(batch.len() as u64));
    let mut raw = runtime.block_on(RawFile::create(
        &dir.path().join("raw-buffered"),
        false,
        &batch,
    ));
    group.bench_function("raw_buffered", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    raw.write(true).await;
                }
                start.elapsed()
            })
        })
    });
    for (name, write_mode, preallocation, recycle) in [
        (
            "engine_direct_zerofill_recycled",
            WriteMode::Direct,
            Preallocation::ZeroFill,
            true,
        ),
        (
            "engine_direct_zerofill",
            WriteMode::Direct,
            Preallocation::ZeroFill,
            false,
        ),
        (
            "engine_direct_fallocate",
            WriteMode::Direct,
            Preallocation::Fallocate,
            false,
        ),
        (
            "engine_direct_none",
            WriteMode::Direct,
            Preallocation::None,
            false,
        ),
        (
            "engine_buffered_zerofill_recycled",
            WriteMode::Buffered,
            Preallocation::ZeroFill,
            true,
        ),
        (
            "engine_buffered_none",
            WriteMode::Buffered,
            Preallocation::None,
            false,
        ),
    ] {
        let config = engine_config(write_mode, preallocation, true, recycle);
        let log = runtime.block_on(open_warm_log(&dir.path().join(name), config, &batch));
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(append_one_at_a_time(&log, &batch, iterations, Ack::Durable))
            })
        });
        runtime.block_on(log.close()).expect("close");
    }
    group.finish();

    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(15)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let small = BatchTemplate::for_batch_bytes(KIB, RECORD_BYTES).batch(0, 1_700_000_000_000);
    group.throughput(Throughput::Bytes(small.len() as u64));
    let config = engine_config(WriteMode::Direct, Preallocation::ZeroFill, true, true);
    let log = runtime.block_on(open_warm_log(
        &dir.path().join("group-commit"),
        config,
        &small,
    ));
    group.bench_function("engine_1KiB_64_in_flight", |b| {
        b.iter_custom(|iterations| runtime.block_on(append_pipelined(&log, &small, iterations, 64)))
    });
    runtime.block_on(log.close()).expect("close");
    group.finish();
}

async fn open_log(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Disk::Uring, dir.to_path_buf(), config, Clock::system())
        .await
        .expect("open log")
}

fn bench_index_lookup(c: &mut Criterion) {
    // A full 1 GiB segment at the default 4 KiB interval: 262,144 entries.
    let mut index = OffsetIndex::new();
    for i in 0..262_144u32 {
        index.append(IndexEntry {
            relative_offset: i * 40,
            position: i * 4096,
        });
    }
    let mut probe = 0x9e37_79b9u32;
    c.bench_function("index_lookup", |b| {
        b.iter(|| {
            probe = probe.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            std::hint::black_box(index.lookup(probe % (262_144 * 40)))
        })
    });
}

fn drop_page_cache() -> bool {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn bench_recovery(c: &mut Criterion) {
    let runtime = runtime();
    let dir = bench_dir();
    let log_dir = dir.path().join("recovery-0");
    let config = LogConfig {
        segment_bytes: 1100 * MIB as u64,
        retention_ms: None,
        flush_policy: FlushPolicy::OnDemand,
        ..LogConfig::default()
    };
    let batch = BatchTemplate::for_batch_bytes(256 * KIB, RECORD_BYTES).batch(0, 1_700_000_000_000);
    runtime.block_on(async {
        let log = open_log(&log_dir, config.clone()).await;
        let mut written = 0;
        while written < 1024 * MIB {
            log.append(BytesMut::from(&batch[..]), Ack::None)
                .await
                .expect("append");
            written += batch.len();
        }
        log.close().await.expect("close");
    });
    let cold = drop_page_cache();
    eprintln!("recovery benchmark: page cache dropped before each open: {cold}");
    let mut group = c.benchmark_group("recovery_1gib");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(10));
    for rebuild in [false, true] {
        let name = if rebuild {
            "rebuild_indexes"
        } else {
            "from_last_index_entry"
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    if rebuild {
                        for ext in ["index", "timeindex"] {
                            std::fs::remove_file(log_dir.join(format!("{:020}.{ext}", 0)))
                                .expect("remove index");
                        }
                    }
                    drop_page_cache();
                    total += runtime.block_on(async {
                        let start = Instant::now();
                        let log = open_log(&log_dir, config.clone()).await;
                        let elapsed = start.elapsed();
                        assert!(log.log_end_offset() > 0);
                        log.close().await.expect("close");
                        elapsed
                    });
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_append, bench_index_lookup, bench_recovery);
criterion_main!(benches);
