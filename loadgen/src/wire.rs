//! A pipelined Kafka connection: requests are written as they come, up to `in_flight`
//! unanswered, and responses (which Kafka sends in request order on a connection) are
//! matched to them by correlation id. Nothing ringlog-specific goes on the wire.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Decodable, Request};
use protocol::client::{
    encode_request, encode_request_chunks, response_header_version, MAX_RESPONSE_BYTES,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex, Semaphore};

/// A connection that failed, with what failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("connection to {address} failed: {source}")]
    Io {
        address: String,
        source: std::io::Error,
    },
    #[error("bad response from {address}: {reason}")]
    Malformed { address: String, reason: String },
    #[error("connection to {address} closed")]
    Closed { address: String },
}

struct Pending {
    correlation_id: i32,
    answer: Option<oneshot::Sender<Result<Bytes, Arc<WireError>>>>,
}

/// Requests waiting for their response; once the reader has failed, `failed` holds why
/// and nothing more is queued (so no request waits for an answer that cannot come).
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    failed: Option<Arc<WireError>>,
}

/// One TCP connection with pipelined requests.
pub struct Pipeline {
    address: String,
    client_id: String,
    writer: Mutex<(OwnedWriteHalf, i32)>,
    pending: Arc<std::sync::Mutex<Queue>>,
    permits: Arc<Semaphore>,
    /// Bytes of request frames written so far.
    written: std::sync::atomic::AtomicU64,
}

impl Pipeline {
    pub async fn connect(
        address: &str,
        client_id: &str,
        in_flight: usize,
    ) -> Result<Pipeline, WireError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| WireError::Connect {
                address: address.into(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let pending: Arc<std::sync::Mutex<Queue>> = Arc::default();
        tokio::spawn(read_responses(reader, pending.clone(), address.to_string()));
        Ok(Pipeline {
            address: address.into(),
            client_id: client_id.into(),
            writer: Mutex::new((writer, 0)),
            pending,
            permits: Arc::new(Semaphore::new(in_flight.max(1))),
            written: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Bytes of request frames written on this connection so far (what went over the
    /// socket, compressed records included).
    pub fn bytes_written(&self) -> u64 {
        self.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends a request; the returned future resolves to the response body (after its
    /// header). Waits for a free in-flight slot first. With `expect_response == false`
    /// (Produce with acks=0) nothing is awaited.
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
    ) -> Result<Option<ResponseFuture>, WireError> {
        self.send_with_records(request, version, expect_response, None)
            .await
    }

    /// As `send`, for a request whose records fields hold placeholders
    /// (`protocol::response::records_placeholder`): `records` are the batches that stand in
    /// for them, in order, written to the socket from their own buffers (vectored) instead
    /// of being copied into the frame.
    pub async fn send_with_records<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
        records: Option<Vec<Vec<Bytes>>>,
    ) -> Result<Option<ResponseFuture>, WireError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WireError::Closed {
                address: self.address.clone(),
            })?;
        let mut writer = self.writer.lock().await;
        writer.1 = writer.1.wrapping_add(1);
        let correlation_id = writer.1;
        let chunks = match records {
            None => encode_request(request, version, correlation_id, &self.client_id)
                .map(|frame| vec![frame.freeze()]),
            Some(records) => {
                encode_request_chunks(request, version, correlation_id, &self.client_id, records)
            }
        }
        .map_err(|error| WireError::Malformed {
            address: self.address.clone(),
            reason: error.to_string(),
        })?;
        let receiver = {
            let mut queue = self.pending.lock().expect("pending lock");
            if let Some(failed) = &queue.failed {
                return Err(WireError::Malformed {
                    address: self.address.clone(),
                    reason: format!("connection already failed: {failed}"),
                });
            }
            if expect_response {
                let (answer, receiver) = oneshot::channel();
                queue.waiting.push_back(Pending {
                    correlation_id,
                    answer: Some(answer),
                });
                Some(receiver)
            } else {
                None
            }
        };
        let written = write_chunks(&mut writer.0, &chunks)
            .await
            .map_err(|source| WireError::Io {
                address: self.address.clone(),
                source,
            })?;
        self.written
            .fetch_add(written as u64, std::sync::atomic::Ordering::Relaxed);
        drop(writer);
        Ok(receiver.map(|receiver| ResponseFuture {
            receiver,
            _permit: permit,
            header_version: response_header_version::<R>(version),
            address: self.address.clone(),
        }))
    }
}

/// Writes every chunk, in order, with as few vectored writes as the socket takes; returns
/// the bytes written.
async fn write_chunks(writer: &mut OwnedWriteHalf, chunks: &[Bytes]) -> std::io::Result<usize> {
    /// Most slices handed to one write (Linux takes up to 1,024).
    const SLICES_MAX: usize = 64;
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let mut at = 0; // index of the first chunk not wholly written
    let mut offset = 0; // bytes of chunks[at] already written
    loop {
        while at < chunks.len() && offset == chunks[at].len() {
            at += 1;
            offset = 0;
        }
        if at == chunks.len() {
            return Ok(total);
        }
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&chunks[at][offset..])
            .chain(chunks[at + 1..].iter().map(|chunk| &chunk[..]))
            .take(SLICES_MAX)
            .map(std::io::IoSlice::new)
            .collect();
        let mut wrote = writer.write_vectored(&slices).await?;
        if wrote == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while at < chunks.len() && wrote >= chunks[at].len() - offset {
            wrote -= chunks[at].len() - offset;
            at += 1;
            offset = 0;
        }
        offset += wrote;
    }
}

/// The answer to one pipelined request; holds its in-flight slot until dropped.
pub struct ResponseFuture {
    receiver: oneshot::Receiver<Result<Bytes, Arc<WireError>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    header_version: i16,
    address: String,
}

impl ResponseFuture {
    /// The decoded response.
    pub async fn decode<T: Decodable>(self, version: i16) -> Result<T, String> {
        let mut body = self
            .receiver
            .await
            .map_err(|_| format!("connection to {} closed", self.address))?
            .map_err(|error| error.to_string())?;
        ResponseHeader::decode(&mut body, self.header_version)
            .map_err(|error| format!("bad response header from {}: {error}", self.address))?;
        T::decode(&mut body, version)
            .map_err(|error| format!("bad response from {}: {error}", self.address))
    }
}

/// Reads response frames into one reused buffer: a frame's body is split off as `Bytes`
/// (records in it stay zero-copy), and the space is reclaimed once the caller drops it, so a
/// steady stream of large fetch responses does not fault in fresh pages for each.
async fn read_responses(
    mut reader: OwnedReadHalf,
    pending: Arc<std::sync::Mutex<Queue>>,
    address: String,
) {
    use bytes::Buf;
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    let failure = loop {
        let mut need = 4;
        let mut failed = None;
        let mut size = 0usize;
        loop {
            if buffer.len() >= 4 && need == 4 {
                let announced = i32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
                if announced < 4 || announced as usize > MAX_RESPONSE_BYTES {
                    failed = Some(WireError::Malformed {
                        address: address.clone(),
                        reason: format!("response size {announced}"),
                    });
                    break;
                }
                size = announced as usize;
                need = 4 + size;
            }
            if buffer.len() >= need && need > 4 {
                break;
            }
            buffer.reserve(need.saturating_sub(buffer.len()).max(64 * 1024));
            match reader.read_buf(&mut buffer).await {
                Ok(0) => {
                    failed = Some(WireError::Closed {
                        address: address.clone(),
                    });
                    break;
                }
                Ok(_) => {}
                Err(source) => {
                    failed = Some(WireError::Io {
                        address: address.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        if let Some(failure) = failed {
            break failure;
        }
        buffer.advance(4);
        let body = buffer.split_to(size).freeze();
        let correlation_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let next = pending.lock().expect("pending lock").waiting.pop_front();
        match next {
            Some(mut waiting) if waiting.correlation_id == correlation_id => {
                if let Some(answer) = waiting.answer.take() {
                    let _ = answer.send(Ok(body));
                }
            }
            Some(waiting) => {
                break WireError::Malformed {
                    address,
                    reason: format!(
                        "response {correlation_id} arrived while {} was expected",
                        waiting.correlation_id
                    ),
                }
            }
            None => {
                break WireError::Malformed {
                    address,
                    reason: format!("unsolicited response {correlation_id}"),
                }
            }
        }
    };
    let failure = Arc::new(failure);
    let mut queue = pending.lock().expect("pending lock");
    queue.failed = Some(failure.clone());
    for mut waiting in queue.waiting.drain(..) {
        if let Some(answer) = waiting.answer.take() {
            let _ = answer.send(Err(failure.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More bytes than a socket takes at once, in chunks of every size (empty ones too):
    /// the writes that come back short resume where they stopped, and the reader gets
    /// every byte in order.
    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order_through_short_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Chunks of 3 MiB take several short writes each.
        let chunks: Vec<Bytes> = (0..100usize)
            .map(|i| {
                let len = [0, 1, 4095, 65_536, 3 << 20][i % 5];
                Bytes::from((0..len).map(|b| (b * 31 + i) as u8).collect::<Vec<u8>>())
            })
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            socket.read_to_end(&mut received).await.unwrap();
            received
        });
        let (_, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
        let written = write_chunks(&mut writer, &chunks).await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        assert_eq!(written, expected.len());
        let received = reader.await.unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "the bytes arrived out of order");
    }
}
