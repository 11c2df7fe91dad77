//! Broker-side rewrites of whole batches: compressing an uncompressed batch with zstd,
//! decompressing a batch of any codec (topics with `compression.type=uncompressed`), and
//! stamping LogAppendTime. All change bytes the CRC covers, so all recompute it.
//!
//! Decompression reads producer input: every codec's output is capped at the caller's
//! limit (the topic's `max.message.bytes`), so a small bomb cannot allocate gigabytes.

use crate::record_batch::{
    compute_crc, BatchHeader, Compression, HEADER_BYTES, LOG_OVERHEAD_BYTES,
};

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
    compress(batch, header, Compression::Zstd)
}

/// The batch with its records compressed by `codec` as Kafka's Java client does (gzip, the
/// LZ4 frame format with independent blocks, zstd, fast levels; snappy in xerial framing with 32 KiB blocks, which
/// every client reads). The batch must be valid and uncompressed.
pub fn compress(
    batch: &[u8],
    header: &BatchHeader,
    codec: Compression,
) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    assert_eq!(header.attributes & 0x07, 0, "batch is already compressed");
    let records = &batch[HEADER_BYTES..];
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len() / 2);
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    let bits: i16 = match codec {
        Compression::None => return Ok(batch.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
            encoder.write_all(records)?;
            out = encoder.finish()?;
            1
        }
        Compression::Lz4 => {
            // As Kafka's Java producer writes LZ4 frames: 64 KiB independent blocks and no
            // content checksum (the Java client refuses linked blocks).
            let mut encoder = lz4::EncoderBuilder::new()
                .level(1)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(out)?;
            encoder.write_all(records)?;
            let (written, result) = encoder.finish();
            result?;
            out = written;
            3
        }
        Compression::Zstd => {
            out.extend_from_slice(&zstd::bulk::compress(records, ZSTD_LEVEL)?);
            COMPRESSION_ZSTD
        }
        Compression::Snappy => {
            out.extend_from_slice(SNAPPY_JAVA_MAGIC);
            out.extend_from_slice(&SNAPPY_JAVA_VERSION.to_be_bytes());
            out.extend_from_slice(&SNAPPY_JAVA_VERSION.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in records.chunks(SNAPPY_JAVA_BLOCK_BYTES) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            2
        }
    };
    let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = header.attributes | bits;
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

/// Why a batch could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("decompressed records exceed {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
    #[error("{codec:?} data is corrupt: {reason}")]
    Corrupt { codec: Compression, reason: String },
}

/// Xerial snappy framing, as the Java client writes it: magic, version, compatible version.
const SNAPPY_JAVA_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const SNAPPY_JAVA_HEADER_BYTES: usize = 16;
/// The framing version (and compatible version) xerial writes.
const SNAPPY_JAVA_VERSION: i32 = 1;
/// xerial's default block size, as Kafka's Java producer uses it.
const SNAPPY_JAVA_BLOCK_BYTES: usize = 32 * 1024;

/// The records section of `batch`, decompressed, at most `max_bytes`.
pub fn decompress_records(
    batch: &[u8],
    header: &BatchHeader,
    max_bytes: usize,
) -> Result<Vec<u8>, DecompressError> {
    use std::io::Read;
    let codec = header.compression().unwrap_or(Compression::None);
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let input = &batch[HEADER_BYTES..];
    let capped = |reader: &mut dyn Read| -> Result<Vec<u8>, DecompressError> {
        let mut out = Vec::new();
        reader
            .take(max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| corrupt(error.to_string()))?;
        if out.len() > max_bytes {
            return Err(DecompressError::TooLarge { max_bytes });
        }
        Ok(out)
    };
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => capped(&mut flate2::read::GzDecoder::new(input)),
        Compression::Zstd => capped(
            &mut zstd::stream::read::Decoder::new(input)
                .map_err(|error| corrupt(error.to_string()))?,
        ),
        Compression::Lz4 => {
            capped(&mut lz4::Decoder::new(input).map_err(|error| corrupt(error.to_string()))?)
        }
        Compression::Snappy => decompress_snappy(input, max_bytes).map_err(|error| match error {
            DecompressError::Corrupt { reason, .. } => corrupt(reason),
            too_large => too_large,
        }),
    }
}

fn decompress_snappy(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt {
        codec: Compression::Snappy,
        reason,
    };
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |raw: &[u8], out: &mut Vec<u8>| -> Result<(), DecompressError> {
        let len = snap::raw::decompress_len(raw).map_err(|error| corrupt(error.to_string()))?;
        if out.len() + len > max_bytes {
            return Err(DecompressError::TooLarge { max_bytes });
        }
        out.extend_from_slice(
            &decoder
                .decompress_vec(raw)
                .map_err(|error| corrupt(error.to_string()))?,
        );
        Ok(())
    };
    let mut out = Vec::new();
    if !input.starts_with(SNAPPY_JAVA_MAGIC) {
        block(input, &mut out)?;
        return Ok(out);
    }
    let mut rest = input
        .get(SNAPPY_JAVA_HEADER_BYTES..)
        .ok_or_else(|| corrupt("truncated xerial header".into()))?;
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("truncated block length".into()))?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let raw = rest
            .get(4..4 + len)
            .ok_or_else(|| corrupt("truncated block".into()))?;
        block(raw, &mut out)?;
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// The batch rewritten without compression, at most `max_bytes` of records.
pub fn uncompress_batch(
    batch: &[u8],
    header: &BatchHeader,
    max_bytes: usize,
) -> Result<Vec<u8>, DecompressError> {
    let records = decompress_records(batch, header, max_bytes)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(&records);
    let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let attributes = header.attributes & !0x07;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    write_crc(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{validate_batch, RecordBatchBuilder, MAX_BATCH_BYTES};

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
    fn every_client_codec_round_trips() {
        let mut builder = RecordBatchBuilder::new(10);
        // About 90 KiB of records: several snappy blocks.
        for i in 0..3000 {
            builder.push(
                None,
                Some(format!("{{\"n\":{i},\"pad\":\"abcdefgh\"}}").as_bytes()),
                10,
            );
        }
        let batch = builder.finish();
        assert!(batch.len() > 2 * SNAPPY_JAVA_BLOCK_BYTES);
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let compressed = compress(&batch, &header, codec).unwrap();
            let compressed_header = validate_batch(&compressed, MAX_BATCH_BYTES).unwrap();
            assert_eq!(compressed_header.compression().unwrap(), codec);
            let back = uncompress_batch(&compressed, &compressed_header, 1 << 20).unwrap();
            assert_eq!(back, batch, "{codec:?}");
        }
    }

    #[test]
    fn zstd_round_trips_through_uncompress_and_bombs_are_capped() {
        let mut builder = RecordBatchBuilder::new(10);
        for _ in 0..2000 {
            builder.push(None, Some(&[b'x'; 500]), 10);
        }
        let batch = builder.finish();
        let header = validate_batch(&batch, MAX_BATCH_BYTES).unwrap();
        let compressed = compress_zstd(&batch, &header).unwrap();
        let compressed_header = validate_batch(&compressed, MAX_BATCH_BYTES).unwrap();
        let restored = uncompress_batch(&compressed, &compressed_header, MAX_BATCH_BYTES).unwrap();
        assert_eq!(restored, batch, "the very same bytes come back");
        assert!(matches!(
            uncompress_batch(&compressed, &compressed_header, 10_000),
            Err(DecompressError::TooLarge { max_bytes: 10_000 })
        ));
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
