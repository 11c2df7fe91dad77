//! The disk's own durable ceiling, measured in the same run: sequential O_DIRECT writes of
//! the broker's typical write size into a file whose blocks were written before (as the
//! broker's recycled segments are), each followed by fdatasync, one at a time, as the
//! storage bench does. A broker run's write rate divided by this is the share of the disk's
//! durable bandwidth it reached.
//!
//! `loadgen disk-probe` runs it alone, optionally beside threads that keep the cores busy:
//! on a machine whose cores the broker and the load generator share, a thread waiting for
//! its fdatasync is also waiting for a core when the sync is done, and that wait is counted
//! in every fdatasync time measured from user space (the broker's included).

use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine::io::aligned::round_up;
use engine::io::{AlignedBuf, BLOCK_BYTES};
use serde::Serialize;

/// Size of the probe's file: written once with zeros before the timed writes.
const PROBE_FILE_BYTES: usize = 512 * 1024 * 1024;
/// How long the timed part of a run's ceiling measurement takes.
const PROBE_DURATION: Duration = Duration::from_secs(3);
/// An fdatasync slower than this is counted apart (the broker's metrics use the same bound).
const SLOW_FDATASYNC_US: u64 = 2_500;

#[derive(Debug, Clone, Serialize)]
pub struct DiskCeiling {
    /// Bytes of each write (the broker's mean write in the run, rounded up to 4 KiB).
    pub write_bytes: usize,
    pub writes: u64,
    /// Durable bytes per second: written and fdatasync'ed.
    pub mb_per_s: f64,
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
    /// fdatasyncs that took longer than 2.5 ms.
    pub fdatasyncs_over_2500us: u64,
    /// Threads that spun on the CPUs meanwhile (0 in a run's ceiling measurement).
    pub busy_threads: usize,
    pub seconds: f64,
}

/// Measures the ceiling with writes of `write_bytes` into a temporary file in `dir`.
pub fn measure(dir: &Path, write_bytes: usize) -> io::Result<DiskCeiling> {
    measure_with(dir, write_bytes, PROBE_DURATION, 0)
}

/// Measures for `duration` while `busy_threads` threads spin (each yields nothing: as busy
/// as a saturated broker or load generator thread).
pub fn measure_with(
    dir: &Path,
    write_bytes: usize,
    duration: Duration,
    busy_threads: usize,
) -> io::Result<DiskCeiling> {
    let write_bytes = round_up(write_bytes.max(BLOCK_BYTES), BLOCK_BYTES).min(PROBE_FILE_BYTES);
    let path = dir.join("loadgen-disk-probe");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let measured = (|| {
        let mut zeros = AlignedBuf::with_capacity(1024 * 1024);
        zeros.resize_zeroed(1024 * 1024);
        for at in (0..PROBE_FILE_BYTES).step_by(zeros.len()) {
            file.write_all_at(&zeros, at as u64)?;
        }
        file.sync_all()?;
        let mut data = AlignedBuf::with_capacity(write_bytes);
        data.resize_zeroed(write_bytes);
        let mut syncs = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..busy_threads {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let timed = (|| {
                let started = Instant::now();
                let mut position = 0;
                let mut writes = 0u64;
                while started.elapsed() < duration {
                    if position + write_bytes > PROBE_FILE_BYTES {
                        // The blocks were all written before: going round again is the same.
                        position = 0;
                    }
                    data[0] = writes as u8;
                    file.write_all_at(&data, position as u64)?;
                    let synced = Instant::now();
                    file.sync_data()?;
                    syncs.saturating_record(synced.elapsed().as_micros() as u64);
                    position += write_bytes;
                    writes += 1;
                }
                let seconds = started.elapsed().as_secs_f64();
                Ok(DiskCeiling {
                    write_bytes,
                    writes,
                    mb_per_s: (writes as f64 * write_bytes as f64) / seconds / 1e6,
                    fdatasync_p50_us: syncs.value_at_quantile(0.5),
                    fdatasync_p99_us: syncs.value_at_quantile(0.99),
                    fdatasyncs_over_2500us: syncs.len() - syncs.count_between(0, SLOW_FDATASYNC_US),
                    busy_threads,
                    seconds,
                })
            })();
            stop.store(true, Ordering::Relaxed);
            timed
        })
    })();
    let _ = std::fs::remove_file(&path);
    measured
}
