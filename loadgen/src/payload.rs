//! Record payloads for workloads: fixed-size values stamped with who sent them, their
//! sequence number and when they were meant to be sent.
//!
//! Value layout: `producer u32 BE, sequence u64 BE, sent_us i64 BE, filler` (20 bytes of
//! stamp; the filler is JSON-ish text so compression ratios resemble real event payloads).
//! Sequences count per producer and partition, from 0, so a consumer can tell lost,
//! duplicated and reordered records apart; `sent_us` (microseconds since the epoch) gives
//! end-to-end latency.
//!
//! Batches are filled from a [`BatchLayout`]: a RecordBatch v2 encoded once with room for
//! every stamp and key. Every record has timestamp delta 0 and its offset delta is its
//! index, so record `i` sits at the same place in every batch, and a batch of `k` records
//! is the first `k` records of the layout. Filling one is a copy, a few stores per record
//! and a CRC: the generator does not become the bottleneck.

use protocol::record_batch::{compute_crc, RecordBatchBuilder, HEADER_BYTES, LOG_OVERHEAD_BYTES};
use protocol::records::{Records, RecordsError};

/// Bytes of the stamp at the start of every value.
pub const STAMP_BYTES: usize = 20;

const BATCH_LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const RECORD_COUNT_AT: usize = 57;

/// The stamp carried by one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    pub producer: u32,
    pub sequence: u64,
    pub sent_us: i64,
}

impl RecordStamp {
    /// Reads the stamp at the front of a value.
    pub fn read(value: &[u8]) -> Option<RecordStamp> {
        let producer = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
        let sequence = u64::from_be_bytes(value.get(4..12)?.try_into().ok()?);
        let sent_us = i64::from_be_bytes(value.get(12..20)?.try_into().ok()?);
        Some(RecordStamp {
            producer,
            sequence,
            sent_us,
        })
    }

    fn write(&self, value: &mut [u8]) {
        value[..4].copy_from_slice(&self.producer.to_be_bytes());
        value[4..12].copy_from_slice(&self.sequence.to_be_bytes());
        value[12..20].copy_from_slice(&self.sent_us.to_be_bytes());
    }

    /// The stamps of every record of an uncompressed batch, in order.
    pub fn read_batch(batch: &[u8]) -> Result<Vec<RecordStamp>, RecordsError> {
        let mut stamps = Vec::new();
        for record in Records::new(batch)? {
            let record = record?;
            let stamp =
                record
                    .value
                    .and_then(RecordStamp::read)
                    .ok_or(RecordsError::Malformed {
                        index: stamps.len() as i32,
                    })?;
            stamps.push(stamp);
        }
        Ok(stamps)
    }
}

/// The filler after the stamp: event-like JSON text.
fn filler(bytes: usize) -> Vec<u8> {
    let pattern = br#"{"event":"payment-done","amount":1234,"currency":"EUR","ok":true}"#;
    pattern.iter().copied().cycle().take(bytes).collect()
}

/// A RecordBatch v2 of up to `max_records` records encoded once; see the module docs.
#[derive(Debug, Clone)]
pub struct BatchLayout {
    bytes: Vec<u8>,
    value_at: Vec<usize>,
    key_at: Vec<usize>,
    /// End of record `i` in `bytes`.
    record_end: Vec<usize>,
    key_bytes: Option<usize>,
}

impl BatchLayout {
    /// Records of `value_bytes`-byte values, with `key_bytes`-byte keys or none.
    pub fn new(max_records: usize, key_bytes: Option<usize>, value_bytes: usize) -> BatchLayout {
        assert!(max_records > 0, "a batch holds at least one record");
        assert!(
            value_bytes >= STAMP_BYTES,
            "values carry a {STAMP_BYTES}-byte stamp"
        );
        let mut value = vec![0u8; STAMP_BYTES];
        value.extend_from_slice(&filler(value_bytes - STAMP_BYTES));
        let key = key_bytes.map(|len| vec![b'k'; len]);
        let mut builder = RecordBatchBuilder::new(0);
        let mut record_end = Vec::with_capacity(max_records);
        for _ in 0..max_records {
            builder.push(key.as_deref(), Some(&value), 0);
            record_end.push(builder.encoded_bytes());
        }
        let bytes = builder.finish();
        // Each record ends with its value, then a 1-byte header count (0): the value starts
        // `value_bytes + 1` before the record's end, and a key `key_bytes + 1` (its length
        // varint, 1 byte for keys under 64 bytes) before the value's length varint.
        let value_len_varint = protocol::varint::varlong_len(value_bytes as i64);
        let value_at: Vec<usize> = record_end.iter().map(|end| end - 1 - value_bytes).collect();
        let key_at = match key_bytes {
            Some(len) => value_at
                .iter()
                .map(|at| at - value_len_varint - len)
                .collect(),
            None => Vec::new(),
        };
        let layout = BatchLayout {
            bytes,
            value_at,
            key_at,
            record_end,
            key_bytes,
        };
        debug_assert!(layout.value_at.iter().all(|at| layout.bytes[*at] == 0));
        layout
    }

    /// A layout whose full batches come as close as possible to `batch_bytes`.
    pub fn for_batch_bytes(
        batch_bytes: usize,
        key_bytes: Option<usize>,
        value_bytes: usize,
    ) -> BatchLayout {
        let per_record = BatchLayout::new(2, key_bytes, value_bytes).record_end[1]
            - BatchLayout::new(2, key_bytes, value_bytes).record_end[0];
        let mut records = (batch_bytes.saturating_sub(HEADER_BYTES) / per_record).max(1);
        loop {
            let layout = BatchLayout::new(records, key_bytes, value_bytes);
            if layout.bytes.len() <= batch_bytes || records == 1 {
                return layout;
            }
            let over = layout.bytes.len() - batch_bytes;
            records -= over.div_ceil(per_record).min(records - 1);
        }
    }

    pub fn max_records(&self) -> usize {
        self.record_end.len()
    }

    pub fn key_bytes(&self) -> Option<usize> {
        self.key_bytes
    }

    /// Bytes of a batch of `count` records.
    pub fn batch_bytes(&self, count: usize) -> usize {
        self.record_end[count - 1]
    }

    /// Fills `out` with a batch of `count` records: record `i` gets `stamp(i)` and, with
    /// keys, `key(i, &mut key_bytes)`. Its timestamps are `timestamp_ms`.
    pub fn fill(
        &self,
        out: &mut Vec<u8>,
        count: usize,
        timestamp_ms: i64,
        mut stamp: impl FnMut(usize) -> RecordStamp,
        mut key: impl FnMut(usize, &mut [u8]),
    ) {
        assert!(count >= 1 && count <= self.max_records());
        let end = self.record_end[count - 1];
        out.clear();
        out.extend_from_slice(&self.bytes[..end]);
        out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
            .copy_from_slice(&((end - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        out[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]
            .copy_from_slice(&(count as i32 - 1).to_be_bytes());
        out[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
        out[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
        out[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&(count as i32).to_be_bytes());
        for i in 0..count {
            let at = self.value_at[i];
            stamp(i).write(&mut out[at..at + STAMP_BYTES]);
            if let Some(len) = self.key_bytes {
                let at = self.key_at[i];
                key(i, &mut out[at..at + len]);
            }
        }
        let crc = compute_crc(out);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Builds batches of `records_per_batch` records without keys (the storage benchmarks'
/// payloads).
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    layout: BatchLayout,
}

impl BatchTemplate {
    pub fn new(records_per_batch: usize, value_bytes: usize) -> BatchTemplate {
        BatchTemplate {
            layout: BatchLayout::new(records_per_batch, None, value_bytes),
        }
    }

    /// A template whose batches come as close as possible to `batch_bytes` on the wire.
    pub fn for_batch_bytes(batch_bytes: usize, value_bytes: usize) -> BatchTemplate {
        BatchTemplate {
            layout: BatchLayout::for_batch_bytes(batch_bytes, None, value_bytes),
        }
    }

    pub fn records_per_batch(&self) -> usize {
        self.layout.max_records()
    }

    /// One batch whose records carry sequences `first_sequence..` of producer 0, all sent
    /// at `sent_ms`.
    pub fn batch(&self, first_sequence: u64, sent_ms: i64) -> Vec<u8> {
        let mut out = Vec::new();
        self.layout.fill(
            &mut out,
            self.layout.max_records(),
            sent_ms,
            |i| RecordStamp {
                producer: 0,
                sequence: first_sequence + i as u64,
                sent_us: sent_ms * 1000,
            },
            |_, _| {},
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::record_batch::{validate_batch, MAX_BATCH_BYTES};

    #[test]
    fn stamps_round_trip_through_a_batch() {
        let template = BatchTemplate::new(5, 100);
        let batch = template.batch(41, 7);
        let stamps = RecordStamp::read_batch(&batch).unwrap();
        let sequences: Vec<u64> = stamps.iter().map(|stamp| stamp.sequence).collect();
        assert_eq!(sequences, vec![41, 42, 43, 44, 45]);
        assert!(stamps.iter().all(|stamp| stamp.sent_us == 7000));
    }

    #[test]
    fn filled_batches_are_valid_and_equal_to_built_ones() {
        for key_bytes in [None, Some(12)] {
            let layout = BatchLayout::new(300, key_bytes, 100);
            for count in [1, 2, 63, 64, 65, 300] {
                let mut out = Vec::new();
                layout.fill(
                    &mut out,
                    count,
                    1_700_000_000_000,
                    |i| RecordStamp {
                        producer: 3,
                        sequence: 1000 + i as u64,
                        sent_us: 1_700_000_000_000_000 + i as i64,
                    },
                    |i, key| key.copy_from_slice(format!("key-{i:08}").as_bytes()),
                );
                let header = validate_batch(&out, MAX_BATCH_BYTES).unwrap();
                assert_eq!(header.record_count as usize, count);
                // The same batch built record by record.
                let mut builder = RecordBatchBuilder::new(1_700_000_000_000);
                for i in 0..count {
                    let mut value = vec![0u8; STAMP_BYTES];
                    RecordStamp {
                        producer: 3,
                        sequence: 1000 + i as u64,
                        sent_us: 1_700_000_000_000_000 + i as i64,
                    }
                    .write(&mut value);
                    value.extend_from_slice(&filler(100 - STAMP_BYTES));
                    let key = format!("key-{i:08}");
                    builder.push(
                        key_bytes.map(|_| key.as_bytes()),
                        Some(&value),
                        1_700_000_000_000,
                    );
                }
                assert_eq!(out, builder.finish(), "{count} records, keys {key_bytes:?}");
            }
        }
    }

    #[test]
    fn batch_size_targets_are_met_within_one_record() {
        for target in [1024, 16 * 1024, 64 * 1024, 256 * 1024] {
            let template = BatchTemplate::for_batch_bytes(target, 100);
            let len = template.batch(0, 0).len();
            assert!(
                len <= target && len + 130 > target,
                "target {target}: got {len}"
            );
        }
    }
}
