//! Encoding response frames: size prefix, response header, body.
//!
//! The header version follows the API and version, except for `ApiVersions`, whose
//! response header is always v0 (clients must read it before they know what we support).
//!
//! A frame with records (a Fetch response here, a Produce request in `client`) can be
//! encoded as chunks, the records standing in as placeholders and sent from the buffers
//! that hold them (`encode_chunked`).

use std::collections::VecDeque;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

use crate::ErrorCode;

#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{api_version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub reason: String,
}

/// The response header version for an API and version.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    }
}

/// A whole response frame, size prefix included.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let fail = |error: &dyn std::fmt::Display| EncodeError {
        api_key,
        api_version,
        reason: error.to_string(),
    };
    // A Fetch response carries megabytes of records: sized up front, they are copied into
    // the frame once rather than again at every doubling of the buffer.
    let body_bytes = match body {
        ResponseKind::Fetch(fetch) => fetch.compute_size(api_version).unwrap_or(0),
        _ => 0,
    };
    let mut out = BytesMut::with_capacity(256 + body_bytes);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, response_header_version(api_key, api_version))
        .map_err(|error| fail(&error))?;
    body.encode(&mut out, api_version)
        .map_err(|error| fail(&error))?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

/// A response to a request whose API we cannot answer in its own schema (an unknown API
/// key): header v0 and a bare error code, which is how every response body that starts with
/// an error code reads.
pub fn encode_bare_error(correlation_id: i32, error: ErrorCode) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    out.put_i32(6);
    out.put_i32(correlation_id);
    out.put_i16(error.code());
    out.freeze()
}

/// Longest records field a placeholder can stand for; a longer one is sent as real bytes.
pub const RECORDS_PLACEHOLDER_BYTES_MAX: usize = 64 << 20;

/// Never read: placeholders are slices of it, recognised by address when they are encoded.
/// Zero-initialised, so it takes address space and no memory.
static RECORDS_PLACEHOLDER: [u8; RECORDS_PLACEHOLDER_BYTES_MAX] =
    [0; RECORDS_PLACEHOLDER_BYTES_MAX];

/// A stand-in of `len` bytes for a partition's records in a `FetchResponse` that
/// [`encode_fetch_response`] replaces with the chunks holding them, so records are not
/// copied into one buffer and then into the frame. `None` when `len` is 0 (send an empty
/// records field) or over [`RECORDS_PLACEHOLDER_BYTES_MAX`] (send the bytes themselves).
pub fn records_placeholder(len: usize) -> Option<Bytes> {
    (len > 0 && len <= RECORDS_PLACEHOLDER_BYTES_MAX)
        .then(|| Bytes::from_static(&RECORDS_PLACEHOLDER[..len]))
}

fn is_placeholder(bytes: &[u8]) -> bool {
    !bytes.is_empty() && std::ptr::eq(bytes.as_ptr(), RECORDS_PLACEHOLDER.as_ptr())
}

/// A whole Fetch response frame as the chunks to write, in order: the frame's own bytes
/// (size prefix, header, every field but records) in the gaps, and for each placeholder
/// ([`records_placeholder`]), in the order the response holds them, the chunks of
/// `records` in its place, shared rather than copied. Each list's bytes must add up to its
/// placeholder's length.
pub fn encode_fetch_response(
    correlation_id: i32,
    api_version: i16,
    body: &FetchResponse,
    records: Vec<Vec<Bytes>>,
) -> Result<Vec<Bytes>, EncodeError> {
    let fail = |reason: String| EncodeError {
        api_key: ApiKey::Fetch,
        api_version,
        reason,
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = response_header_version(ApiKey::Fetch, api_version);
    let size = header
        .compute_size(header_version)
        .and_then(|header| Ok(header + body.compute_size(api_version)?))
        .map_err(|error| fail(error.to_string()))?;
    let size = i32::try_from(size).map_err(|_| fail(format!("{size} bytes is too large")))?;
    encode_chunked(records, |out| {
        out.put_i32(size);
        header.encode(out, header_version)?;
        body.encode(out, api_version)
    })
    .map_err(fail)
}

/// Runs `encode` (which writes a whole frame) into a buffer that hands each placeholder's
/// records over as chunks, and returns the frame's chunks in order.
pub(crate) fn encode_chunked<E: std::fmt::Display>(
    records: Vec<Vec<Bytes>>,
    encode: impl FnOnce(&mut ChunkedBuf) -> Result<(), E>,
) -> Result<Vec<Bytes>, String> {
    let mut out = ChunkedBuf::new(records);
    encode(&mut out).map_err(|error| error.to_string())?;
    out.finish()
}

/// An encoding buffer that hands placeholders' records over as chunks and copies
/// everything else into its current chunk.
pub(crate) struct ChunkedBuf {
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    flushed: usize,
    current: BytesMut,
    records: VecDeque<Vec<Bytes>>,
    /// The first thing that went wrong; the frame is refused at the end.
    error: Option<String>,
    /// Where a write into already flushed bytes goes (then refused): never in a Fetch
    /// response or a Produce request, whose encoders write forward only (the tests compare
    /// every version's chunks with the frame in one buffer).
    scratch: Vec<u8>,
}

impl ChunkedBuf {
    fn new(records: Vec<Vec<Bytes>>) -> ChunkedBuf {
        ChunkedBuf {
            chunks: Vec::with_capacity(2 * records.len() + 1),
            flushed: 0,
            current: BytesMut::with_capacity(256 + 64 * records.len()),
            records: records.into(),
            error: None,
            scratch: Vec::new(),
        }
    }

    fn fail(&mut self, reason: String) {
        self.error.get_or_insert(reason);
    }

    fn splice(&mut self, len: usize) {
        let Some(chunks) = self.records.pop_front() else {
            return self.fail("more record placeholders than record lists".into());
        };
        let given: usize = chunks.iter().map(Bytes::len).sum();
        if given != len {
            return self.fail(format!(
                "records of {given} bytes for a placeholder of {len}"
            ));
        }
        if !self.current.is_empty() {
            let done = self.current.split().freeze();
            self.flushed += done.len();
            self.chunks.push(done);
        }
        self.flushed += len;
        self.chunks
            .extend(chunks.into_iter().filter(|chunk| !chunk.is_empty()));
    }

    fn finish(mut self) -> Result<Vec<Bytes>, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if !self.records.is_empty() {
            return Err(format!(
                "{} record lists without a placeholder",
                self.records.len()
            ));
        }
        if !self.current.is_empty() {
            self.chunks.push(self.current.freeze());
        }
        Ok(self.chunks)
    }
}

// SAFETY: every method delegates to `current`, whose own implementation upholds the
// contract; `put_slice` either delegates too or writes nothing into `current`.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `current`'s chunk_mut.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if is_placeholder(src) {
            self.splice(src.len());
        } else {
            self.current.put_slice(src);
        }
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.flushed + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.flushed) {
            Some(at) => self.current.resize(at, 0),
            None => self.fail(format!("seek back to {offset}, before {}", self.flushed)),
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let (start, end) = (
            r.start.checked_sub(self.flushed),
            r.end.checked_sub(self.flushed),
        );
        match (start, end) {
            (Some(start), Some(end)) if start <= end && end <= self.current.len() => {
                &mut self.current[start..end]
            }
            _ => {
                self.fail(format!("range {r:?} outside the bytes not yet flushed"));
                self.scratch.resize(r.len(), 0);
                &mut self.scratch[..]
            }
        }
    }
}

/// A batch of `values` records of `value_bytes` each, for tests here and in `client`.
#[cfg(test)]
pub(crate) fn test_batch(values: usize, value_bytes: usize) -> Bytes {
    let mut builder = crate::record_batch::RecordBatchBuilder::new(1_700_000_000_000);
    for i in 0..values {
        builder.push(None, Some(&vec![i as u8; value_bytes]), 1_700_000_000_000);
    }
    builder.finish().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    use test_batch as batch;

    /// Two topics; partitions with two chunks, none, one, and three.
    fn record_lists() -> Vec<Vec<Vec<Bytes>>> {
        vec![
            vec![
                vec![batch(3, 100), batch(1, 5_000)],
                vec![],
                vec![batch(40, 20)],
            ],
            vec![vec![batch(1, 1), batch(2, 70_000), batch(5, 3)]],
        ]
    }

    fn response(records: impl Fn(&[Bytes]) -> Bytes) -> FetchResponse {
        let topics = record_lists()
            .iter()
            .enumerate()
            .map(|(t, partitions)| {
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                    .with_partitions(
                        partitions
                            .iter()
                            .enumerate()
                            .map(|(p, chunks)| {
                                PartitionData::default()
                                    .with_partition_index(p as i32)
                                    .with_high_watermark(1_000 + p as i64)
                                    .with_records(Some(records(chunks)))
                            })
                            .collect(),
                    )
            })
            .collect();
        FetchResponse::default().with_responses(topics)
    }

    fn concat(chunks: &[Bytes]) -> Bytes {
        chunks
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .collect()
    }

    /// The response with placeholders, and the record lists they stand for, in order.
    fn with_placeholders() -> (FetchResponse, Vec<Vec<Bytes>>) {
        let standing_in = response(|chunks| {
            records_placeholder(chunks.iter().map(Bytes::len).sum()).unwrap_or_default()
        });
        let lists = record_lists()
            .into_iter()
            .flatten()
            .filter(|chunks| !chunks.is_empty())
            .collect();
        (standing_in, lists)
    }

    #[test]
    fn a_fetch_frame_in_chunks_is_the_frame_in_one_buffer() {
        let whole = response(concat);
        let (standing_in, lists) = with_placeholders();
        for version in 4..=12 {
            let expected = encode_response(
                7,
                ApiKey::Fetch,
                version,
                &ResponseKind::Fetch(whole.clone()),
            )
            .unwrap();
            let chunks = encode_fetch_response(7, version, &standing_in, lists.clone()).unwrap();
            assert_eq!(concat(&chunks), expected, "v{version}");
            // The records went out as the very buffers they were held in.
            for record_chunk in lists.iter().flatten() {
                assert!(
                    chunks
                        .iter()
                        .any(|chunk| chunk.as_ptr() == record_chunk.as_ptr()),
                    "v{version}: a record chunk was copied"
                );
            }
        }
    }

    #[test]
    fn record_lists_that_do_not_fit_the_placeholders_are_refused() {
        let (standing_in, lists) = with_placeholders();
        let mut short = lists.clone();
        short.pop();
        let mut long = lists.clone();
        long.push(vec![batch(1, 1)]);
        let mut wrong = lists.clone();
        wrong[1].push(batch(1, 1));
        for (name, records) in [("short", short), ("long", long), ("wrong", wrong)] {
            let error = encode_fetch_response(7, 12, &standing_in, records).unwrap_err();
            assert_eq!(error.api_key, ApiKey::Fetch, "{name}");
        }
        assert_eq!(records_placeholder(0), None);
        assert_eq!(records_placeholder(RECORDS_PLACEHOLDER_BYTES_MAX + 1), None);
    }
}
