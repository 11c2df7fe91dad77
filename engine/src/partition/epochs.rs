//! The leader epoch cache of a replicated partition: the offset at which each leader epoch
//! began, as Kafka's `leader-epoch-checkpoint` keeps it. A new leader answers
//! OffsetsForLeaderEpoch from it, and a follower uses the answer to cut a tail the leader
//! does not have (written under an older leader that died before the ISR had it).
//!
//! Kept in the partition's directory as Kafka's text format: a version line (0), a count
//! line, then `epoch start_offset` per line. Every change is stored (replaced atomically and
//! durably) before the batches it describes are appended, so the file never lags the log;
//! entries past the log end (a crash after storing, before appending) are dropped at open.

use std::path::Path;

use crate::io::Disk;
use crate::storage::StorageError;

pub const FILE_NAME: &str = "leader-epoch-checkpoint";

/// Epochs kept at most; the oldest go first (the file stays a small metadata file).
const ENTRIES_MAX: usize = 2000;

/// "No epoch": what Kafka answers for an epoch older than any it knows.
pub const UNDEFINED_EPOCH: i32 = -1;

/// One epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochStart {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Epochs in increasing order, of both epoch and start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochStart>,
}

impl EpochCache {
    /// The cache stored in `dir` (empty when there is none), without entries at or past
    /// `log_end_offset`.
    pub async fn load(
        disk: &Disk,
        dir: &Path,
        log_end_offset: i64,
    ) -> Result<EpochCache, StorageError> {
        let mut cache = crate::storage::read_metadata_file(disk, &dir.join(FILE_NAME), decode)
            .await?
            .unwrap_or_default();
        cache.truncate_to(log_end_offset);
        Ok(cache)
    }

    pub async fn store(&self, disk: &Disk, dir: &Path) -> Result<(), StorageError> {
        disk.write_small_file(dir, FILE_NAME, self.encode().as_bytes())
            .await
            .map_err(|source| StorageError::io("cannot write", dir.join(FILE_NAME), source))
    }

    pub fn latest(&self) -> Option<EpochStart> {
        self.entries.last().copied()
    }

    /// Records that `epoch` begins at `start_offset`; false (nothing changed) unless it is
    /// newer than the latest epoch.
    pub fn begin(&mut self, epoch: i32, start_offset: i64) -> bool {
        if self.latest().is_some_and(|latest| latest.epoch >= epoch) {
            return false;
        }
        // An epoch that began where the previous one did holds nothing of that one.
        while self
            .entries
            .last()
            .is_some_and(|latest| latest.start_offset >= start_offset)
        {
            self.entries.pop();
        }
        self.entries.push(EpochStart {
            epoch,
            start_offset,
        });
        if self.entries.len() > ENTRIES_MAX {
            self.entries.remove(0);
        }
        true
    }

    /// Drops the epochs that begin at or after `end_offset` (the log was cut there).
    pub fn truncate_to(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` and the offset where it
    /// ended (where the next epoch began, or `log_end_offset` for the latest);
    /// (UNDEFINED_EPOCH, -1) for an epoch older than any here.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> (i32, i64) {
        let at = self.entries.partition_point(|entry| entry.epoch <= epoch);
        match at {
            0 => (UNDEFINED_EPOCH, -1),
            at if at == self.entries.len() => (self.entries[at - 1].epoch, log_end_offset),
            at => (self.entries[at - 1].epoch, self.entries[at].start_offset),
        }
    }

    fn encode(&self) -> String {
        let mut text = format!("0\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        text
    }
}

fn decode(bytes: &[u8]) -> Result<EpochCache, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err("the first line is not version 0".into());
    }
    let count: usize = lines
        .next()
        .and_then(|line| line.parse().ok())
        .ok_or("the second line is not a count")?;
    let mut cache = EpochCache::default();
    for line in lines {
        let (epoch, start) = line
            .split_once(' ')
            .ok_or_else(|| format!("'{line}' is not 'epoch offset'"))?;
        let epoch: i32 = epoch
            .parse()
            .map_err(|_| format!("bad epoch in '{line}'"))?;
        let start_offset: i64 = start
            .parse()
            .map_err(|_| format!("bad offset in '{line}'"))?;
        if cache
            .latest()
            .is_some_and(|latest| latest.epoch >= epoch || latest.start_offset > start_offset)
        {
            return Err(format!("'{line}' is out of order"));
        }
        cache.entries.push(EpochStart {
            epoch,
            start_offset,
        });
    }
    if cache.entries.len() != count {
        return Err(format!(
            "{count} entries declared, {} found",
            cache.entries.len()
        ));
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafkas_rules() {
        let mut cache = EpochCache::default();
        assert_eq!(cache.end_offset_for(0, 0), (UNDEFINED_EPOCH, -1));
        assert!(cache.begin(1, 0));
        assert!(cache.begin(3, 40));
        assert!(!cache.begin(3, 50), "not newer");
        assert_eq!(cache.end_offset_for(0, 90), (UNDEFINED_EPOCH, -1));
        assert_eq!(cache.end_offset_for(1, 90), (1, 40));
        assert_eq!(cache.end_offset_for(2, 90), (1, 40), "largest at or below");
        assert_eq!(cache.end_offset_for(3, 90), (3, 90));
        assert_eq!(cache.end_offset_for(7, 90), (3, 90));
        // An epoch that begins where the last did replaces it.
        assert!(cache.begin(4, 40));
        assert_eq!(cache.end_offset_for(3, 90), (1, 40));
        assert!(cache.truncate_to(40));
        assert_eq!(
            cache.latest(),
            Some(EpochStart {
                epoch: 1,
                start_offset: 0
            })
        );
    }

    #[test]
    fn the_file_round_trips_and_damage_is_named() {
        let mut cache = EpochCache::default();
        cache.begin(0, 0);
        cache.begin(2, 17);
        assert_eq!(decode(cache.encode().as_bytes()), Ok(cache));
        assert!(decode(b"1\n0\n").unwrap_err().contains("version"));
        assert!(decode(b"0\n2\n0 0\n").unwrap_err().contains("declared"));
        assert!(decode(b"0\n2\n3 5\n2 9\n")
            .unwrap_err()
            .contains("out of order"));
    }
}
