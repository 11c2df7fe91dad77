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
    #[error("record {index} has offset delta {delta}")]
    OffsetDelta { index: i32, delta: i64 },
    #[error("record {index} declares {declared} bytes but its fields take {used}")]
    RecordLength {
        index: i32,
        declared: usize,
        used: usize,
    },
    #[error("{0} bytes follow the last record")]
    TrailingBytes(usize),
    #[error("the batch declares {0} records")]
    RecordCount(i32),
}

/// Checks the records of one uncompressed batch without building them, as the broker does
/// for every batch it is sent: exactly `record_count` records fill the batch, each record's
/// fields take exactly the length it declares, and the offset deltas run 0, 1, 2, ...
/// Stricter than iterating [`Records`] (which tolerates bytes left inside a record or after
/// the last one); Kafka's broker refuses both too.
pub fn validate_records(batch: &[u8]) -> Result<(), RecordsError> {
    let header = BatchHeader::parse(batch)?;
    let compression = header.compression()?;
    if compression != Compression::None {
        return Err(RecordsError::Compressed(compression));
    }
    if header.record_count < 0 {
        return Err(RecordsError::RecordCount(header.record_count));
    }
    let end = header.total_bytes().min(batch.len());
    let mut rest = &batch[HEADER_BYTES..end];
    for index in 0..header.record_count {
        let malformed = RecordsError::Malformed { index };
        let (length, used) = varint::get_varlong(rest).ok_or(malformed.clone())?;
        let length = usize::try_from(length).map_err(|_| malformed.clone())?;
        let body = rest
            .get(used..used.saturating_add(length))
            .ok_or(malformed.clone())?;
        rest = &rest[used + length..];
        let left = skip_record_fields(body, index)?;
        if left != 0 {
            return Err(RecordsError::RecordLength {
                index,
                declared: length,
                used: length - left,
            });
        }
    }
    if !rest.is_empty() {
        return Err(RecordsError::TrailingBytes(rest.len()));
    }
    Ok(())
}

/// Walks one record's fields (after its length) and returns how many bytes of `body` they
/// left unused; checks the offset delta against `index`.
fn skip_record_fields(body: &[u8], index: i32) -> Result<usize, RecordsError> {
    let malformed = || RecordsError::Malformed { index };
    let mut cursor = Cursor { bytes: body };
    cursor.take(1).ok_or_else(malformed)?; // attributes
    cursor.varlong().ok_or_else(malformed)?; // timestamp delta
    let delta = cursor.varlong().ok_or_else(malformed)?;
    if delta != i64::from(index) {
        return Err(RecordsError::OffsetDelta { index, delta });
    }
    cursor.skip_nullable_bytes().ok_or_else(malformed)?; // key
    cursor.skip_nullable_bytes().ok_or_else(malformed)?; // value
    let header_count =
        usize::try_from(cursor.varlong().ok_or_else(malformed)?).map_err(|_| malformed())?;
    // Each header needs at least two bytes, so a count larger than that is corrupt.
    if header_count > cursor.bytes.len() / 2 {
        return Err(malformed());
    }
    for _ in 0..header_count {
        // A header's key may not be null; its value may.
        if !cursor.skip_nullable_bytes().ok_or_else(malformed)? {
            return Err(malformed());
        }
        cursor.skip_nullable_bytes().ok_or_else(malformed)?;
    }
    Ok(cursor.bytes.len())
}

/// One record, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: RecordHeaders<'a>,
}

/// A record's headers, checked when the record was read and decoded again as they are
/// iterated: most records have none, and building a list for each would cost the reader an
/// allocation call per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeaders<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> RecordHeaders<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each header's key and value (`None` for a null value).
    pub fn iter(&self) -> RecordHeadersIter<'a> {
        RecordHeadersIter {
            cursor: Cursor { bytes: self.bytes },
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for RecordHeaders<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    type IntoIter = RecordHeadersIter<'a>;

    fn into_iter(self) -> RecordHeadersIter<'a> {
        self.iter()
    }
}

pub struct RecordHeadersIter<'a> {
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> Iterator for RecordHeadersIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The record's reader checked these bytes; a failure here would be a bug, and ends
        // the headers rather than panicking.
        let key = self.cursor.nullable_bytes()??;
        let value = self.cursor.nullable_bytes()?;
        Some((key, value))
    }
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

    #[inline]
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
        let header_bytes = cursor.bytes;
        for _ in 0..header_count {
            // A header's key may not be null; its value may.
            if !cursor.skip_nullable_bytes()? {
                return None;
            }
            cursor.skip_nullable_bytes()?;
        }
        let headers = RecordHeaders {
            bytes: &header_bytes[..header_bytes.len() - cursor.bytes.len()],
            count: header_count,
        };
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

    #[inline]
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
    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let taken = self.bytes.get(..n)?;
        self.bytes = &self.bytes[n..];
        Some(taken)
    }

    #[inline]
    fn varlong(&mut self) -> Option<i64> {
        let (value, used) = varint::get_varlong(self.bytes)?;
        self.bytes = &self.bytes[used..];
        Some(value)
    }

    /// Skips a nullable byte string: `Some(false)` for a null, `None` when malformed.
    #[inline]
    fn skip_nullable_bytes(&mut self) -> Option<bool> {
        match self.varlong()? {
            -1 => Some(false),
            length => {
                self.take(usize::try_from(length).ok()?)?;
                Some(true)
            }
        }
    }

    /// `Some(None)` for a null (-1 length), `None` when malformed.
    #[inline]
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

    /// A batch of the given raw records (each a record body without its length), header
    /// taken from a builder's: the validator reads only the length and record count of it.
    fn batch_of(bodies: &[Vec<u8>], trailing: &[u8]) -> Vec<u8> {
        let mut builder = RecordBatchBuilder::new(0);
        builder.push(None, None, 0);
        let mut batch = builder.finish()[..HEADER_BYTES].to_vec();
        for body in bodies {
            varint::put_varlong(&mut batch, body.len() as i64);
            batch.extend_from_slice(body);
        }
        batch.extend_from_slice(trailing);
        let batch_length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[57..61].copy_from_slice(&(bodies.len() as i32).to_be_bytes());
        batch
    }

    /// A record body: attributes, timestamp delta 0, `delta`, key "k", value "v", no headers,
    /// then `extra`.
    fn body(delta: i64, extra: &[u8]) -> Vec<u8> {
        let mut body = vec![0];
        for field in [0, delta] {
            varint::put_varlong(&mut body, field);
        }
        for bytes in [&b"k"[..], b"v"] {
            varint::put_varlong(&mut body, bytes.len() as i64);
            body.extend_from_slice(bytes);
        }
        varint::put_varlong(&mut body, 0);
        body.extend_from_slice(extra);
        body
    }

    #[test]
    fn validation_passes_what_the_builder_makes() {
        let mut builder = RecordBatchBuilder::new(5_000);
        builder.push(Some(b"a"), Some(&[7; 300]), 5_000);
        builder.push(None, None, 5_007);
        builder.push_with_headers(None, Some(b"x"), &[(b"h", Some(b"v")), (b"n", None)], 0);
        for _ in 0..200 {
            builder.push(Some(b"key"), Some(&[1; 100]), 5_001);
        }
        assert_eq!(validate_records(&builder.finish()), Ok(()));
        assert_eq!(
            validate_records(&batch_of(&[body(0, b""), body(1, b"")], b"")),
            Ok(())
        );
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let bad =
            |bodies: &[Vec<u8>], trailing: &[u8]| validate_records(&batch_of(bodies, trailing));
        assert_eq!(
            bad(&[body(0, b""), body(2, b"")], b""),
            Err(RecordsError::OffsetDelta { index: 1, delta: 2 })
        );
        assert_eq!(
            bad(&[body(0, b"xy")], b""),
            Err(RecordsError::RecordLength {
                index: 0,
                declared: 10,
                used: 8
            })
        );
        assert_eq!(
            bad(&[body(0, b"")], b"zzz"),
            Err(RecordsError::TrailingBytes(3))
        );
        // A header with a null key.
        let mut null_key = body(0, b"");
        null_key.pop();
        for field in [1, -1, -1] {
            varint::put_varlong(&mut null_key, field);
        }
        assert_eq!(
            bad(&[null_key], b""),
            Err(RecordsError::Malformed { index: 0 })
        );
        // Cut anywhere inside the records: malformed, never a panic.
        let whole = batch_of(&[body(0, b""), body(1, b"")], b"");
        for cut in HEADER_BYTES..whole.len() {
            let mut cut_batch = whole[..cut].to_vec();
            let batch_length = (cut - 12) as i32;
            cut_batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
            assert!(
                matches!(
                    validate_records(&cut_batch),
                    Err(RecordsError::Malformed { .. })
                ),
                "cut at {cut}"
            );
        }
    }

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
            records[2].headers.iter().collect::<Vec<_>>(),
            vec![(&b"h"[..], Some(&b"v"[..])), (&b"n"[..], None)]
        );
        assert_eq!(records[2].headers.len(), 2);
        assert!(records[0].headers.is_empty());
        assert_eq!(records[0].headers.iter().next(), None);
    }

    #[test]
    fn a_header_with_a_null_key_is_an_error() {
        // The second record has one header whose key and value are null (-1).
        let mut record = body(1, b"");
        record.pop(); // its header count, 0
        for field in [1, -1, -1] {
            varint::put_varlong(&mut record, field);
        }
        let batch = batch_of(&[body(0, b""), record], b"");
        let results: Vec<_> = Records::new(&batch).unwrap().collect();
        assert!(results[0].is_ok());
        assert_eq!(results[1], Err(RecordsError::Malformed { index: 1 }));
        assert_eq!(
            validate_records(&batch),
            Err(RecordsError::Malformed { index: 1 })
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
