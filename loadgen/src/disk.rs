//! The disk's own durable ceiling, measured in the same run: sequential O_DIRECT writes of
//! the broker's typical write size into a file whose blocks were written before (as the
//! broker's recycled segments are), each followed by fdatasync, one at a time, as the
//! storage bench does. A broker run's write rate divided by this is the share of the disk's
//! durable bandwidth it reached.
//!
//! `loadgen disk-probe` runs it alone, optionally with several files syncing side by side
//! (as a broker's partitions do) and beside threads that keep the cores busy, and counts
//! the slow fdatasyncs by the broker's own bound. With `--fallocated` its writes go into
//! fallocated blocks never written before, as a new broker's appends do (on ext4 each such
//! write converts an unwritten extent, metadata its fdatasync must also make durable).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use engine::io::aligned::round_up;
use engine::io::{AlignedBuf, BLOCK_BYTES};
use serde::Serialize;

/// Size of the probe's file: written once with zeros before the timed writes.
const PROBE_FILE_BYTES: usize = 512 * 1024 * 1024;
/// Size of the probe's files when they are fallocated: each block is written once, so the
/// probe stops at their end (a few seconds at the speeds of this kind of disk).
const FALLOCATED_FILE_BYTES: usize = 4 * 1024 * 1024 * 1024;
/// How long the timed part of a run's ceiling measurement takes.
const PROBE_DURATION: Duration = Duration::from_secs(3);
use engine::storage::stats::SLOW_FSYNC_US as SLOW_FDATASYNC_US;

/// The state of the blocks the probe writes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Space {
    /// Written before (zeros), as a recycled segment's are: the run's ceiling.
    Written,
    /// Fallocated and never written, as a new segment's are with the broker's default
    /// preallocation.
    Fallocated,
}

impl Space {
    pub fn name(self) -> &'static str {
        match self {
            Space::Written => "written",
            Space::Fallocated => "fallocated",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskCeiling {
    /// Bytes of each write (the broker's mean write in the run, rounded up to 4 KiB).
    pub write_bytes: usize,
    pub writes: u64,
    /// Durable bytes per second: written and fdatasync'ed.
    pub mb_per_s: f64,
    pub fdatasync_p50_us: u64,
    pub fdatasync_p99_us: u64,
    pub fdatasync_max_us: u64,
    /// fdatasyncs that took longer than 2.5 ms.
    pub fdatasyncs_over_2500us: u64,
    /// Threads that spun on the CPUs meanwhile (0 in a run's ceiling measurement).
    pub busy_threads: usize,
    /// Files written and synced side by side, a thread each (1 in a run's ceiling).
    pub files: usize,
    pub seconds: f64,
    /// Written before, or fallocated and written for the first time.
    pub space: Space,
}

/// Measures the ceiling with writes of `write_bytes` into a temporary file in `dir`, its
/// blocks written before (`Space::Written`) or only fallocated.
pub fn measure(dir: &Path, write_bytes: usize, space: Space) -> io::Result<DiskCeiling> {
    measure_with(dir, write_bytes, PROBE_DURATION, 0, 1, space)
}

/// Measures for `duration` with `files` files, each written and synced by a thread of its
/// own (as a broker's partitions sync side by side), while `busy_threads` threads spin
/// (each yields nothing: as busy as a saturated broker or load generator thread).
pub fn measure_with(
    dir: &Path,
    write_bytes: usize,
    duration: Duration,
    busy_threads: usize,
    files: usize,
    space: Space,
) -> io::Result<DiskCeiling> {
    let files = files.max(1);
    let total_bytes = match space {
        Space::Written => PROBE_FILE_BYTES,
        Space::Fallocated => FALLOCATED_FILE_BYTES,
    };
    let file_bytes = (total_bytes / files).max(16 * BLOCK_BYTES);
    let write_bytes = round_up(write_bytes.max(BLOCK_BYTES), BLOCK_BYTES).min(file_bytes);
    let file_bytes = file_bytes / write_bytes * write_bytes;
    let paths: Vec<_> = (0..files)
        .map(|at| dir.join(format!("loadgen-disk-probe-{at}")))
        .collect();
    let measured = (|| {
        let mut opened = Vec::with_capacity(files);
        for path in &paths {
            opened.push(prepare(path, file_bytes, space)?);
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..busy_threads {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                });
            }
            let started = Instant::now();
            let writers: Vec<_> = opened
                .iter()
                .map(|file| {
                    scope.spawn(move || sync_loop(file, write_bytes, file_bytes, duration, space))
                })
                .collect();
            let mut syncs = sync_histogram();
            let mut outcome = Ok(());
            for writer in writers {
                match writer.join().expect("probe thread") {
                    Ok(histogram) => syncs.add(&histogram).expect("same kind of histogram"),
                    Err(error) => outcome = Err(error),
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            outcome?;
            let writes = syncs.len();
            Ok(DiskCeiling {
                write_bytes,
                writes,
                mb_per_s: (writes as f64 * write_bytes as f64) / seconds / 1e6,
                fdatasync_p50_us: syncs.value_at_quantile(0.5),
                fdatasync_p99_us: syncs.value_at_quantile(0.99),
                fdatasync_max_us: syncs.max(),
                fdatasyncs_over_2500us: writes - syncs.count_between(0, SLOW_FDATASYNC_US),
                busy_threads,
                files,
                seconds,
                space,
            })
        })
    })();
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    measured
}

/// fdatasync times in microseconds, up to a minute. (An auto-resizing histogram clamps a
/// saturating record at its first bound, 2,048: every slow fdatasync read as ~2 ms.)
fn sync_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// A probe file of `bytes`, its blocks written with zeros (or only fallocated) and synced.
fn prepare(path: &Path, bytes: usize, space: Space) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    if space == Space::Fallocated {
        let length = libc::off_t::try_from(bytes).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: fallocate only reads its integer arguments; the descriptor is open.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) } != 0 {
            return Err(io::Error::last_os_error());
        }
        file.sync_all()?;
        return Ok(file);
    }
    let chunk = bytes.min(1024 * 1024);
    let mut zeros = AlignedBuf::with_capacity(chunk);
    zeros.resize_zeroed(chunk);
    for at in (0..bytes).step_by(chunk) {
        file.write_all_at(&zeros[..chunk.min(bytes - at)], at as u64)?;
    }
    file.sync_all()?;
    Ok(file)
}

/// Writes of `write_bytes` going round `file_bytes` of `file`, each followed by fdatasync,
/// for `duration` (into fallocated space: until the file's end, never writing a block
/// twice); the fdatasync times in microseconds.
fn sync_loop(
    file: &std::fs::File,
    write_bytes: usize,
    file_bytes: usize,
    duration: Duration,
    space: Space,
) -> io::Result<hdrhistogram::Histogram<u64>> {
    let mut data = AlignedBuf::with_capacity(write_bytes);
    data.resize_zeroed(write_bytes);
    let mut syncs = sync_histogram();
    let started = Instant::now();
    let mut position = 0;
    let mut writes = 0u64;
    while started.elapsed() < duration {
        if position + write_bytes > file_bytes {
            if space == Space::Fallocated {
                break;
            }
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
    Ok(syncs)
}

#[cfg(test)]
mod tests {
    /// A slow fdatasync is recorded as measured, not clamped at the histogram's first bound.
    #[test]
    fn slow_fdatasyncs_keep_their_time() {
        let mut syncs = super::sync_histogram();
        syncs.saturating_record(40);
        syncs.saturating_record(12_345);
        assert!(syncs.max() >= 12_340, "{}", syncs.max());
        assert_eq!(
            syncs.len() - syncs.count_between(0, super::SLOW_FDATASYNC_US),
            1
        );
    }
}
