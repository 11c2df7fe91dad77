//! Storage statistics, for the broker's metrics and the load generator's results.
//!
//! Each thread that drives logs (a shard) counts into cells of its own, so no two shards
//! write the same cache line; the cells are registered once per thread and folded when
//! read.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::metrics::Histogram;

/// One thread's counters.
#[derive(Default)]
pub struct StorageCells {
    /// Latency of every fdatasync.
    pub fsync_latency: Histogram,
    /// Latency of every data write (a round's O_DIRECT or buffered write of appended
    /// batches, without the preallocation it may wait for).
    pub write_latency: Histogram,
    /// Latency of the data writes made with O_DSYNC (also in `write_latency`): each is a
    /// write and its fdatasync in one operation.
    pub synced_write_latency: Histogram,
    /// Duration of every durability round: waiting for space, renaming a prepared
    /// segment, the writes and the fdatasyncs.
    pub round_latency: Histogram,
    /// Durability rounds: flusher rounds that wrote or synced something.
    pub rounds: AtomicU64,
    /// Data writes handed to the kernel.
    pub writes: AtomicU64,
    /// Bytes of those writes (padding included).
    pub write_bytes: AtomicU64,
    /// Reads of a partition's records served from its tail cache (memory).
    pub cache_reads: AtomicU64,
    /// Reads of a partition's records that went to its segment files, and their bytes.
    pub disk_reads: AtomicU64,
    pub disk_read_bytes: AtomicU64,
    /// Segments a log rolled to, and of those, the ones whose log file was a segment
    /// recycled by retention (its blocks written before: appends into it need no
    /// unwritten-extent conversion).
    pub segments_rolled: AtomicU64,
    pub segments_recycled: AtomicU64,
    /// Bytes the thread's tail caches hold now (a cache filled on one thread and dropped
    /// on another moves bytes between cells; the sum is right).
    pub tail_cache_bytes: AtomicI64,
}

/// Every thread's cells, for folding.
static REGISTERED: Mutex<Vec<Arc<StorageCells>>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: Arc<StorageCells> = {
        let cells = Arc::new(StorageCells::default());
        REGISTERED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(cells.clone());
        cells
    };
}

/// Runs `count` on this thread's cells (nothing once the thread is tearing down its
/// thread-locals, where a log dropped late may still count).
pub fn count(count: impl FnOnce(&StorageCells)) {
    let _ = MINE.try_with(|cells| count(cells));
}

/// An fdatasync slower than this (microseconds) is counted apart: the disk's slow flushes
/// on this kind of machine take 2-4 ms.
pub const SLOW_FSYNC_US: u64 = 2_500;

/// An fdatasync, write or round slower than this (microseconds) is a stall: alone it puts
/// the produce requests waiting on it past a 5 ms p99.
pub const STALLED_FSYNC_US: u64 = 10_000;

/// Totals over every thread so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StorageTotals {
    pub fsyncs: u64,
    pub fsync_us: u64,
    /// fdatasyncs that took longer than `SLOW_FSYNC_US` (2.5 ms).
    pub fsyncs_over_2500us: u64,
    /// fdatasyncs that took longer than `STALLED_FSYNC_US` (10 ms).
    pub fsyncs_over_10ms: u64,
    /// Data writes, and durability rounds, that took longer than `STALLED_FSYNC_US`.
    pub writes_over_10ms: u64,
    pub rounds_over_10ms: u64,
    /// Data writes made with O_DSYNC (counted in `writes` too), their summed latency, and
    /// those over `SLOW_FSYNC_US` and `STALLED_FSYNC_US`.
    pub synced_writes: u64,
    pub synced_write_us: u64,
    pub synced_writes_over_2500us: u64,
    pub synced_writes_over_10ms: u64,
    pub rounds: u64,
    pub writes: u64,
    pub write_bytes: u64,
    pub cache_reads: u64,
    pub disk_reads: u64,
    pub disk_read_bytes: u64,
    pub segments_rolled: u64,
    pub segments_recycled: u64,
}

impl StorageTotals {
    /// Mean fdatasync time in microseconds (0 without fdatasyncs).
    pub fn fsync_mean_us(&self) -> f64 {
        self.fsync_us as f64 / self.fsyncs.max(1) as f64
    }

    /// Mean O_DSYNC write time in microseconds (0 without such writes).
    pub fn synced_write_mean_us(&self) -> f64 {
        self.synced_write_us as f64 / self.synced_writes.max(1) as f64
    }

    /// What the counters added since `earlier` (counts never go back; a later reading
    /// minus an earlier one, field by field).
    pub fn since(&self, earlier: &StorageTotals) -> StorageTotals {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        StorageTotals {
            fsyncs: d(self.fsyncs, earlier.fsyncs),
            fsync_us: d(self.fsync_us, earlier.fsync_us),
            fsyncs_over_2500us: d(self.fsyncs_over_2500us, earlier.fsyncs_over_2500us),
            fsyncs_over_10ms: d(self.fsyncs_over_10ms, earlier.fsyncs_over_10ms),
            writes_over_10ms: d(self.writes_over_10ms, earlier.writes_over_10ms),
            rounds_over_10ms: d(self.rounds_over_10ms, earlier.rounds_over_10ms),
            synced_writes: d(self.synced_writes, earlier.synced_writes),
            synced_write_us: d(self.synced_write_us, earlier.synced_write_us),
            synced_writes_over_2500us: d(
                self.synced_writes_over_2500us,
                earlier.synced_writes_over_2500us,
            ),
            synced_writes_over_10ms: d(
                self.synced_writes_over_10ms,
                earlier.synced_writes_over_10ms,
            ),
            rounds: d(self.rounds, earlier.rounds),
            writes: d(self.writes, earlier.writes),
            write_bytes: d(self.write_bytes, earlier.write_bytes),
            cache_reads: d(self.cache_reads, earlier.cache_reads),
            disk_reads: d(self.disk_reads, earlier.disk_reads),
            disk_read_bytes: d(self.disk_read_bytes, earlier.disk_read_bytes),
            segments_rolled: d(self.segments_rolled, earlier.segments_rolled),
            segments_recycled: d(self.segments_recycled, earlier.segments_recycled),
        }
    }
}

pub fn totals() -> StorageTotals {
    let folded = fold();
    StorageTotals {
        fsyncs: folded.fsync_latency.count(),
        fsync_us: folded.fsync_latency.sum_us(),
        fsyncs_over_2500us: folded.fsync_latency.count_over(SLOW_FSYNC_US),
        fsyncs_over_10ms: folded.fsync_latency.count_over(STALLED_FSYNC_US),
        writes_over_10ms: folded.write_latency.count_over(STALLED_FSYNC_US),
        rounds_over_10ms: folded.round_latency.count_over(STALLED_FSYNC_US),
        synced_writes: folded.synced_write_latency.count(),
        synced_write_us: folded.synced_write_latency.sum_us(),
        synced_writes_over_2500us: folded.synced_write_latency.count_over(SLOW_FSYNC_US),
        synced_writes_over_10ms: folded.synced_write_latency.count_over(STALLED_FSYNC_US),
        rounds: folded.rounds.load(Ordering::Relaxed),
        writes: folded.writes.load(Ordering::Relaxed),
        write_bytes: folded.write_bytes.load(Ordering::Relaxed),
        cache_reads: folded.cache_reads.load(Ordering::Relaxed),
        disk_reads: folded.disk_reads.load(Ordering::Relaxed),
        disk_read_bytes: folded.disk_read_bytes.load(Ordering::Relaxed),
        segments_rolled: folded.segments_rolled.load(Ordering::Relaxed),
        segments_recycled: folded.segments_recycled.load(Ordering::Relaxed),
    }
}

fn fold() -> StorageCells {
    let folded = StorageCells::default();
    for cells in REGISTERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
    {
        folded.fsync_latency.add(&cells.fsync_latency);
        folded.write_latency.add(&cells.write_latency);
        folded.round_latency.add(&cells.round_latency);
        folded.synced_write_latency.add(&cells.synced_write_latency);
        for (sum, part) in [
            (&folded.rounds, &cells.rounds),
            (&folded.writes, &cells.writes),
            (&folded.write_bytes, &cells.write_bytes),
            (&folded.cache_reads, &cells.cache_reads),
            (&folded.disk_reads, &cells.disk_reads),
            (&folded.disk_read_bytes, &cells.disk_read_bytes),
            (&folded.segments_rolled, &cells.segments_rolled),
            (&folded.segments_recycled, &cells.segments_recycled),
        ] {
            sum.fetch_add(part.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        folded.tail_cache_bytes.fetch_add(
            cells.tail_cache_bytes.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
    folded
}

/// Prometheus text for the storage counters.
pub fn render(out: &mut String) {
    use std::fmt::Write as _;
    let folded = fold();
    for (name, histogram) in [
        ("ringlog_fsync_latency_seconds", &folded.fsync_latency),
        ("ringlog_log_write_latency_seconds", &folded.write_latency),
        (
            "ringlog_log_synced_write_latency_seconds",
            &folded.synced_write_latency,
        ),
        ("ringlog_durability_round_seconds", &folded.round_latency),
    ] {
        let _ = writeln!(out, "# TYPE {name} histogram");
        histogram.render(out, name, "");
    }
    for (name, value) in [
        ("ringlog_durability_rounds_total", &folded.rounds),
        ("ringlog_log_writes_total", &folded.writes),
        ("ringlog_log_write_bytes_total", &folded.write_bytes),
        ("ringlog_log_cache_reads_total", &folded.cache_reads),
        ("ringlog_log_disk_reads_total", &folded.disk_reads),
        ("ringlog_log_disk_read_bytes_total", &folded.disk_read_bytes),
        ("ringlog_log_segments_rolled_total", &folded.segments_rolled),
        (
            "ringlog_log_segments_recycled_total",
            &folded.segments_recycled,
        ),
    ] {
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# TYPE ringlog_tail_cache_bytes gauge");
    let _ = writeln!(
        out,
        "ringlog_tail_cache_bytes {}",
        folded.tail_cache_bytes.load(Ordering::Relaxed).max(0)
    );
}
