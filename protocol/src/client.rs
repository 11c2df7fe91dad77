//! A small async Kafka client (tokio): one connection, one request at a time, versions
//! negotiated with `ApiVersions`. The CLI and the tests use it; it speaks plain Kafka, so it
//! works against any broker.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::frame::SIZE_BYTES;
use crate::ErrorCode;

/// Responses larger than this are refused (a broker's fetch answer is bounded by the
/// request's max bytes; this is only a guard against a confused peer).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to the broker failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?} waiting for the broker")]
    Timeout(Duration),
    #[error("the broker does not support {api_key:?} in any version this client speaks")]
    Unsupported { api_key: ApiKey },
    #[error("malformed response from the broker: {0}")]
    Malformed(String),
    #[error("response of {0} bytes exceeds the client limit")]
    TooLarge(usize),
    #[error("the broker answered ApiVersions with {}", crate::error_code::describe(*.0))]
    Handshake(i16),
    #[error("{what}: {}", crate::error_code::describe(*.code))]
    Refused { what: String, code: i16 },
}

/// One connection to a broker.
pub struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
    client_id: String,
    /// Broker's supported range per API key.
    versions: HashMap<i16, (i16, i16)>,
    timeout: Duration,
}

impl Client {
    /// Connects and learns the broker's API versions.
    pub async fn connect(address: &str, client_id: &str) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|source| ClientError::Connect {
                address: address.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            next_correlation_id: 1,
            client_id: client_id.to_string(),
            versions: HashMap::new(),
            timeout: Duration::from_secs(30),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("ringlog-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = client.send_version(&request, 3).await?;
        if response.error_code != ErrorCode::None.code() {
            return Err(ClientError::Handshake(response.error_code));
        }
        client.versions = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, (api.min_version, api.max_version)))
            .collect();
        Ok(client)
    }

    /// How long to wait for each response (default 30 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The highest version both sides speak for `R`, capped at `cap`.
    pub fn version_for<R: Request>(&self, cap: i16) -> Result<i16, ClientError> {
        let api_key = ApiKey::try_from(R::KEY)
            .map_err(|()| ClientError::Malformed(format!("api key {}", R::KEY)))?;
        let (min, max) = *self
            .versions
            .get(&R::KEY)
            .ok_or(ClientError::Unsupported { api_key })?;
        let version = max.min(R::VERSIONS.max).min(cap);
        if version < min.max(R::VERSIONS.min) {
            return Err(ClientError::Unsupported { api_key });
        }
        Ok(version)
    }

    /// Sends `request` at the highest common version and returns the response.
    pub async fn send<R: Request>(&mut self, request: &R) -> Result<R::Response, ClientError> {
        let version = self.version_for::<R>(i16::MAX)?;
        self.send_version(request, version).await
    }

    /// The offset of each of `partitions` of `topic` at `timestamp` (-1: the log end, -2:
    /// the log start, else the first offset at or after that time, -1 when there is none),
    /// as (partition, offset). A partition's error code fails the call, naming the partition.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<Vec<(i32, i64)>, ClientError> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{ListOffsetsRequest, TopicName};
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|partition| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*partition)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        // v1+ answers one offset per partition; v5 is as far as brokers since Kafka 2.2 go
        // without needing more than this asks.
        let version = self.version_for::<ListOffsetsRequest>(5)?;
        let response = self.send_version(&request, version).await?;
        let mut found = Vec::new();
        for topic in &response.topics {
            for partition in &topic.partitions {
                if partition.error_code != 0 {
                    return Err(ClientError::Refused {
                        what: format!(
                            "cannot list offsets of partition {}",
                            partition.partition_index
                        ),
                        code: partition.error_code,
                    });
                }
                found.push((partition.partition_index, partition.offset));
            }
        }
        Ok(found)
    }

    /// Sends `request` at `version`.
    pub async fn send_version<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(request, version, correlation_id, &self.client_id)?;
        let timeout = self.timeout;
        let response = tokio::time::timeout(timeout, self.round_trip(&frame))
            .await
            .map_err(|_| ClientError::Timeout(timeout))??;
        decode_response::<R>(response, version, correlation_id)
    }

    async fn round_trip(&mut self, frame: &[u8]) -> Result<Bytes, ClientError> {
        self.stream.write_all(frame).await?;
        let mut size = [0u8; SIZE_BYTES];
        self.stream.read_exact(&mut size).await?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size)
            .map_err(|_| ClientError::Malformed(format!("negative frame size {size}")))?;
        if size > MAX_RESPONSE_BYTES {
            return Err(ClientError::TooLarge(size));
        }
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body).await?;
        Ok(Bytes::from(body))
    }
}

fn request_header<R: Request>(version: i16, correlation_id: i32, client_id: &str) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
}

/// Bytes of `request` at `version` behind `header`, size prefix not included.
fn request_size<R: Request>(
    header: &RequestHeader,
    request: &R,
    version: i16,
) -> Result<usize, ClientError> {
    header
        .compute_size(R::header_version(version))
        .and_then(|header| Ok(header + request.compute_size(version)?))
        .map_err(|error| ClientError::Malformed(error.to_string()))
}

/// A request frame, size prefix included.
pub fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<BytesMut, ClientError> {
    let header = request_header::<R>(version, correlation_id, client_id);
    // Sized once: a produce request's records are copied in a single pass, not again at
    // each doubling of the buffer.
    let size = request_size(&header, request, version)?;
    let mut out = BytesMut::with_capacity(SIZE_BYTES + size);
    out.put_i32(0);
    header
        .encode(&mut out, R::header_version(version))
        .map_err(|error| ClientError::Malformed(error.to_string()))?;
    request
        .encode(&mut out, version)
        .map_err(|error| ClientError::Malformed(error.to_string()))?;
    let size = (out.len() - SIZE_BYTES) as i32;
    out[..SIZE_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}

/// A request frame as the chunks to write, in order, for a request whose records fields
/// hold placeholders ([`crate::response::records_placeholder`]): for each placeholder, in
/// the order the request holds them, the chunks of `records` stand in its place, shared
/// rather than copied into the frame. Each list's bytes must add up to its placeholder's
/// length. A produce request's batches go to the socket from the buffers they were built
/// in.
pub fn encode_request_chunks<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    records: Vec<Vec<Bytes>>,
) -> Result<Vec<Bytes>, ClientError> {
    let header = request_header::<R>(version, correlation_id, client_id);
    let size = request_size(&header, request, version)?;
    let size = i32::try_from(size)
        .map_err(|_| ClientError::Malformed(format!("a request of {size} bytes")))?;
    crate::response::encode_chunked(records, |out| {
        out.put_i32(size);
        header.encode(out, R::header_version(version))?;
        request.encode(out, version)
    })
    .map_err(ClientError::Malformed)
}

/// The response header version of request `R` at `version` (ApiVersions answers in v0
/// whatever the request's version, so an old client can read the refusal).
pub fn response_header_version<R: Request>(version: i16) -> i16 {
    if R::KEY == ApiKey::ApiVersions as i16 {
        0
    } else {
        <R::Response as HeaderVersion>::header_version(version)
    }
}

fn decode_response<R: Request>(
    mut body: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response, ClientError> {
    let header = ResponseHeader::decode(&mut body, response_header_version::<R>(version))
        .map_err(|error| ClientError::Malformed(error.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::Malformed(format!(
            "correlation id {} does not match request {correlation_id}",
            header.correlation_id
        )));
    }
    R::Response::decode(&mut body, version)
        .map_err(|error| ClientError::Malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::{records_placeholder, test_batch as batch};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};

    /// Two topics: partitions with a batch each, one of them large.
    fn batches() -> Vec<Vec<Bytes>> {
        vec![vec![batch(3, 100), batch(2, 70_000)], vec![batch(40, 20)]]
    }

    fn request(records: impl Fn(&Bytes) -> Bytes) -> ProduceRequest {
        let topics = batches()
            .iter()
            .enumerate()
            .map(|(t, partitions)| {
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                    .with_partition_data(
                        partitions
                            .iter()
                            .enumerate()
                            .map(|(p, batch)| {
                                PartitionProduceData::default()
                                    .with_index(p as i32)
                                    .with_records(Some(records(batch)))
                            })
                            .collect(),
                    )
            })
            .collect();
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(topics)
    }

    #[test]
    fn a_produce_frame_in_chunks_is_the_frame_in_one_buffer() {
        let whole = request(Bytes::clone);
        let standing_in = request(|batch| records_placeholder(batch.len()).unwrap());
        let lists: Vec<Vec<Bytes>> = batches().into_iter().flatten().map(|b| vec![b]).collect();
        for version in 3..=11 {
            let expected = encode_request(&whole, version, 9, "test").unwrap();
            let chunks =
                encode_request_chunks(&standing_in, version, 9, "test", lists.clone()).unwrap();
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, expected[..], "v{version}");
            for batch in lists.iter().flatten() {
                assert!(
                    chunks.iter().any(|chunk| chunk.as_ptr() == batch.as_ptr()),
                    "v{version}: a batch was copied into the frame"
                );
            }
        }
        let mut short = lists.clone();
        short.pop();
        assert!(matches!(
            encode_request_chunks(&standing_in, 9, 9, "test", short),
            Err(ClientError::Malformed(_))
        ));
    }
}
