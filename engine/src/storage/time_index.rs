//! `TimeIndex`: the sparse map from timestamps to offsets in a segment.
//!
//! Byte format of `.timeindex`: entries of 12 bytes, big-endian `(max_timestamp i64,
//! relative_offset u32)`. Entry k is written together with offset-index entry k (the two
//! indexes move in lockstep): `max_timestamp` is the largest timestamp of every batch up to
//! and including the batch at `relative_offset`, so timestamps never decrease.
//!
//! Crash policy: derived data, like the offset index: written lazily, never fsynced, checked
//! at start-up and rebuilt from the log when it disagrees.

/// Bytes of one `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub max_timestamp: i64,
    pub relative_offset: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    /// Non-decreasing in `max_timestamp`, strictly increasing in `relative_offset`.
    entries: Vec<TimeEntry>,
    /// `entries[..persisted]` are in the `.timeindex` file.
    persisted: usize,
}

impl TimeIndex {
    pub fn new() -> TimeIndex {
        TimeIndex::default()
    }

    /// Decodes a `.timeindex` file, refusing one that is torn or out of order.
    pub fn decode(bytes: &[u8]) -> Result<TimeIndex, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(format!(
                "size {} is not a multiple of {TIME_ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::new();
        for raw in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let mut timestamp = [0u8; 8];
            timestamp.copy_from_slice(&raw[..8]);
            let entry = TimeEntry {
                max_timestamp: i64::from_be_bytes(timestamp),
                relative_offset: u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]),
            };
            if let Some(last) = index.entries.last() {
                if entry.relative_offset <= last.relative_offset
                    || entry.max_timestamp < last.max_timestamp
                {
                    return Err(format!("entry {} is out of order", index.entries.len()));
                }
            }
            index.entries.push(entry);
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    pub fn append(&mut self, entry: TimeEntry) {
        if let Some(last) = self.entries.last() {
            assert!(entry.relative_offset > last.relative_offset);
            assert!(entry.max_timestamp >= last.max_timestamp);
        }
        self.entries.push(entry);
    }

    /// Index of the first entry whose `max_timestamp >= timestamp`: the batch looked for lies
    /// after entry `k - 1` and at or before entry `k`.
    pub fn first_at_or_after(&self, timestamp: i64) -> usize {
        self.entries
            .partition_point(|entry| entry.max_timestamp < timestamp)
    }

    pub fn entries(&self) -> &[TimeEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the first `count` entries.
    pub fn truncate(&mut self, count: usize) {
        self.entries.truncate(count);
        self.persisted = self.persisted.min(count);
    }

    pub fn persisted(&self) -> usize {
        self.persisted
    }

    /// Encoded entries `from..to`, to be written at byte `from * TIME_ENTRY_BYTES`.
    pub fn encode(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((to - from) * TIME_ENTRY_BYTES);
        for entry in &self.entries[from..to] {
            out.extend_from_slice(&entry.max_timestamp.to_be_bytes());
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        out
    }

    pub fn mark_persisted(&mut self, count: usize) {
        assert!(count <= self.entries.len());
        self.persisted = count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_or_after_brackets_the_batch() {
        let mut index = TimeIndex::new();
        for (max_timestamp, relative_offset) in [(100, 0), (100, 4), (250, 9)] {
            index.append(TimeEntry {
                max_timestamp,
                relative_offset,
            });
        }
        assert_eq!(index.first_at_or_after(50), 0);
        assert_eq!(index.first_at_or_after(100), 0);
        assert_eq!(index.first_at_or_after(101), 2);
        assert_eq!(index.first_at_or_after(999), 3);
    }

    #[test]
    fn decode_refuses_decreasing_timestamps() {
        let mut index = TimeIndex::new();
        index.append(TimeEntry {
            max_timestamp: 10,
            relative_offset: 0,
        });
        index.append(TimeEntry {
            max_timestamp: 20,
            relative_offset: 3,
        });
        let bytes = index.encode(0, 2);
        assert_eq!(
            TimeIndex::decode(&bytes).unwrap().entries(),
            index.entries()
        );
        let mut backwards = index.encode(1, 2);
        backwards.extend_from_slice(
            &TimeEntry {
                max_timestamp: 5,
                relative_offset: 7,
            }
            .encode_one(),
        );
        assert!(TimeIndex::decode(&backwards).is_err());
    }

    impl TimeEntry {
        fn encode_one(self) -> Vec<u8> {
            let mut index = TimeIndex::new();
            index.append(self);
            index.encode(0, 1)
        }
    }
}
