//! RecordBatch v2: a zero-copy view over the header, validation, offset patching, and a
//! builder for uncompressed batches.
//!
//! Byte format (big-endian), as Kafka defines it (`DefaultRecordBatch`):
//!
//! ```text
//! offset  size  field
//!      0     8  base_offset
//!      8     4  batch_length            bytes after this field: total = 12 + batch_length
//!     12     4  partition_leader_epoch
//!     16     1  magic                   always 2
//!     17     4  crc                     CRC32C of bytes 21..total
//!     21     2  attributes              bits 0-2 compression, 3 timestamp type,
//!                                       4 transactional, 5 control
//!     23     4  last_offset_delta
//!     27     8  base_timestamp
//!     35     8  max_timestamp
//!     43     8  producer_id
//!     51     2  producer_epoch
//!     53     4  base_sequence
//!     57     4  record_count
//!     61        records
//! ```
//!
//! The CRC covers only attributes..end, so the broker assigns offsets by patching
//! `base_offset` (and `partition_leader_epoch`) without re-checksumming.

use crate::error_code::ErrorCode;
use crate::varint;

/// Bytes of a batch header, records excluded.
pub const HEADER_BYTES: usize = 61;
/// Bytes before the part that `batch_length` counts (base offset + length).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only magic ringlog stores.
pub const MAGIC_V2: i8 = 2;
/// No batch may exceed this, whatever a topic's `max.message.bytes` says: it keeps every
/// length read from the wire or from disk inside an i32 and far below memory limits.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Why a batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is {len} bytes, shorter than the {HEADER_BYTES}-byte RecordBatch v2 header")]
    TooShort { len: usize },
    #[error("batch magic is {magic}, only RecordBatch v2 (magic 2) is supported")]
    BadMagic { magic: i8 },
    #[error("batch_length field {batch_length} is impossible (header alone needs {})", HEADER_BYTES - LOG_OVERHEAD_BYTES)]
    BadLength { batch_length: i32 },
    #[error("batch declares {declared} bytes but {actual} bytes were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("batch of {bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge { bytes: usize, max_bytes: usize },
    #[error("batch CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch record count {record_count} does not match last_offset_delta {last_offset_delta} + 1")]
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("batch uses unknown compression codec {codec}")]
    UnknownCompression { codec: i16 },
}

impl BatchError {
    /// The Kafka error code a producer sees for this refusal.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            BatchError::RecordCountMismatch { .. } => ErrorCode::InvalidRecord,
            _ => ErrorCode::CorruptMessage,
        }
    }
}

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The fields of a RecordBatch v2 header, copied out of the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; `total_bytes() == 12 + batch_length`.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the front of `bytes`, checking only what the header alone can
    /// show: there are 61 bytes, magic is 2 and `batch_length` is possible. The batch body
    /// may extend past `bytes` (a reader scanning a file sees headers first).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::TooShort { len: bytes.len() });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic { magic });
        }
        let batch_length = read_i32(bytes, BATCH_LENGTH_AT);
        let length_min = (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32;
        if batch_length < length_min || batch_length as usize > MAX_BATCH_BYTES {
            return Err(BatchError::BadLength { batch_length });
        }
        Ok(BatchHeader {
            base_offset: read_i64(bytes, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: read_i32(bytes, LEADER_EPOCH_AT),
            magic,
            crc: read_i32(bytes, CRC_AT) as u32,
            attributes: read_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: read_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
            record_count: read_i32(bytes, RECORD_COUNT_AT),
        })
    }

    /// Bytes of the whole batch, header included.
    pub fn total_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> Result<Compression, BatchError> {
        match self.attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::UnknownCompression { codec }),
        }
    }

    /// True when timestamps were set by the broker (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// CRC32C of the checksummed part of a whole batch (attributes..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Validates one whole batch as a producer sent it: header, exact length, size limit,
/// CRC32C, and record count against `last_offset_delta`. Returns the parsed header.
pub fn validate_batch(batch: &[u8], max_bytes: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    let declared = header.total_bytes();
    if declared != batch.len() {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len(),
        });
    }
    if declared > max_bytes {
        return Err(BatchError::TooLarge {
            bytes: declared,
            max_bytes,
        });
    }
    header.compression()?;
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.last_offset_delta < 0 || header.record_count != header.last_offset_delta + 1 {
        return Err(BatchError::RecordCountMismatch {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Sets the batch's base offset in place. The CRC does not cover it.
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= HEADER_BYTES);
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the batch's partition leader epoch in place. The CRC does not cover it.
pub fn patch_leader_epoch(batch: &mut [u8], leader_epoch: i32) {
    assert!(batch.len() >= HEADER_BYTES);
    batch[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(raw)
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(raw)
}

/// Builds one uncompressed RecordBatch v2 (base offset 0; the broker assigns offsets).
#[derive(Debug, Clone)]
pub struct RecordBatchBuilder {
    base_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: i32,
    records: Vec<u8>,
}

impl RecordBatchBuilder {
    /// `base_timestamp` is the first record's timestamp (ms since the epoch).
    pub fn new(base_timestamp: i64) -> RecordBatchBuilder {
        RecordBatchBuilder {
            base_timestamp,
            max_timestamp: base_timestamp,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: 0,
            records: Vec::new(),
        }
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn record_count(&self) -> i32 {
        self.record_count
    }

    /// Bytes the batch would have if finished now.
    pub fn encoded_bytes(&self) -> usize {
        HEADER_BYTES + self.records.len()
    }

    /// Appends a record without headers.
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, timestamp: i64) {
        self.push_with_headers(key, value, &[], timestamp);
    }

    /// Appends a record with headers (`(key, value)` pairs).
    pub fn push_with_headers(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        timestamp: i64,
    ) {
        let timestamp_delta = timestamp - self.base_timestamp;
        let offset_delta = i64::from(self.record_count);
        let mut body =
            Vec::with_capacity(32 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        body.push(0); // record attributes: unused
        varint::put_varlong(&mut body, timestamp_delta);
        varint::put_varlong(&mut body, offset_delta);
        put_bytes(&mut body, key);
        put_bytes(&mut body, value);
        varint::put_varlong(&mut body, headers.len() as i64);
        for (header_key, header_value) in headers {
            put_bytes(&mut body, Some(header_key));
            put_bytes(&mut body, *header_value);
        }
        varint::put_varlong(&mut self.records, body.len() as i64);
        self.records.extend_from_slice(&body);
        self.record_count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// The finished batch bytes, CRC included.
    pub fn finish(&self) -> Vec<u8> {
        assert!(
            self.record_count > 0,
            "a RecordBatch holds at least one record"
        );
        let total = HEADER_BYTES + self.records.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&((total - LOG_OVERHEAD_BYTES) as i32).to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, filled below
        out.extend_from_slice(&0i16.to_be_bytes()); // attributes: no compression, CreateTime
        out.extend_from_slice(&(self.record_count - 1).to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.record_count.to_be_bytes());
        out.extend_from_slice(&self.records);
        let crc = compute_crc(&out);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        debug_assert_eq!(out.len(), total);
        out
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varint::put_varlong(out, -1),
        Some(bytes) => {
            varint::put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_batch(records: usize) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new(1_000);
        for i in 0..records {
            let value = format!("value-{i}");
            builder.push(Some(b"k"), Some(value.as_bytes()), 1_000 + i as i64);
        }
        builder.finish()
    }

    #[test]
    fn built_batch_validates_and_reports_its_fields() {
        let batch = sample_batch(3);
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.base_timestamp, 1_000);
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.total_bytes(), batch.len());
        assert_eq!(header.compression().unwrap(), Compression::None);
    }

    #[test]
    fn patching_offsets_keeps_the_crc_valid() {
        let mut batch = sample_batch(2);
        patch_base_offset(&mut batch, 42);
        patch_leader_epoch(&mut batch, 7);
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 43);
        assert_eq!(header.partition_leader_epoch, 7);
    }

    #[test]
    fn every_refusal_has_its_own_error() {
        let batch = sample_batch(2);
        assert_eq!(
            validate_batch(&batch[..20], MAX_BATCH_BYTES),
            Err(BatchError::TooShort { len: 20 })
        );
        let mut bad_magic = batch.clone();
        bad_magic[MAGIC_AT] = 1;
        assert_eq!(
            validate_batch(&bad_magic, MAX_BATCH_BYTES),
            Err(BatchError::BadMagic { magic: 1 })
        );
        let mut flipped = batch.clone();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert!(matches!(
            validate_batch(&flipped, MAX_BATCH_BYTES),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut longer = batch.clone();
        longer.push(0);
        assert!(matches!(
            validate_batch(&longer, MAX_BATCH_BYTES),
            Err(BatchError::LengthMismatch { .. })
        ));
        let too_large = validate_batch(&batch, 64).unwrap_err();
        assert_eq!(too_large.error_code(), ErrorCode::MessageTooLarge);
        let mut negative = batch.clone();
        negative[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            validate_batch(&negative, MAX_BATCH_BYTES),
            Err(BatchError::BadLength { batch_length: -5 })
        );
    }

    #[test]
    fn record_count_must_match_last_offset_delta() {
        let mut batch = sample_batch(2);
        batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        let error = validate_batch(&batch, MAX_BATCH_BYTES).unwrap_err();
        assert_eq!(
            error,
            BatchError::RecordCountMismatch {
                record_count: 5,
                last_offset_delta: 1
            }
        );
        assert_eq!(error.error_code(), ErrorCode::InvalidRecord);
    }
}
