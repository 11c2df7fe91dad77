//! Record payloads for workloads: fixed-size values stamped with a sequence number and the
//! time they were built.
//!
//! Value layout: `sequence u64 BE, sent_ms i64 BE, filler` (the filler is printable JSON-ish
//! text so compression ratios resemble real event payloads). Values shorter than the 16-byte
//! stamp are not allowed.

use protocol::record_batch::RecordBatchBuilder;
use protocol::records::{Records, RecordsError};

/// Bytes of the stamp at the start of every value.
pub const STAMP_BYTES: usize = 16;

/// The stamp carried by one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordStamp {
    pub sequence: u64,
    pub sent_ms: i64,
}

impl RecordStamp {
    /// Reads the stamp at the front of a value.
    pub fn read(value: &[u8]) -> Option<RecordStamp> {
        let sequence = u64::from_be_bytes(value.get(..8)?.try_into().ok()?);
        let sent_ms = i64::from_be_bytes(value.get(8..16)?.try_into().ok()?);
        Some(RecordStamp { sequence, sent_ms })
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

/// Builds batches of `records_per_batch` records with values of `value_bytes` bytes.
#[derive(Debug, Clone)]
pub struct BatchTemplate {
    records_per_batch: usize,
    filler: Vec<u8>,
}

impl BatchTemplate {
    pub fn new(records_per_batch: usize, value_bytes: usize) -> BatchTemplate {
        assert!(records_per_batch > 0, "a batch holds at least one record");
        assert!(
            value_bytes >= STAMP_BYTES,
            "values carry a {STAMP_BYTES}-byte stamp"
        );
        let pattern = br#"{"event":"payment-done","amount":1234,"currency":"EUR","ok":true}"#;
        let filler = pattern
            .iter()
            .copied()
            .cycle()
            .take(value_bytes - STAMP_BYTES)
            .collect();
        BatchTemplate {
            records_per_batch,
            filler,
        }
    }

    /// A template whose batches come as close as possible to `batch_bytes` on the wire.
    pub fn for_batch_bytes(batch_bytes: usize, value_bytes: usize) -> BatchTemplate {
        let one = BatchTemplate::new(1, value_bytes).batch(0, 0).len();
        let two = BatchTemplate::new(2, value_bytes).batch(0, 0).len();
        let per_record = two - one;
        let header = one - per_record;
        let mut records = (batch_bytes.saturating_sub(header) / per_record).max(1);
        // Varint offset and length fields grow with the record count: trim to fit.
        loop {
            let template = BatchTemplate::new(records, value_bytes);
            let len = template.batch(0, 0).len();
            if len <= batch_bytes || records == 1 {
                return template;
            }
            records -= (len - batch_bytes).div_ceil(per_record).min(records - 1);
        }
    }

    pub fn records_per_batch(&self) -> usize {
        self.records_per_batch
    }

    /// One batch whose records carry sequences `first_sequence..`, all sent at `sent_ms`.
    pub fn batch(&self, first_sequence: u64, sent_ms: i64) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new(sent_ms);
        let mut value = Vec::with_capacity(STAMP_BYTES + self.filler.len());
        for i in 0..self.records_per_batch as u64 {
            value.clear();
            value.extend_from_slice(&(first_sequence + i).to_be_bytes());
            value.extend_from_slice(&sent_ms.to_be_bytes());
            value.extend_from_slice(&self.filler);
            builder.push(None, Some(&value), sent_ms);
        }
        builder.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_a_batch() {
        let template = BatchTemplate::new(5, 100);
        let batch = template.batch(41, 7);
        let stamps = RecordStamp::read_batch(&batch).unwrap();
        let sequences: Vec<u64> = stamps.iter().map(|stamp| stamp.sequence).collect();
        assert_eq!(sequences, vec![41, 42, 43, 44, 45]);
        assert!(stamps.iter().all(|stamp| stamp.sent_ms == 7));
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
