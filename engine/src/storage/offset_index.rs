//! `OffsetIndex`: the sparse map from offsets to positions in a segment's `.log`.
//!
//! Byte format of `.index`: entries of 8 bytes, big-endian `(relative_offset u32,
//! position u32)`, relative to the segment's base offset, strictly increasing in both. One
//! entry is added for the first batch after every `index.interval.bytes` of log.
//!
//! Crash policy: the index is derived data. It is written lazily, only for log bytes that
//! are already fsynced, and is never fsynced itself; at start-up it is checked
//! ([`OffsetIndex::decode`]) and, if it disagrees with the log, rebuilt from the log.

/// Bytes of one `.index` entry.
pub const INDEX_ENTRY_BYTES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// The entries of one segment, in memory, plus how many of them are already in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    /// Strictly increasing in `relative_offset` and in `position`.
    entries: Vec<IndexEntry>,
    /// `entries[..persisted]` are in the `.index` file.
    persisted: usize,
}

impl OffsetIndex {
    pub fn new() -> OffsetIndex {
        OffsetIndex::default()
    }

    /// Decodes a `.index` file, refusing one that is torn or out of order.
    pub fn decode(bytes: &[u8]) -> Result<OffsetIndex, String> {
        if !bytes.len().is_multiple_of(INDEX_ENTRY_BYTES) {
            return Err(format!(
                "size {} is not a multiple of {INDEX_ENTRY_BYTES}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::new();
        for raw in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
            let entry = IndexEntry {
                relative_offset: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                position: u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]),
            };
            if let Some(last) = index.entries.last() {
                if entry.relative_offset <= last.relative_offset || entry.position <= last.position
                {
                    return Err(format!("entry {} is out of order", index.entries.len()));
                }
            }
            index.entries.push(entry);
        }
        index.persisted = index.entries.len();
        Ok(index)
    }

    pub fn append(&mut self, entry: IndexEntry) {
        if let Some(last) = self.entries.last() {
            assert!(entry.relative_offset > last.relative_offset && entry.position > last.position);
        }
        self.entries.push(entry);
    }

    /// The last entry at or before `relative_offset`: where a scan for it starts.
    pub fn lookup(&self, relative_offset: u32) -> Option<IndexEntry> {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after.checked_sub(1).map(|at| self.entries[at])
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<IndexEntry> {
        self.entries.last().copied()
    }

    /// Drops entries at or past `position` (the log was truncated there).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self
            .entries
            .partition_point(|entry| entry.position < position);
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(keep);
    }

    pub fn persisted(&self) -> usize {
        self.persisted
    }

    /// Encoded entries `from..to`, to be written at byte `from * INDEX_ENTRY_BYTES`.
    pub fn encode(&self, from: usize, to: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity((to - from) * INDEX_ENTRY_BYTES);
        for entry in &self.entries[from..to] {
            out.extend_from_slice(&entry.relative_offset.to_be_bytes());
            out.extend_from_slice(&entry.position.to_be_bytes());
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

    fn entry(relative_offset: u32, position: u32) -> IndexEntry {
        IndexEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_before() {
        let mut index = OffsetIndex::new();
        for (offset, position) in [(0, 0), (10, 4096), (25, 8200)] {
            index.append(entry(offset, position));
        }
        assert_eq!(index.lookup(0), Some(entry(0, 0)));
        assert_eq!(index.lookup(9), Some(entry(0, 0)));
        assert_eq!(index.lookup(10), Some(entry(10, 4096)));
        assert_eq!(index.lookup(1000), Some(entry(25, 8200)));
        assert_eq!(OffsetIndex::new().lookup(5), None);
    }

    #[test]
    fn encode_decode_round_trip_and_damage_is_refused() {
        let mut index = OffsetIndex::new();
        index.append(entry(3, 100));
        index.append(entry(9, 5000));
        let bytes = index.encode(0, 2);
        let decoded = OffsetIndex::decode(&bytes).unwrap();
        assert_eq!(decoded.entries(), index.entries());
        assert_eq!(decoded.persisted(), 2);
        assert!(OffsetIndex::decode(&bytes[..7]).is_err(), "torn entry");
        let mut swapped = index.encode(1, 2);
        swapped.extend_from_slice(&index.encode(0, 1));
        assert!(OffsetIndex::decode(&swapped).is_err(), "out of order");
    }

    #[test]
    fn truncation_drops_entries_at_or_past_the_position() {
        let mut index = OffsetIndex::new();
        index.append(entry(0, 0));
        index.append(entry(5, 4096));
        index.mark_persisted(2);
        index.truncate_to_position(4096);
        assert_eq!(index.entries(), &[entry(0, 0)]);
        assert_eq!(index.persisted(), 1);
    }
}
