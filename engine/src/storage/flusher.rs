//! The flusher: the one task per partition that writes, syncs and maintains its files.
//!
//! Each round takes everything appended but not yet handed off (from every open segment)
//! as one `FlushJob`, writes it, fdatasyncs when the flush policy or a waiter wants it, and
//! then answers the appends the job covered. When an acks=all waiter is in the round and a
//! segment has nothing unsynced from before, its write goes through the segment's O_DSYNC
//! handle instead: the write and its fdatasync as one operation. Appends that arrive
//! during a round wait in the write buffer and ride the next round: group commit, one
//! write in flight per partition.
//!
//! Between rounds it writes due index entries (only for fsynced log bytes), seals rolled
//! segments once all their data is durable (trim the preallocated tail, write the rest of
//! the indexes), and starts preallocating ahead of the active segment's write position.
//! Segment maintenance that must not race with writes (truncation, retention, close) also
//! lives here.

use std::ops::ControlFlow;
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::config::{FlushPolicy, LogConfig, Preallocation};
use super::error::StorageError;
use super::log_state::{PreparedSegment, State};
use super::partition_log::{frontier, Inner};
use super::retention::{segments_to_delete, SegmentFacts};
use super::segment::{
    self, IndexWrite, SegmentFiles, SegmentIndexes, SegmentPaths, PREPARED_STEM, RECYCLED_PREFIX,
};
use super::write_buffer::{PendingWrite, WriteBuffer};
use crate::io::aligned::{round_down, round_up};
use crate::io::{AlignedBuf, File, BLOCK_BYTES};

/// A partition with nothing to write for this long gives back its large write buffers.
const IDLE_BUFFER_RELEASE: Duration = Duration::from_secs(1);

struct SegmentWrite {
    base: i64,
    file: File,
    /// `file` is the O_DSYNC handle: the write is also the segment's fdatasync.
    durable: bool,
    write: PendingWrite,
    end_offset: i64,
    /// Prepared names to rename from, before the first write.
    rename: Option<(SegmentPaths, SegmentPaths)>,
}

struct FlushJob {
    writes: Vec<SegmentWrite>,
    /// Every offset below this is in `writes` (or was written before).
    end_offset: i64,
    /// Segments to fdatasync after the writes.
    sync: Vec<(i64, File)>,
}

impl FlushJob {
    /// The segments this job makes durable: those it fdatasyncs and those it writes with
    /// O_DSYNC.
    fn synced_bases(&self) -> Vec<i64> {
        let written = self.writes.iter().filter(|w| w.durable).map(|w| w.base);
        self.sync
            .iter()
            .map(|(base, _)| *base)
            .chain(written)
            .collect()
    }
}

struct Completed {
    base: i64,
    buf: AlignedBuf,
    end: u64,
    end_offset: i64,
    renamed: bool,
}

/// The flusher task. Holds the log only weakly while idle, so dropping the log ends it.
pub(super) async fn run(weak: Weak<Inner>) {
    // A fresh log reserves its first step now, so its first write does not wait for the
    // zero-fill and its sync (a log with data reserves ahead as it is written to).
    if let Some(inner) = weak.upgrade() {
        let fresh = inner.state.borrow_mut().active().appended.bytes == 0;
        if fresh {
            let config = inner.config.borrow().clone();
            preallocate_ahead(&inner, &config);
        }
    }
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let config = inner.config.borrow().clone();
        let job = take_job(&mut inner.state.borrow_mut(), inner.flush_policy());
        match job {
            Some(job) => {
                let synced = job.synced_bases();
                let result = execute(&inner, job, &config).await;
                complete_sync(&mut inner.state.borrow_mut(), result, &synced);
                inner.progress.notify_waiters();
                if let Some(data) = inner.data_notify.borrow().as_ref() {
                    data.notify_waiters();
                }
                if let Err(error) = maintain(&inner, &config).await {
                    inner.state.borrow_mut().fail(error);
                    inner.progress.notify_waiters();
                }
            }
            None => {
                if inner.shutdown.get() {
                    return;
                }
                let wake = inner.flush_wake.clone();
                drop(inner);
                if tokio::time::timeout(IDLE_BUFFER_RELEASE, wake.notified())
                    .await
                    .is_err()
                {
                    let Some(inner) = weak.upgrade() else { return };
                    shrink_idle_buffers(&mut inner.state.borrow_mut());
                    drop(inner);
                    wake.notified().await;
                }
            }
        }
    }
}

fn take_job(state: &mut State, policy: FlushPolicy) -> Option<FlushJob> {
    if state.failure.is_some() {
        return None;
    }
    let mut writes = Vec::new();
    let mut sync = Vec::new();
    let open_bases = state.open_bases.clone();
    let rolled = open_bases.len() > 1;
    let sync_wanted = match policy {
        FlushPolicy::EveryWrite => true,
        FlushPolicy::OnDemand => !state.durable_waiters.is_empty() || rolled,
    };
    // A producer waits for this round's durability: a segment with nothing unsynced before
    // this write takes the write and its fdatasync as one O_DSYNC write, which ends sooner
    // and costs the shard one operation less. Without such a waiter the write goes alone
    // and is answered (acks=1) before the fdatasync, as before.
    let durable_now = sync_wanted && !state.durable_waiters.is_empty();
    for base in &open_bases {
        let segment = state.segments.get_mut(base).expect("open segment exists");
        let write = segment.take_write();
        let unsynced_before = segment.written.bytes > segment.durable.bytes;
        let durable_file = segment
            .files
            .durable_log
            .clone()
            .filter(|_| durable_now && !unsynced_before && write.is_some());
        if (unsynced_before || write.is_some()) && durable_file.is_none() {
            sync.push((*base, segment.files.log.clone()));
        }
        if let Some(write) = write {
            let rename = segment
                .prepared_paths
                .clone()
                .map(|prepared| (prepared, segment.paths.clone()));
            writes.push(SegmentWrite {
                base: *base,
                durable: durable_file.is_some(),
                file: durable_file.unwrap_or_else(|| segment.files.log.clone()),
                end_offset: segment.appended.end_offset,
                write,
                rename,
            });
        }
    }
    if !sync_wanted {
        sync.clear();
    }
    let sealing_due = rolled
        && state.segments[&open_bases[0]].durable.bytes
            == state.segments[&open_bases[0]].appended.bytes;
    if writes.is_empty() && sync.is_empty() && !sealing_due {
        return None;
    }
    Some(FlushJob {
        writes,
        end_offset: state.log_end_offset,
        sync,
    })
}

/// Runs `job`: its writes (an O_DSYNC one is also its segment's fdatasync), then its
/// fdatasyncs. Once the writes completed they are published (the written frontier moves
/// and acks=1 waiters are answered: their data reached the OS) before the fdatasyncs start,
/// so a write that needs no sync never waits for one.
async fn execute(inner: &Rc<Inner>, job: FlushJob, config: &LogConfig) -> Result<(), StorageError> {
    let round_started = std::time::Instant::now();
    let mut completed = Vec::with_capacity(job.writes.len());
    let mut written_bytes = 0u64;
    for write in job.writes {
        let renamed = write.rename.is_some();
        if let Some((from, to)) = &write.rename {
            rename_segment(inner, from, to).await?;
            if let Some(segment) = inner.state.borrow().segments.get(&write.base) {
                segment.files.renamed(to);
            }
        }
        let PendingWrite {
            buf,
            len,
            position,
            end,
        } = write.write;
        ensure_allocated(inner, write.base, position + len as u64, config).await?;
        let write_started = std::time::Instant::now();
        let (result, buf) = write.file.write_all_at(buf, len, position).await;
        result.map_err(|source| StorageError::io("cannot write", write.file.path(), source))?;
        let took = write_started.elapsed();
        super::stats::count(|cells| {
            cells.write_latency.record(took);
            if write.durable {
                cells.synced_write_latency.record(took);
            }
        });
        written_bytes += len as u64;
        completed.push(Completed {
            base: write.base,
            buf,
            end,
            end_offset: write.end_offset,
            renamed,
        });
    }
    let wrote = completed.len() as u64;
    complete_writes(&mut inner.state.borrow_mut(), completed, job.end_offset);
    if !job.sync.is_empty() && wrote > 0 {
        inner.progress.notify_waiters();
        if inner.flush_policy() == FlushPolicy::OnDemand {
            if let Some(data) = inner.data_notify.borrow().as_ref() {
                data.notify_waiters();
            }
        }
    }
    for (_, file) in &job.sync {
        let started = std::time::Instant::now();
        file.sync_data()
            .await
            .map_err(|source| StorageError::io("cannot fdatasync", file.path(), source))?;
        super::stats::count(|cells| cells.fsync_latency.record(started.elapsed()));
    }
    super::stats::count(|cells| {
        cells.round_latency.record(round_started.elapsed());
        cells.rounds.fetch_add(1, Ordering::Relaxed);
        cells.writes.fetch_add(wrote, Ordering::Relaxed);
        cells
            .write_bytes
            .fetch_add(written_bytes, Ordering::Relaxed);
    });
    Ok(())
}

/// Moves the written frontier over `completed` (writes that all succeeded) and answers the
/// waiters it covers.
fn complete_writes(state: &mut State, completed: Vec<Completed>, end_offset: i64) {
    let wrote = !completed.is_empty();
    for done in completed {
        let segment = state
            .segments
            .get_mut(&done.base)
            .expect("open segment exists");
        segment.written = frontier(done.end, done.end_offset);
        if done.renamed {
            segment.prepared_paths = None;
        }
        if let Some(write) = segment.write.as_mut() {
            write.give_back(done.buf);
        }
    }
    if wrote {
        state.written_offset = end_offset;
    }
    state.resolve_waiters();
}

/// After a job: the fdatasynced segments are durable up to what was written, or the log
/// fails with the job's error.
fn complete_sync(state: &mut State, result: Result<(), StorageError>, synced: &[i64]) {
    if let Err(error) = result {
        return state.fail(error);
    }
    if !synced.is_empty() {
        for base in synced {
            let segment = state.segments.get_mut(base).expect("open segment exists");
            segment.durable = segment.written;
        }
        state.durable_offset = state.written_offset;
    }
    state.resolve_waiters();
}

async fn rename_segment(
    inner: &Inner,
    from: &SegmentPaths,
    to: &SegmentPaths,
) -> Result<(), StorageError> {
    for (from, to) in [
        (&from.log, &to.log),
        (&from.index, &to.index),
        (&from.time_index, &to.time_index),
    ] {
        inner
            .disk
            .rename(from, to)
            .await
            .map_err(|source| StorageError::io("cannot rename", from, source))?;
    }
    sync_dir(inner).await
}

async fn sync_dir(inner: &Inner) -> Result<(), StorageError> {
    inner
        .disk
        .sync_dir(&inner.dir)
        .await
        .map_err(|source| StorageError::io("cannot sync directory", &inner.dir, source))
}

/// Makes sure the file has space reserved up to `needed`, waiting for a background
/// preallocation or reserving inline. Zero-fill writes never overlap data writes: data is
/// written only below `allocated_bytes`, and preallocation only above it.
async fn ensure_allocated(
    inner: &Inner,
    base: i64,
    needed: u64,
    config: &LogConfig,
) -> Result<(), StorageError> {
    if config.preallocation == Preallocation::None {
        return Ok(());
    }
    loop {
        let mut progressed = pin!(inner.progress.notified());
        progressed.as_mut().enable();
        let (allocated, allocating, file) = {
            let state = inner.state.borrow();
            let segment = &state.segments[&base];
            (
                segment.allocated_bytes,
                segment.allocating,
                segment.files.log.clone(),
            )
        };
        if needed <= allocated {
            return Ok(());
        }
        if allocating {
            progressed.await;
            continue;
        }
        let step = preallocate_step(allocated, config);
        let to = round_up(needed.max(allocated + step) as usize, BLOCK_BYTES) as u64;
        segment::preallocate(&file, config.preallocation, allocated, to).await?;
        if let Some(segment) = inner.state.borrow_mut().segments.get_mut(&base) {
            segment.allocated_bytes = segment.allocated_bytes.max(to);
        }
    }
}

/// Index writes, sealing of rolled segments, and preallocation ahead.
async fn maintain(inner: &Rc<Inner>, config: &LogConfig) -> Result<(), StorageError> {
    let index_writes: Vec<(i64, IndexWrite)> = {
        let mut state = inner.state.borrow_mut();
        if state.failure.is_some() {
            return Ok(());
        }
        let open_bases = state.open_bases.clone();
        open_bases
            .into_iter()
            .filter_map(|base| {
                Some((
                    base,
                    state.segments.get_mut(&base)?.take_index_write(false)?,
                ))
            })
            .collect()
    };
    for (base, write) in index_writes {
        persist_index(inner, base, write).await?;
    }
    loop {
        let sealable = {
            let state = inner.state.borrow();
            let oldest = state.open_bases[0];
            let segment = &state.segments[&oldest];
            let done =
                segment.durable.bytes == segment.appended.bytes && segment.prepared_paths.is_none();
            (state.open_bases.len() > 1 && done).then_some(oldest)
        };
        let Some(base) = sealable else { break };
        seal(inner, base).await?;
    }
    preallocate_ahead(inner, config);
    Ok(())
}

async fn persist_index(inner: &Inner, base: i64, write: IndexWrite) -> Result<(), StorageError> {
    let entries = segment::write_index(write).await?;
    if let Some(segment) = inner.state.borrow_mut().segments.get_mut(&base) {
        segment.mark_index_persisted(entries);
    }
    Ok(())
}

/// Closes a rolled segment whose data is all durable: trims the preallocated tail and
/// writes the rest of its indexes. From then on it is read-only.
async fn seal(inner: &Inner, base: i64) -> Result<(), StorageError> {
    let (file, size, index_write) = {
        let mut state = inner.state.borrow_mut();
        let segment = state.segments.get_mut(&base).expect("open segment exists");
        (
            segment.files.log.clone(),
            segment.size_bytes(),
            segment.take_index_write(true),
        )
    };
    file.set_len(size)
        .await
        .map_err(|source| StorageError::io("cannot trim", file.path(), source))?;
    if let Some(write) = index_write {
        persist_index(inner, base, write).await?;
    }
    let mut state = inner.state.borrow_mut();
    if let Some(segment) = state.segments.get_mut(&base) {
        segment.write = None;
        segment.files.release_sealed();
    }
    state.open_bases.retain(|open| *open != base);
    tracing::debug!(dir = %inner.dir.display(), base, size, "sealed segment");
    Ok(())
}

/// Step of a zero-fill preallocation.
const ZERO_FILL_STEP_BYTES: u64 = 4 * 1024 * 1024;
/// Zero-filled steps kept ahead of the write position.
const ZERO_FILL_AHEAD_STEPS: u64 = 4;

/// Smallest step of space reserved ahead.
const PREALLOCATE_STEP_BYTES_MIN: u64 = 1024 * 1024;

/// The next step of space to reserve for a segment that has `allocated` bytes: it grows
/// with what the segment already holds (so with the partition's write rate), from 1 MiB up
/// to `preallocate_step_bytes`. A fresh or slow partition reserves little (a thousand idle
/// partitions must not hold 32 MiB each), a busy one reserves far ahead.
fn preallocate_step(allocated: u64, config: &LogConfig) -> u64 {
    let most = match config.preallocation {
        // Small steps, each written and synced quickly: never a long burst of zero writes
        // ahead of a data write.
        Preallocation::ZeroFill => config.preallocate_step_bytes.min(ZERO_FILL_STEP_BYTES),
        _ => config.preallocate_step_bytes,
    };
    round_up(
        allocated.max(PREALLOCATE_STEP_BYTES_MIN).min(most) as usize,
        BLOCK_BYTES,
    ) as u64
}

/// The next step to reserve ahead of a segment holding `held` bytes with `allocated`
/// reserved, and how much reserved space ahead of its data starts it. Fallocate keeps half
/// a step ahead, its steps growing with the allocation. Zero-fill steps grow with the data
/// the segment holds (1 to 4 MiB), half a step is kept ahead until the segment holds four
/// steps and four steps after that: a quiet partition holds at most its data and a step.
fn ahead_plan(allocated: u64, held: u64, config: &LogConfig) -> (u64, u64) {
    match config.preallocation {
        Preallocation::ZeroFill => {
            let step = preallocate_step(held, config);
            let busy = held >= ZERO_FILL_AHEAD_STEPS * step;
            (
                step,
                if busy {
                    ZERO_FILL_AHEAD_STEPS * step
                } else {
                    step / 2
                },
            )
        }
        _ => {
            let step = preallocate_step(allocated, config);
            (step, step / 2)
        }
    }
}

/// Starts reserving the next step of the active segment in the background once less than
/// the planned distance (`ahead_plan`) is left ahead of the write position.
fn preallocate_ahead(inner: &Rc<Inner>, config: &LogConfig) {
    if config.preallocation == Preallocation::None {
        return;
    }
    let limit = round_up(config.segment_bytes as usize, BLOCK_BYTES) as u64;
    let mut state = inner.state.borrow_mut();
    if state.failure.is_some() {
        return;
    }
    let active = state.active();
    let (step, wanted_ahead) = ahead_plan(active.allocated_bytes, active.appended.bytes, config);
    let ahead = active.allocated_bytes.saturating_sub(active.appended.bytes);
    if active.allocating || ahead >= wanted_ahead || active.allocated_bytes >= limit {
        return;
    }
    let from = active
        .allocated_bytes
        .max(round_up(active.appended.bytes as usize, BLOCK_BYTES) as u64);
    let to = (from + step).min(limit.max(from + BLOCK_BYTES as u64));
    active.allocating = true;
    let base = active.base_offset;
    let file = active.files.log.clone();
    let mode = config.preallocation;
    let weak = Rc::downgrade(inner);
    tokio::task::spawn_local(async move {
        let result = segment::preallocate(&file, mode, from, to).await;
        let Some(inner) = weak.upgrade() else { return };
        if let Some(segment) = inner.state.borrow_mut().segments.get_mut(&base) {
            segment.allocating = false;
            match result {
                Ok(()) => {
                    segment.allocated_bytes = segment.allocated_bytes.max(to);
                    if std::mem::take(&mut segment.allocation_failed) {
                        tracing::info!(file = %file.path().display(), "preallocation works again");
                    }
                }
                // Not fatal: the data write that needs the space reports its own error. Said
                // once: each later write tries again, until one works.
                Err(error) if !segment.allocation_failed => {
                    segment.allocation_failed = true;
                    tracing::warn!(%error, "preallocation failed; data writes go on without it");
                }
                Err(error) => tracing::debug!(%error, "preallocation failed again"),
            }
        }
        inner.progress.notify_waiters();
    });
}

/// Gives back the memory of a partition that went quiet: large write buffers and the tail
/// cache (a thousand idle partitions must not hold a megabyte each).
fn shrink_idle_buffers(state: &mut State) {
    state.tail_cache.clear();
    let open_bases = state.open_bases.clone();
    for base in open_bases {
        if let Some(write) = state
            .segments
            .get_mut(&base)
            .and_then(|segment| segment.write.as_mut())
        {
            write.shrink_if_idle();
        }
    }
}

/// Creates the next segment's files under the prepared names and reserves its first step,
/// reusing a recycled log file when there is one (its blocks are already written; its stale
/// batches carry older offsets, so recovery's offset check never takes them for new data).
pub(super) async fn prepare_segment(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let config = inner.config.borrow().clone();
    let paths = SegmentPaths::for_stem(&inner.dir, PREPARED_STEM);
    // A log over `retention.bytes` gives up its oldest segments now rather than at the next
    // retention check, so that the segment being prepared reuses a deleted one's written
    // blocks: at a high rate a check every few minutes deletes many more segments than the
    // pool keeps, and appends into fallocated blocks cost their syncs an extent conversion.
    if inner.state.borrow().recycled.is_empty() {
        if let Err(error) = apply_size_retention(&inner, &config).await {
            tracing::warn!(%error, "size retention before a roll failed; the retention check retries");
        }
    }
    let reuse = inner.state.borrow_mut().recycled.pop();
    let recycled = reuse.is_some();
    let result = async {
        if let Some(recycled) = &reuse {
            inner
                .disk
                .rename(recycled, &paths.log)
                .await
                .map_err(|source| StorageError::io("cannot rename", recycled, source))?;
        }
        let files = SegmentFiles::open(&inner.disk, &paths, &config, true).await?;
        let reused_bytes = match reuse {
            Some(_) => {
                let len = files
                    .log
                    .len()
                    .await
                    .map_err(|source| StorageError::io("cannot stat", &paths.log, source))?;
                round_down(len as usize, BLOCK_BYTES) as u64
            }
            None => 0,
        };
        let first_bytes = match config.preallocation {
            Preallocation::ZeroFill => ZERO_FILL_AHEAD_STEPS * preallocate_step(0, &config),
            _ => config.preallocate_step_bytes,
        };
        let first_step =
            round_up(first_bytes.min(config.segment_bytes) as usize, BLOCK_BYTES) as u64;
        let allocated_bytes = match config.preallocation {
            Preallocation::None => reused_bytes,
            _ if reused_bytes >= first_step => reused_bytes,
            mode => {
                segment::preallocate(&files.log, mode, reused_bytes, first_step).await?;
                first_step
            }
        };
        Ok::<_, StorageError>(PreparedSegment {
            paths: paths.clone(),
            files,
            allocated_bytes,
            recycled,
        })
    }
    .await;
    let unused = {
        let mut state = inner.state.borrow_mut();
        state.preparing = false;
        match result {
            Ok(prepared) if !state.closed => {
                state.prepared = Some(prepared);
                None
            }
            // Closed while it was being made: nobody will use it (close removed what was
            // prepared then, not this one).
            Ok(prepared) => Some(prepared),
            Err(error) => {
                tracing::warn!(%error, "could not prepare the next segment; the roll will create it");
                None
            }
        }
    };
    inner.progress.notify_waiters();
    if let Some(prepared) = unused {
        drop(prepared.files);
        if let Err(error) = delete_segment_files(&inner, &prepared.paths).await {
            tracing::warn!(%error, "could not remove a segment prepared during close; the next start removes it");
        }
    }
}

/// Deletes the oldest closed segments the log no longer needs to stay within
/// `retention.bytes` (nothing without it); returns how many.
async fn apply_size_retention(
    inner: &Rc<Inner>,
    config: &LogConfig,
) -> Result<usize, StorageError> {
    let Some(retention_bytes) = config.retention_bytes else {
        return Ok(0);
    };
    let (bases, facts): (Vec<i64>, Vec<SegmentFacts>) = {
        let state = inner.state.borrow();
        state.check_usable()?;
        state
            .segments
            .values()
            .map(|segment| (segment.base_offset, segment.retention_facts()))
            .unzip()
    };
    match segments_to_delete(&facts, None, Some(retention_bytes), 0) {
        0 => Ok(0),
        count => delete_segments_below(inner, bases[count]).await,
    }
}

/// Removes every batch at or after the batch holding `offset`. The caller flushed first
/// and appends are not running, so nothing is pending.
pub(super) async fn truncate(inner: &Rc<Inner>, offset: i64) -> Result<i64, StorageError> {
    let config = inner.config.borrow().clone();
    let (base, reader, start, limit) = {
        let state = inner.state.borrow();
        state.check_usable()?;
        if offset >= state.log_end_offset {
            return Ok(state.log_end_offset);
        }
        let offset = offset.max(state.log_start_offset);
        let segment = state
            .segment_holding(offset)
            .expect("an offset below the log end lies in a segment");
        let start = segment.scan_start(offset);
        (
            segment.base_offset,
            segment.files.reader.clone(),
            start,
            segment.appended.bytes,
        )
    };
    let offset = offset.max(base);
    let (from, expected) = (
        u64::from(start.position),
        base + i64::from(start.relative_offset),
    );
    let mut cut = None;
    segment::scan_log(&reader, from, limit, expected, false, |position, header| {
        if header.last_offset() >= offset {
            cut = Some((position, header.base_offset));
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await?;
    let (position, new_end) = cut.ok_or_else(|| StorageError::Corrupt {
        path: reader.path().to_path_buf(),
        position: from,
        reason: format!("no batch holds offset {offset}"),
    })?;

    let (later, files) = {
        let mut state = inner.state.borrow_mut();
        let later: Vec<_> = state
            .segments
            .split_off(&(base + 1))
            .into_values()
            .collect();
        // Everything is flushed: segments before the kept one are done with appends.
        for segment in state.segments.range_mut(..base).map(|(_, segment)| segment) {
            segment.write = None;
        }
        state.open_bases = vec![base];
        (later, state.segments[&base].files.clone())
    };
    for segment in &later {
        delete_segment_files(inner, &segment.paths).await?;
    }
    files
        .log
        .set_len(position)
        .await
        .map_err(|source| StorageError::io("cannot truncate", files.log.path(), source))?;
    files
        .log
        .sync_data()
        .await
        .map_err(|source| StorageError::io("cannot fdatasync", files.log.path(), source))?;
    let mut indexes = {
        let state = inner.state.borrow();
        state.segments[&base].indexes.clone()
    };
    indexes.offset_index.truncate_to_position(position as u32);
    let kept = indexes.offset_index.entries().len();
    indexes.time_index.truncate(kept);
    let mut indexes = SegmentIndexes::resume(
        base,
        config.index_interval_bytes,
        indexes.offset_index,
        indexes.time_index,
    );
    let resume_from = indexes.offset_index.last().map_or((0, base), |entry| {
        (
            u64::from(entry.position),
            base + i64::from(entry.relative_offset),
        )
    });
    segment::scan_log(
        &reader,
        resume_from.0,
        position,
        resume_from.1,
        false,
        |at, header| {
            indexes.note_batch(at, header);
            ControlFlow::Continue(())
        },
    )
    .await?;
    super::recovery::rewrite_indexes(&files, &mut indexes).await?;
    let tail_from = round_down(position as usize, files.align) as u64;
    let tail_block = reader
        .read_at((position - tail_from) as usize, tail_from)
        .await
        .map_err(|source| StorageError::io("cannot read", reader.path(), source))?;

    let mut state = inner.state.borrow_mut();
    let segment = state.segments.get_mut(&base).expect("kept segment exists");
    let end = frontier(position, new_end);
    segment.appended = end;
    segment.written = end;
    segment.durable = end;
    segment.indexes = indexes;
    segment.allocated_bytes = round_up(position as usize, BLOCK_BYTES) as u64;
    segment.write = Some(WriteBuffer::new(
        files.align,
        config.write_buffer_capacity(),
        position,
        &tail_block,
    ));
    state.log_end_offset = new_end;
    state.written_offset = new_end;
    state.durable_offset = new_end;
    state.tail_cache.truncate_from(new_end);
    tracing::info!(dir = %inner.dir.display(), new_end, "truncated log");
    Ok(new_end)
}

/// Deletes the oldest segments up to (not including) the one based at `first_kept`,
/// stopping at the first one still open; a bound rather than a count, so that two
/// deletions decided on the same state (the retention check and the one before a roll)
/// never remove more than either meant to. Their log files are kept for reuse while the
/// recycle pool has room.
pub(super) async fn delete_segments_below(
    inner: &Rc<Inner>,
    first_kept: i64,
) -> Result<usize, StorageError> {
    let recycle_max = inner.config.borrow().recycle_segments_max;
    let (removed, pooled) = {
        let mut state = inner.state.borrow_mut();
        let bases: Vec<i64> = state
            .segments
            .values()
            .take_while(|segment| segment.base_offset < first_kept && segment.is_sealed())
            .map(|segment| segment.base_offset)
            .collect();
        let removed: Vec<_> = bases
            .iter()
            .filter_map(|base| state.segments.remove(base))
            .collect();
        let first_base = *state
            .segments
            .keys()
            .next()
            .expect("the active segment remains");
        state.log_start_offset = state.log_start_offset.max(first_base);
        let room = recycle_max.saturating_sub(state.recycled.len());
        (removed, room)
    };
    let mut recycled = Vec::new();
    for (at, segment) in removed.iter().enumerate() {
        let paths = &segment.paths;
        // The newest deleted segments are recycled: the oldest files go first.
        if at + pooled >= removed.len() {
            let target = inner
                .dir
                .join(format!("{RECYCLED_PREFIX}{:020}.log", segment.base_offset));
            tracing::info!(segment = %paths.log.display(), "retention recycles segment");
            inner
                .disk
                .rename(&paths.log, &target)
                .await
                .map_err(|source| StorageError::io("cannot rename", &paths.log, source))?;
            for path in [&paths.index, &paths.time_index] {
                remove_if_present(inner, path).await?;
            }
            recycled.push(target);
        } else {
            tracing::info!(segment = %paths.log.display(), "retention deletes segment");
            delete_segment_files(inner, paths).await?;
        }
    }
    if !removed.is_empty() {
        sync_dir(inner).await?;
    }
    inner.state.borrow_mut().recycled.extend(recycled);
    Ok(removed.len())
}

async fn remove_if_present(inner: &Inner, path: &std::path::Path) -> Result<(), StorageError> {
    match inner.disk.remove_file(path).await {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::io("cannot delete", path, source))
        }
        _ => Ok(()),
    }
}

async fn delete_segment_files(inner: &Inner, paths: &SegmentPaths) -> Result<(), StorageError> {
    for path in [&paths.log, &paths.index, &paths.time_index] {
        remove_if_present(inner, path).await?;
    }
    Ok(())
}

/// Writes every index entry of the open segments and removes an unused prepared segment.
pub(super) async fn close(inner: &Rc<Inner>) -> Result<(), StorageError> {
    // A segment being prepared is waited for, so that it is removed below rather than left
    // behind by a task that outlives the log.
    loop {
        let mut progressed = pin!(inner.progress.notified());
        progressed.as_mut().enable();
        if !inner.state.borrow().preparing {
            break;
        }
        progressed.await;
    }
    let (index_writes, prepared) = {
        let mut state = inner.state.borrow_mut();
        state.closed = true;
        let open_bases = state.open_bases.clone();
        let writes: Vec<_> = open_bases
            .into_iter()
            .filter_map(|base| Some((base, state.segments.get_mut(&base)?.take_index_write(true)?)))
            .collect();
        (writes, state.prepared.take())
    };
    if let Some(prepared) = prepared {
        drop(prepared.files);
        delete_segment_files(inner, &prepared.paths).await?;
    }
    if inner.state.borrow().failure.is_some() {
        return Ok(());
    }
    for (base, write) in index_writes {
        persist_index(inner, base, write).await?;
    }
    Ok(())
}
