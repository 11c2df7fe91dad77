//! `Segment`: one `.log` file of back-to-back RecordBatch v2 bytes, named by its base
//! offset (20 digits), with its sparse `.index` and `.timeindex`.
//!
//! Byte format of `.log`: batches exactly as producers sent them, base offsets patched,
//! contiguous in offset. Past the logical end the file may hold preallocated zeros (or, after
//! a crash, a torn batch); the logical end is kept in memory and found again at start-up by
//! scanning from the last index entry (see `recovery`).
//!
//! Crash policy: a segment's bytes are trusted only up to the first batch that fails its
//! checks (length, magic, CRC32C, offset continuity); the rest is truncated at start-up.
//! Preallocated zeros fail the magic check, so they end the scan too.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use protocol::record_batch::{self, BatchHeader, HEADER_BYTES, MAX_BATCH_BYTES};

use super::config::{LogConfig, Preallocation, WriteMode};
use super::error::StorageError;
use super::offset_index::{IndexEntry, OffsetIndex, INDEX_ENTRY_BYTES};
use super::retention::SegmentFacts;
use super::time_index::{TimeEntry, TimeIndex, TIME_ENTRY_BYTES};
use super::write_buffer::{PendingWrite, WriteBuffer};
use crate::io::{aligned::round_up, AlignedBuf, Disk, File, OpenOptions, BLOCK_BYTES};

/// Stem of the files of a segment prepared ahead of its roll (renamed at first write).
pub const PREPARED_STEM: &str = "prepared";
/// Prefix of log files kept for reuse after retention deleted their segment.
pub const RECYCLED_PREFIX: &str = "recycled-";
/// Bytes read at once when scanning a log.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Index entries are written to their files in groups of at least this many.
const INDEX_WRITE_ENTRIES_MIN: usize = 64;
/// Size of one zero-fill write when preallocating.
const ZERO_FILL_WRITE_BYTES: usize = 256 * 1024;

/// The three files of a segment.
#[derive(Debug, Clone)]
pub struct SegmentPaths {
    pub log: PathBuf,
    pub index: PathBuf,
    pub time_index: PathBuf,
}

impl SegmentPaths {
    pub fn for_base(dir: &Path, base_offset: i64) -> SegmentPaths {
        SegmentPaths::for_stem(dir, &format!("{base_offset:020}"))
    }

    pub fn for_stem(dir: &Path, stem: &str) -> SegmentPaths {
        SegmentPaths {
            log: dir.join(format!("{stem}.log")),
            index: dir.join(format!("{stem}.index")),
            time_index: dir.join(format!("{stem}.timeindex")),
        }
    }
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// How far some kind of progress has got within a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontier {
    /// Log bytes from the start of the segment.
    pub bytes: u64,
    /// First offset not covered.
    pub end_offset: i64,
}

/// Open handles of a segment's files.
#[derive(Clone)]
pub struct SegmentFiles {
    /// Write handle (O_DIRECT when `align` is 4096).
    pub log: File,
    /// The same file opened O_DIRECT | O_DSYNC (None when writes are buffered): a round
    /// whose data must be durable writes through it, the write and its fdatasync in one
    /// operation.
    pub durable_log: Option<File>,
    /// Buffered read handle (the same file).
    pub reader: File,
    pub index: File,
    pub time_index: File,
    /// Write alignment: `BLOCK_BYTES` under O_DIRECT, else 1.
    pub align: usize,
}

impl SegmentFiles {
    /// For a sealed segment: every descriptor becomes evictable (`io::File`), and all but
    /// the read handle close now; they open again when something needs them.
    pub fn release_sealed(&self) {
        let durable = self.durable_log.iter();
        for file in [&self.log, &self.reader, &self.index, &self.time_index]
            .into_iter()
            .chain(durable.clone())
        {
            file.make_evictable();
        }
        for file in [&self.log, &self.index, &self.time_index]
            .into_iter()
            .chain(durable)
        {
            if !file.shares_descriptor_with(&self.reader) {
                file.close_now();
            }
        }
    }

    /// The files were renamed to `paths`.
    pub fn renamed(&self, paths: &SegmentPaths) {
        self.log.set_path(&paths.log);
        if let Some(durable) = &self.durable_log {
            durable.set_path(&paths.log);
        }
        self.reader.set_path(&paths.log);
        self.index.set_path(&paths.index);
        self.time_index.set_path(&paths.time_index);
    }

    /// Opens (creating if asked) the files at `paths`.
    pub async fn open(
        disk: &Disk,
        paths: &SegmentPaths,
        config: &LogConfig,
        create: bool,
    ) -> Result<SegmentFiles, StorageError> {
        let options = if create {
            OpenOptions::CREATE
        } else {
            OpenOptions::READ_WRITE
        };
        let open = |path: &Path, options: OpenOptions| {
            let disk = disk.clone();
            let path = path.to_path_buf();
            async move {
                disk.open(&path, options)
                    .await
                    .map_err(|source| StorageError::io("cannot open", &path, source))
            }
        };
        let reader = open(&paths.log, options).await?;
        let (log, align) = match config.write_mode {
            WriteMode::Buffered => (reader.clone(), 1),
            WriteMode::Direct => {
                let direct = OpenOptions {
                    direct: true,
                    ..OpenOptions::READ_WRITE
                };
                match disk.open(&paths.log, direct).await {
                    Ok(file) => (file, BLOCK_BYTES),
                    Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::warn!(path = %paths.log.display(), "O_DIRECT is not supported by this filesystem; writing through the page cache");
                        (reader.clone(), 1)
                    }
                    Err(error) => return Err(StorageError::io("cannot open", &paths.log, error)),
                }
            }
        };
        let durable_log = if align == BLOCK_BYTES {
            let durable = OpenOptions {
                direct: true,
                dsync: true,
                ..OpenOptions::READ_WRITE
            };
            Some(open(&paths.log, durable).await?)
        } else {
            None
        };
        Ok(SegmentFiles {
            log,
            durable_log,
            reader,
            index: open(&paths.index, options).await?,
            time_index: open(&paths.time_index, options).await?,
            align,
        })
    }
}

/// Index entries due to be written to the index files.
pub struct IndexWrite {
    pub index_file: File,
    pub index_bytes: Vec<u8>,
    pub index_position: u64,
    pub time_file: File,
    pub time_bytes: Vec<u8>,
    pub time_position: u64,
    pub entries: usize,
}

/// One segment of a partition log. Owned by the log; only the owner shard touches it.
pub struct Segment {
    pub base_offset: i64,
    pub paths: SegmentPaths,
    pub files: SegmentFiles,
    /// Appended (not necessarily written): the logical end. `bytes == write.end()` while
    /// the segment is open for appends.
    pub appended: Frontier,
    /// Handed to the OS and completed.
    pub written: Frontier,
    /// fdatasync'ed. Invariant: `durable <= written <= appended`.
    pub durable: Frontier,
    /// When the segment was created (for `segment.ms`) or, after a restart, loaded.
    pub created_ms: i64,
    pub indexes: SegmentIndexes,
    /// `None` once the segment is sealed (rolled, written, synced, trimmed).
    pub write: Option<WriteBuffer>,
    /// The file has space reserved up to here.
    pub allocated_bytes: u64,
    /// A background preallocation is running.
    pub allocating: bool,
    /// Preallocation failed since it last worked (said once in the log, not per write).
    pub allocation_failed: bool,
    /// The files still carry the prepared names; renamed before the first write.
    pub prepared_paths: Option<SegmentPaths>,
}

impl Segment {
    /// A segment over `files` whose first `durable.bytes` bytes are durable and indexed by
    /// `indexes`. `tail_block` holds the file bytes of the partial block at the end.
    pub fn new(
        paths: SegmentPaths,
        files: SegmentFiles,
        durable: Frontier,
        indexes: SegmentIndexes,
        created_ms: i64,
        tail_block: &[u8],
        config: &LogConfig,
    ) -> Segment {
        let write = WriteBuffer::new(
            files.align,
            config.write_buffer_capacity(),
            durable.bytes,
            tail_block,
        );
        Segment {
            base_offset: indexes.base_offset,
            paths,
            allocated_bytes: round_up(durable.bytes as usize, BLOCK_BYTES) as u64,
            files,
            appended: durable,
            written: durable,
            durable,
            created_ms,
            indexes,
            write: Some(write),
            allocating: false,
            allocation_failed: false,
            prepared_paths: None,
        }
    }

    /// An empty segment starting at `base_offset`.
    pub fn empty(
        base_offset: i64,
        paths: SegmentPaths,
        files: SegmentFiles,
        now_ms: i64,
        config: &LogConfig,
    ) -> Segment {
        let start = Frontier {
            bytes: 0,
            end_offset: base_offset,
        };
        let indexes = SegmentIndexes::new(base_offset, config.index_interval_bytes);
        Segment::new(paths, files, start, indexes, now_ms, &[], config)
    }

    pub fn max_timestamp(&self) -> i64 {
        self.indexes.max_timestamp
    }

    /// Where a scan for `offset` starts: the last index entry at or before it.
    pub fn scan_start(&self, offset: i64) -> IndexEntry {
        let relative =
            (offset.max(self.base_offset) - self.base_offset).min(i64::from(u32::MAX)) as u32;
        self.indexes
            .offset_index
            .lookup(relative)
            .unwrap_or(IndexEntry {
                relative_offset: 0,
                position: 0,
            })
    }

    pub fn is_sealed(&self) -> bool {
        self.write.is_none()
    }

    pub fn size_bytes(&self) -> u64 {
        self.appended.bytes
    }

    /// What retention decides on; the file's modification time is looked up only when the
    /// timestamps cannot be trusted.
    pub fn retention_facts(&self) -> SegmentFacts {
        SegmentFacts {
            size_bytes: self.size_bytes(),
            max_timestamp: self.max_timestamp(),
            modified_ms: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.appended.bytes == 0
    }

    /// Appends one validated batch (offsets already patched) to the write buffer and the
    /// indexes; false when the buffer is full.
    pub fn try_append(&mut self, batch: &[u8], header: &BatchHeader) -> bool {
        let write = self.write.as_mut().expect("appends go to an open segment");
        let position = write.end();
        if !write.try_push(batch) {
            return false;
        }
        assert_eq!(header.base_offset, self.appended.end_offset);
        self.indexes.note_batch(position, header);
        self.appended = Frontier {
            bytes: position + batch.len() as u64,
            end_offset: header.last_offset() + 1,
        };
        true
    }

    /// Takes everything appended but not handed off, as one write.
    pub fn take_write(&mut self) -> Option<PendingWrite> {
        self.write.as_mut()?.take()
    }

    /// Index entries that point at durable bytes and are not in the files yet; `None` when
    /// fewer than a group are due, unless `force`.
    pub fn take_index_write(&mut self, force: bool) -> Option<IndexWrite> {
        let from = self.indexes.offset_index.persisted();
        let durable_position = self.durable.bytes;
        let to = self
            .indexes
            .offset_index
            .entries()
            .partition_point(|entry| u64::from(entry.position) < durable_position);
        let due = to.saturating_sub(from);
        if due == 0 || (due < INDEX_WRITE_ENTRIES_MIN && !force) {
            return None;
        }
        Some(IndexWrite {
            index_file: self.files.index.clone(),
            index_bytes: self.indexes.offset_index.encode(from, to),
            index_position: (from * INDEX_ENTRY_BYTES) as u64,
            time_file: self.files.time_index.clone(),
            time_bytes: self
                .indexes
                .time_index
                .encode(self.indexes.time_index.persisted(), to),
            time_position: (self.indexes.time_index.persisted() * TIME_ENTRY_BYTES) as u64,
            entries: to,
        })
    }

    pub fn mark_index_persisted(&mut self, entries: usize) {
        self.indexes.offset_index.mark_persisted(entries);
        self.indexes.time_index.mark_persisted(entries);
    }
}

/// A segment's two sparse indexes, kept in lockstep, and the counters that decide when the
/// next entry is due. The append path and recovery both feed batches through `note_batch`,
/// so an index rebuilt from the log equals the one built while appending.
#[derive(Debug, Clone)]
pub struct SegmentIndexes {
    pub base_offset: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// Largest batch timestamp seen (-1 when empty).
    pub max_timestamp: i64,
    index_interval_bytes: u32,
    bytes_since_entry: u64,
}

impl SegmentIndexes {
    pub fn new(base_offset: i64, index_interval_bytes: u32) -> SegmentIndexes {
        SegmentIndexes {
            base_offset,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            max_timestamp: -1,
            index_interval_bytes,
            bytes_since_entry: 0,
        }
    }

    /// Indexes loaded from files, resuming at their last entry: the batch there is already
    /// indexed, so the scan that follows starts with it and passes it to `note_batch` too.
    pub fn resume(
        base_offset: i64,
        index_interval_bytes: u32,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
    ) -> SegmentIndexes {
        assert_eq!(offset_index.entries().len(), time_index.len());
        let max_timestamp = time_index
            .entries()
            .last()
            .map_or(-1, |entry| entry.max_timestamp);
        SegmentIndexes {
            base_offset,
            offset_index,
            time_index,
            max_timestamp,
            index_interval_bytes,
            bytes_since_entry: 0,
        }
    }

    /// Records a batch appended at `position`.
    pub fn note_batch(&mut self, position: u64, header: &BatchHeader) {
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        let relative_offset = (header.base_offset - self.base_offset) as u32;
        let already_indexed = self
            .offset_index
            .last()
            .is_some_and(|last| last.relative_offset >= relative_offset);
        if !already_indexed && self.bytes_since_entry >= u64::from(self.index_interval_bytes) {
            self.offset_index.append(IndexEntry {
                relative_offset,
                position: position as u32,
            });
            self.time_index.append(TimeEntry {
                max_timestamp: self.max_timestamp,
                relative_offset,
            });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_bytes() as u64;
    }
}

/// Writes due index entries to their files. Not fsynced: the index is derived data.
pub async fn write_index(write: IndexWrite) -> Result<usize, StorageError> {
    let (result, _) = write
        .index_file
        .write_all_at(
            write.index_bytes.clone(),
            write.index_bytes.len(),
            write.index_position,
        )
        .await;
    result.map_err(|source| {
        StorageError::io("cannot write index", write.index_file.path(), source)
    })?;
    let (result, _) = write
        .time_file
        .write_all_at(
            write.time_bytes.clone(),
            write.time_bytes.len(),
            write.time_position,
        )
        .await;
    result.map_err(|source| {
        StorageError::io("cannot write time index", write.time_file.path(), source)
    })?;
    Ok(write.entries)
}

/// Reserves `from..to` of a log file as `mode` says. Zero-fill writes whole blocks, so
/// `from` must lie at or past the block holding the logical end.
pub async fn preallocate(
    file: &File,
    mode: Preallocation,
    from: u64,
    to: u64,
) -> Result<(), StorageError> {
    let fail = |source| StorageError::io("cannot preallocate", file.path(), source);
    match mode {
        Preallocation::None => Ok(()),
        Preallocation::Fallocate => file.allocate(from, to - from).await.map_err(fail),
        Preallocation::ZeroFill => {
            assert_eq!(from % BLOCK_BYTES as u64, 0);
            let mut zeros = AlignedBuf::with_capacity(ZERO_FILL_WRITE_BYTES);
            zeros.resize_zeroed(ZERO_FILL_WRITE_BYTES);
            let mut position = from;
            while position < to {
                let len =
                    round_up((to - position) as usize, BLOCK_BYTES).min(ZERO_FILL_WRITE_BYTES);
                let (result, returned) = file.write_all_at(zeros, len, position).await;
                zeros = returned;
                result.map_err(fail)?;
                position += len as u64;
            }
            // Commits the blocks' conversion to written extents (and the size) now, in one
            // journal commit of its own, so the data fdatasyncs that follow find nothing
            // but data to write.
            file.sync_data().await.map_err(fail)
        }
    }
}

/// Where a scan of a log stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    /// Position after the last valid batch.
    pub position: u64,
    /// Offset after the last valid batch.
    pub next_offset: i64,
    /// Why the scan stopped before `limit`, if it did.
    pub stopped_by: Option<String>,
}

/// Walks batches from `from` (which must hold a batch starting at `expected_offset`) up to
/// `limit`, calling `visit` with each batch's position and header until it breaks. With
/// `verify`, each batch is read whole and must pass `validate_batch`; the scan stops at the
/// first batch that fails (torn, corrupt, zeros, or an offset out of sequence).
pub async fn scan_log(
    file: &File,
    from: u64,
    limit: u64,
    expected_offset: i64,
    verify: bool,
    mut visit: impl FnMut(u64, &BatchHeader) -> ControlFlow<()>,
) -> Result<ScanEnd, StorageError> {
    let mut chunk: Vec<u8> = Vec::new();
    let mut chunk_position = from;
    let mut position = from;
    let mut next_offset = expected_offset;
    let stop = |position, next_offset, reason: String| ScanEnd {
        position,
        next_offset,
        stopped_by: Some(reason),
    };
    while position < limit {
        let covered = |chunk: &Vec<u8>, chunk_position: u64, need: u64| {
            position >= chunk_position && position + need <= chunk_position + chunk.len() as u64
        };
        if !covered(&chunk, chunk_position, HEADER_BYTES as u64) {
            let want = ((limit - position) as usize).min(SCAN_CHUNK_BYTES);
            chunk = read(file, want, position).await?;
            chunk_position = position;
            if chunk.len() < HEADER_BYTES {
                return Ok(stop(
                    position,
                    next_offset,
                    format!("{} bytes left, less than a batch header", chunk.len()),
                ));
            }
        }
        let at = (position - chunk_position) as usize;
        let header = match BatchHeader::parse(&chunk[at..]) {
            Ok(header) => header,
            Err(error) => return Ok(stop(position, next_offset, error.to_string())),
        };
        if header.base_offset != next_offset {
            let reason = format!(
                "batch has base offset {}, expected {next_offset}",
                header.base_offset
            );
            return Ok(stop(position, next_offset, reason));
        }
        let total = header.total_bytes() as u64;
        if position + total > limit {
            return Ok(stop(
                position,
                next_offset,
                format!("batch of {total} bytes runs past the end"),
            ));
        }
        if verify {
            if !covered(&chunk, chunk_position, total) {
                chunk = read(
                    file,
                    (total as usize)
                        .max(SCAN_CHUNK_BYTES)
                        .min((limit - position) as usize),
                    position,
                )
                .await?;
                chunk_position = position;
            }
            let at = (position - chunk_position) as usize;
            let Some(bytes) = chunk.get(at..at + total as usize) else {
                return Ok(stop(position, next_offset, "batch is torn".into()));
            };
            if let Err(error) = record_batch::validate_batch(bytes, MAX_BATCH_BYTES) {
                return Ok(stop(position, next_offset, error.to_string()));
            }
        }
        if visit(position, &header).is_break() {
            return Ok(ScanEnd {
                position,
                next_offset,
                stopped_by: None,
            });
        }
        position += total;
        next_offset = header.last_offset() + 1;
    }
    Ok(ScanEnd {
        position,
        next_offset,
        stopped_by: None,
    })
}

/// Reads whole batches from a segment: the batch holding `offset` (found by scanning from
/// `start`, a position at or before it) and then as many following batches as fit in
/// `max_bytes`, never past `limit`. The first batch is returned whole whatever its size.
pub async fn read_batches(
    file: &File,
    start: IndexEntry,
    base_offset: i64,
    offset: i64,
    max_bytes: usize,
    limit: u64,
) -> Result<Option<Bytes>, StorageError> {
    let corrupt = |position: u64, reason: String| StorageError::Corrupt {
        path: file.path().to_path_buf(),
        position,
        reason,
    };
    let mut position = u64::from(start.position);
    let expected = base_offset + i64::from(start.relative_offset);
    let mut found = None;
    let end = scan_log(
        file,
        position,
        limit,
        expected,
        false,
        |_position, header| {
            if header.last_offset() >= offset {
                found = Some(*header);
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .await?;
    let Some(first) = found else {
        return match end.stopped_by {
            Some(reason) => Err(corrupt(end.position, reason)),
            None => Ok(None),
        };
    };
    position = end.position;
    let want = first
        .total_bytes()
        .max(max_bytes.min((limit - position) as usize));
    let data = read(file, want, position).await?;
    if data.len() < first.total_bytes() {
        return Err(corrupt(
            position,
            "batch is shorter than its header says".into(),
        ));
    }
    // Retention may have deleted the segment since the scan and its file been recycled for
    // new batches: only what continues the scanned batch is served, nothing if that is gone
    // (the next fetch then finds its offset below the log start).
    let cut = continuing_batches(&data, &first);
    if cut == 0 {
        return Ok(None);
    }
    let mut data = data;
    data.truncate(cut);
    Ok(Some(Bytes::from(data)))
}

/// How many bytes at the front of `data` are whole batches that begin with `first` and
/// continue it offset after offset; 0 when `data` does not begin with `first`.
fn continuing_batches(data: &[u8], first: &BatchHeader) -> usize {
    if BatchHeader::parse(data).ok().as_ref() != Some(first) {
        return 0;
    }
    let mut cut = first.total_bytes();
    let mut next_offset = first.last_offset() + 1;
    while let Ok(header) = BatchHeader::parse(&data[cut..]) {
        if header.base_offset != next_offset || cut + header.total_bytes() > data.len() {
            break;
        }
        cut += header.total_bytes();
        next_offset = header.last_offset() + 1;
    }
    cut
}

async fn read(file: &File, len: usize, position: u64) -> Result<Vec<u8>, StorageError> {
    file.read_at(len, position)
        .await
        .map_err(|source| StorageError::io("cannot read", file.path(), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch header without records: `base_offset` and `last_offset_delta` as given.
    fn empty_batch(base_offset: i64, last_offset_delta: i32) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES);
        bytes.extend_from_slice(&base_offset.to_be_bytes());
        bytes.extend_from_slice(&((HEADER_BYTES - 12) as i32).to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&0i16.to_be_bytes());
        bytes.extend_from_slice(&last_offset_delta.to_be_bytes());
        bytes.extend_from_slice(&[0; 8 + 8 + 8 + 2 + 4 + 4]);
        bytes
    }

    #[test]
    fn a_read_serves_only_batches_that_continue_the_scanned_one() {
        let data = [
            empty_batch(0, 2),
            empty_batch(3, 0),
            empty_batch(4, 5),
            // A batch of the data a recycled file took in after the scan.
            empty_batch(9_000, 0),
            empty_batch(10, 0),
        ]
        .concat();
        let first = BatchHeader::parse(&data).unwrap();
        assert_eq!(continuing_batches(&data, &first), 3 * HEADER_BYTES);
        // The file no longer begins with the scanned batch: nothing is served.
        let recycled = [empty_batch(9_000, 0), empty_batch(9_001, 0)].concat();
        assert_eq!(continuing_batches(&recycled, &first), 0);
        // A batch cut short by the read's length ends what is served.
        assert_eq!(
            continuing_batches(&data[..2 * HEADER_BYTES + 10], &first),
            2 * HEADER_BYTES
        );
    }

    #[test]
    fn file_names_carry_twenty_digit_offsets() {
        let paths = SegmentPaths::for_base(Path::new("/data/t-0"), 1234);
        assert_eq!(paths.log, Path::new("/data/t-0/00000000000000001234.log"));
        assert_eq!(
            paths.time_index,
            Path::new("/data/t-0/00000000000000001234.timeindex")
        );
        assert_eq!(parse_log_file_name("00000000000000001234.log"), Some(1234));
        assert_eq!(parse_log_file_name("prepared.log"), None);
        assert_eq!(parse_log_file_name("00000000000000001234.index"), None);
        assert_eq!(parse_log_file_name("0000000000000000123x.log"), None);
    }
}
