//! Broker-side rewrites of whole batches: compressing an uncompressed batch with zstd and
//! stamping LogAppendTime. Both change bytes the CRC covers, so both recompute it.

use crate::record_batch::{compute_crc, BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};

const BATCH_LENGTH_AT: usize = 8;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;
const COMPRESSION_ZSTD: i16 = 4;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;

/// zstd level used for broker-side compression: level 1 is as small as 3 on event data here
/// and faster.
pub const ZSTD_LEVEL: i32 = 1;

fn write_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch with its records compressed by zstd. The batch must be valid and uncompressed.
pub fn compress_zstd(batch: &[u8], header: &BatchHeader) -> std::io::Result<Vec<u8>> {
    assert_eq!(header.attributes & 0x07, 0, "batch is already compressed");
    let compressed = zstd::bulk::compress(&batch[HEADER_BYTES..], ZSTD_LEVEL)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + compressed.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&compressed);
    let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = header.attributes | COMPRESSION_ZSTD;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    write_crc(&mut out);
    Ok(out)
}

/// Marks the batch's timestamps as LogAppendTime at `now_ms` (the max timestamp carries it,
/// as in Kafka).
pub fn stamp_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes =
        i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    write_crc(batch);
}

/// The records section of a zstd batch, decompressed (for reading records back), bounded by
/// `max_bytes`.
pub fn decompress_zstd(batch: &[u8], max_bytes: usize) -> std::io::Result<Vec<u8>> {
    zstd::bulk::decompress(&batch[HEADER_BYTES..], max_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{validate_batch, Compression, RecordBatchBuilder, MAX_BATCH_BYTES};

    #[test]
    fn zstd_batches_validate_and_decompress_to_the_original_records() {
        let mut builder = RecordBatchBuilder::new(10);
        for i in 0..50 {
            builder.push(
                Some(b"k"),
                Some(format!("{{\"event\":\"payment\",\"n\":{i}}}").as_bytes()),
                10 + i,
            );
        }
        let batch = builder.finish();
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        let compressed = compress_zstd(&batch, &header).unwrap();
        let compressed_header = validate_batch(&compressed, MAX_BATCH_BYTES).unwrap();
        assert_eq!(compressed_header.compression().unwrap(), Compression::Zstd);
        assert_eq!(compressed_header.record_count, 50);
        assert!(compressed.len() < batch.len());
        assert_eq!(
            decompress_zstd(&compressed, 1 << 20).unwrap(),
            batch[HEADER_BYTES..]
        );
    }

    #[test]
    fn log_append_time_keeps_the_batch_valid() {
        let mut builder = RecordBatchBuilder::new(10);
        builder.push(None, Some(b"v"), 10);
        let mut batch = builder.finish();
        stamp_log_append_time(&mut batch, 99_999);
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 99_999);
    }
}
