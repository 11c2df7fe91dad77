//! `LogLoader`: opens a partition directory at start-up and brings its segments back to a
//! state that is safe to serve and append to.
//!
//! For every segment, oldest first: load `.index` and `.timeindex` and check them (whole
//! entries, in order, in lockstep, pointing inside the file); scan the log from the last
//! index entry forward, verifying each batch (length, magic, CRC32C, offset continuity);
//! truncate the file at the first batch that fails. When the indexes are damaged, or the
//! batch at their last entry fails, the indexes are rebuilt by scanning the whole segment.
//! A segment whose start does not continue the previous one (its predecessor lost its
//! tail) ends the log: it and every later segment are deleted, because a log has no gaps.
//!
//! Files of a segment prepared ahead of a roll but never used (`prepared.*`) and index files
//! without a log are deleted; recycled log files (`recycled-*.log`) are kept for reuse.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;

use super::config::LogConfig;
use super::error::StorageError;
use super::offset_index::OffsetIndex;
use super::segment::RECYCLED_PREFIX;
use super::segment::{
    parse_log_file_name, scan_log, Frontier, Segment, SegmentFiles, SegmentIndexes, SegmentPaths,
    PREPARED_STEM,
};
use super::time_index::TimeIndex;
use crate::io::{aligned::round_down, Disk, File};

/// The segments of a log as loaded, oldest first; the last one is open for appends.
pub struct LoadedLog {
    pub segments: BTreeMap<i64, Segment>,
    /// Log files kept for reuse.
    pub recycled: Vec<std::path::PathBuf>,
}

pub struct LogLoader<'a> {
    pub disk: &'a Disk,
    pub dir: &'a Path,
    pub config: &'a LogConfig,
    pub now_ms: i64,
}

impl LogLoader<'_> {
    pub async fn load(&self) -> Result<LoadedLog, StorageError> {
        let dir = self.dir;
        self.disk
            .create_dir_all(dir)
            .await
            .map_err(|source| StorageError::io("cannot create directory", dir, source))?;
        let names = self
            .disk
            .list_dir(dir)
            .map_err(|source| StorageError::io("cannot list directory", dir, source))?;
        let mut bases: Vec<i64> = names
            .iter()
            .filter_map(|name| parse_log_file_name(name))
            .collect();
        bases.sort_unstable();
        for name in &names {
            let stem = name.split('.').next().unwrap_or("");
            let orphan_index = (name.ends_with(".index") || name.ends_with(".timeindex"))
                && !names.contains(&format!("{stem}.log"));
            if stem == PREPARED_STEM || orphan_index {
                self.remove(&dir.join(name)).await?;
            }
        }

        let mut segments = BTreeMap::new();
        let mut expected_base = None;
        for (at, base) in bases.iter().copied().enumerate() {
            if expected_base.is_some_and(|expected| expected != base) {
                tracing::warn!(
                    dir = %dir.display(),
                    segment = base,
                    expected = expected_base,
                    "segment does not continue the log before it; deleting it and every later segment"
                );
                for later in &bases[at..] {
                    self.remove_segment(&SegmentPaths::for_base(dir, *later))
                        .await?;
                }
                break;
            }
            let segment = self.load_segment(base).await?;
            expected_base = Some(segment.appended.end_offset);
            segments.insert(base, segment);
        }
        if segments.is_empty() {
            let paths = SegmentPaths::for_base(dir, 0);
            let files = SegmentFiles::open(self.disk, &paths, self.config, true).await?;
            self.sync_dir().await?;
            segments.insert(0, Segment::empty(0, paths, files, self.now_ms, self.config));
        }
        // Only the last segment stays open for appends.
        let last_base = *segments.keys().next_back().expect("at least one segment");
        for segment in segments
            .values_mut()
            .filter(|segment| segment.base_offset != last_base)
        {
            segment.write = None;
            segment.files.release_sealed();
        }
        let mut recycled: Vec<_> = names
            .iter()
            .filter(|name| name.starts_with(RECYCLED_PREFIX) && name.ends_with(".log"))
            .map(|name| dir.join(name))
            .collect();
        recycled.sort();
        Ok(LoadedLog { segments, recycled })
    }

    async fn load_segment(&self, base: i64) -> Result<Segment, StorageError> {
        let paths = SegmentPaths::for_base(self.dir, base);
        let files = SegmentFiles::open(self.disk, &paths, self.config, true).await?;
        let file_len = file_len(&files.reader).await?;
        let index_bytes = read_all(&files.index).await?;
        let time_bytes = read_all(&files.time_index).await?;
        let interval = self.config.index_interval_bytes;
        let loaded = match (
            OffsetIndex::decode(&index_bytes),
            TimeIndex::decode(&time_bytes),
        ) {
            (Ok(offsets), Ok(times)) if indexes_agree(&offsets, &times, file_len) => {
                Some(SegmentIndexes::resume(base, interval, offsets, times))
            }
            (offsets, times) => {
                let reason = offsets
                    .err()
                    .or(times.err())
                    .unwrap_or_else(|| "indexes disagree".into());
                tracing::warn!(segment = %paths.log.display(), %reason, "rebuilding indexes from the log");
                None
            }
        };
        let index_entries_loaded = loaded
            .as_ref()
            .map_or(0, |indexes| indexes.offset_index.entries().len());
        let (indexes, end) = match loaded {
            Some(indexes) => match self.scan(&files.reader, file_len, indexes).await? {
                Some(done) => done,
                None => {
                    tracing::warn!(segment = %paths.log.display(), "last index entry points at no valid batch; rebuilding indexes");
                    self.rebuild(&files.reader, base, file_len).await?
                }
            },
            None => self.rebuild(&files.reader, base, file_len).await?,
        };
        if let Some(reason) = &end.stopped_by {
            if end.position < file_len {
                tracing::info!(
                    segment = %paths.log.display(),
                    valid_bytes = end.position,
                    file_bytes = file_len,
                    %reason,
                    "log ends before the end of its file; truncating the rest"
                );
            }
        }
        if end.position < file_len {
            files
                .log
                .set_len(end.position)
                .await
                .map_err(|source| StorageError::io("cannot truncate", &paths.log, source))?;
            files
                .log
                .sync_data()
                .await
                .map_err(|source| StorageError::io("cannot sync", &paths.log, source))?;
        }
        let mut indexes = indexes;
        indexes
            .offset_index
            .truncate_to_position(end.position.min(u32::MAX as u64) as u32);
        let kept = indexes.offset_index.entries().len();
        indexes.time_index.truncate(kept);
        if kept != index_entries_loaded || indexes.offset_index.persisted() != kept {
            rewrite_indexes(&files, &mut indexes).await?;
        }
        let durable = Frontier {
            bytes: end.position,
            end_offset: end.next_offset,
        };
        let tail_from = round_down(end.position as usize, files.align) as u64;
        let tail_block = files
            .reader
            .read_at((end.position - tail_from) as usize, tail_from)
            .await
            .map_err(|source| StorageError::io("cannot read", &paths.log, source))?;
        Ok(Segment::new(
            paths,
            files,
            durable,
            indexes,
            self.now_ms,
            &tail_block,
            self.config,
        ))
    }

    /// Scans from the last index entry; `None` when the batch there is not valid.
    async fn scan(
        &self,
        reader: &File,
        file_len: u64,
        mut indexes: SegmentIndexes,
    ) -> Result<Option<(SegmentIndexes, super::segment::ScanEnd)>, StorageError> {
        let base = indexes.base_offset;
        let start = indexes.offset_index.last();
        let (from, expected) = start.map_or((0, base), |entry| {
            (
                u64::from(entry.position),
                base + i64::from(entry.relative_offset),
            )
        });
        let mut batches = 0u64;
        let end = scan_log(
            reader,
            from,
            file_len,
            expected,
            true,
            |position, header| {
                indexes.note_batch(position, header);
                batches += 1;
                ControlFlow::Continue(())
            },
        )
        .await?;
        if start.is_some() && batches == 0 {
            return Ok(None);
        }
        Ok(Some((indexes, end)))
    }

    async fn rebuild(
        &self,
        reader: &File,
        base: i64,
        file_len: u64,
    ) -> Result<(SegmentIndexes, super::segment::ScanEnd), StorageError> {
        let indexes = SegmentIndexes::new(base, self.config.index_interval_bytes);
        let done = self.scan(reader, file_len, indexes).await?;
        Ok(done.expect("a scan from position 0 always succeeds"))
    }

    async fn remove_segment(&self, paths: &SegmentPaths) -> Result<(), StorageError> {
        for path in [&paths.log, &paths.index, &paths.time_index] {
            if self.disk.exists(path) {
                self.remove(path).await?;
            }
        }
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<(), StorageError> {
        self.disk
            .remove_file(path)
            .await
            .map_err(|source| StorageError::io("cannot delete", path, source))
    }

    async fn sync_dir(&self) -> Result<(), StorageError> {
        self.disk
            .sync_dir(self.dir)
            .await
            .map_err(|source| StorageError::io("cannot sync directory", self.dir, source))
    }
}

/// The two indexes move in lockstep and point inside the file.
fn indexes_agree(offsets: &OffsetIndex, times: &TimeIndex, file_len: u64) -> bool {
    offsets.entries().len() == times.len()
        && offsets
            .entries()
            .iter()
            .zip(times.entries())
            .all(|(offset, time)| offset.relative_offset == time.relative_offset)
        && offsets
            .last()
            .is_none_or(|last| u64::from(last.position) < file_len)
}

/// Replaces both index files with the entries in memory (all of which cover durable data).
pub async fn rewrite_indexes(
    files: &SegmentFiles,
    indexes: &mut SegmentIndexes,
) -> Result<(), StorageError> {
    let count = indexes.offset_index.entries().len();
    let rewrite = |file: &File, bytes: Vec<u8>| {
        let file = file.clone();
        async move {
            file.set_len(0)
                .await
                .map_err(|source| StorageError::io("cannot truncate", file.path(), source))?;
            let len = bytes.len();
            let (result, _) = file.write_all_at(bytes, len, 0).await;
            result.map_err(|source| StorageError::io("cannot write index", file.path(), source))
        }
    };
    rewrite(&files.index, indexes.offset_index.encode(0, count)).await?;
    rewrite(&files.time_index, indexes.time_index.encode(0, count)).await?;
    indexes.offset_index.mark_persisted(count);
    indexes.time_index.mark_persisted(count);
    Ok(())
}

async fn file_len(file: &File) -> Result<u64, StorageError> {
    file.len()
        .await
        .map_err(|source| StorageError::io("cannot stat", file.path(), source))
}

async fn read_all(file: &File) -> Result<Vec<u8>, StorageError> {
    let len = file_len(file).await?;
    // Index files are bounded by their segment: one entry per batch at the very most.
    let len = usize::try_from(len)
        .unwrap_or(usize::MAX)
        .min(64 * 1024 * 1024);
    file.read_at(len, 0)
        .await
        .map_err(|source| StorageError::io("cannot read", file.path(), source))
}
