//! The records inside an uncompressed RecordBatch v2.
//!
//! Record format (after the 61-byte batch header), all lengths zig-zag varints:
//! `length, attributes i8, timestamp_delta, offset_delta, key_length, key, value_length,
//! value, header_count, (header_key_length, header_key, header_value_length, header_value)*`.
//! A length of -1 means null. Every length is checked against the bytes that remain, so a
//! corrupt batch yields an error, never a panic or an allocation sized by the input.

use crate::record_batch::{BatchHeader, Compression, HEADER_BYTES};
use crate::varint;

/// Why the records of a batch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("record {index} is truncated or has an impossible length")]
    Malformed { index: i32 },
    #[error("batch is compressed ({0:?}); decompress it before iterating records")]
    Compressed(Compression),
    #[error("batch header is invalid: {0}")]
    Header(#[from] crate::record_batch::BatchError),
}

/// One record, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Iterates the records of one uncompressed batch.
pub struct Records<'a> {
    header: BatchHeader,
    rest: &'a [u8],
    index: i32,
    failed: bool,
}

impl<'a> Records<'a> {
    /// `batch` is one whole batch (header included).
    pub fn new(batch: &'a [u8]) -> Result<Records<'a>, RecordsError> {
        let header = BatchHeader::parse(batch)?;
        let compression = header.compression()?;
        if compression != Compression::None {
            return Err(RecordsError::Compressed(compression));
        }
        let end = header.total_bytes().min(batch.len());
        Ok(Records {
            header,
            rest: &batch[HEADER_BYTES..end],
            index: 0,
            failed: false,
        })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn next_record(&mut self) -> Option<Record<'a>> {
        let (length, used) = varint::get_varlong(self.rest)?;
        let length = usize::try_from(length).ok()?;
        let body = self.rest.get(used..used.checked_add(length)?)?;
        self.rest = &self.rest[used + length..];
        let mut cursor = Cursor { bytes: body };
        cursor.take(1)?; // attributes
        let timestamp_delta = cursor.varlong()?;
        let offset_delta = cursor.varlong()?;
        let key = cursor.nullable_bytes()?;
        let value = cursor.nullable_bytes()?;
        let header_count = usize::try_from(cursor.varlong()?).ok()?;
        // Each header needs at least two bytes, so a count larger than that is corrupt.
        if header_count > cursor.bytes.len() / 2 {
            return None;
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let header_key = cursor.nullable_bytes()??;
            let header_value = cursor.nullable_bytes()?;
            headers.push((header_key, header_value));
        }
        let timestamp = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header.base_timestamp.wrapping_add(timestamp_delta)
        };
        Some(Record {
            offset: self.header.base_offset.wrapping_add(offset_delta),
            timestamp,
            key,
            value,
            headers,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.header.record_count {
            return None;
        }
        let index = self.index;
        self.index += 1;
        match self.next_record() {
            Some(record) => Some(Ok(record)),
            None => {
                self.failed = true;
                Some(Err(RecordsError::Malformed { index }))
            }
        }
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(..n)?;
        self.bytes = &self.bytes[n..];
        Some(taken)
    }

    fn varlong(&mut self) -> Option<i64> {
        let (value, used) = varint::get_varlong(self.bytes)?;
        self.bytes = &self.bytes[used..];
        Some(value)
    }

    /// `Some(None)` for a null (-1 length), `None` when malformed.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varlong()? {
            -1 => Some(None),
            length => Some(Some(self.take(usize::try_from(length).ok()?)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record_batch::{patch_base_offset, RecordBatchBuilder};

    #[test]
    fn records_come_back_as_built() {
        let mut builder = RecordBatchBuilder::new(5_000);
        builder.push(Some(b"a"), Some(b"one"), 5_000);
        builder.push(None, None, 5_007);
        builder.push_with_headers(
            Some(b"c"),
            Some(b"three"),
            &[(b"h", Some(b"v")), (b"n", None)],
            5_003,
        );
        let mut batch = builder.finish();
        patch_base_offset(&mut batch, 100);
        let records: Vec<_> = Records::new(&batch).unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].offset, 100);
        assert_eq!(records[0].key, Some(&b"a"[..]));
        assert_eq!(records[0].value, Some(&b"one"[..]));
        assert_eq!(records[1].offset, 101);
        assert_eq!(records[1].timestamp, 5_007);
        assert_eq!((records[1].key, records[1].value), (None, None));
        assert_eq!(
            records[2].headers,
            vec![(&b"h"[..], Some(&b"v"[..])), (&b"n"[..], None)]
        );
    }

    #[test]
    fn truncated_records_yield_an_error_not_a_panic() {
        let mut builder = RecordBatchBuilder::new(0);
        builder.push(Some(b"key"), Some(b"value"), 0);
        builder.push(Some(b"key"), Some(b"value"), 0);
        let batch = builder.finish();
        for cut in HEADER_BYTES..batch.len() {
            let results: Vec<_> = Records::new(&batch[..cut]).unwrap().collect();
            assert!(
                results.iter().any(Result::is_err),
                "cut at {cut} went unnoticed"
            );
        }
    }
}
