//! Produce: validate every batch of a partition before appending any, append on the owner
//! shard (one call per owner shard), and answer once the batches are as durable as `acks`
//! asks: 0 no answer at all, 1 written, -1 (all) written and fdatasync'ed.

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use protocol::codec;
use protocol::record_batch::{validate_batch, BatchHeader, Compression};
use protocol::records::validate_records;
use protocol::ErrorCode;

use super::{by_owner, ApiError};
use crate::catalog::TopicMeta;
use crate::partition::{LocalPartition, ValidBatch};
use crate::shard::Shard;
use crate::storage::Ack;
use crate::topic_config::{TimestampType, TopicCompression};

/// Longest a producer may ask the broker to wait for acks.
const ACK_TIMEOUT_MS_MAX: i32 = 300_000;

/// The outcome for one partition.
#[derive(Debug, Clone)]
struct Produced {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    error: Option<ApiError>,
}

impl Produced {
    fn failed(error: ApiError) -> Produced {
        Produced {
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
            error: Some(error),
        }
    }
}

struct Work {
    slot: (usize, usize),
    topic: TopicMeta,
    partition: i32,
    records: Option<Bytes>,
}

pub async fn handle(shard: &Rc<Shard>, request: ProduceRequest) -> Option<ProduceResponse> {
    let ack = match request.acks {
        0 => Some(Ack::None),
        1 => Some(Ack::Written),
        -1 => Some(Ack::Durable),
        _ => None,
    };
    let timeout = Duration::from_millis(request.timeout_ms.clamp(0, ACK_TIMEOUT_MS_MAX) as u64);
    let catalog = shard.context.catalog.snapshot();
    let mut results: Vec<Vec<Produced>> = Vec::with_capacity(request.topic_data.len());
    let mut work = Vec::new();
    for (t, topic) in request.topic_data.iter().enumerate() {
        let name = topic.name.0.to_string();
        let meta = catalog.topics.get(&name);
        results.push(Vec::with_capacity(topic.partition_data.len()));
        for (p, partition) in topic.partition_data.iter().enumerate() {
            let refused = match (ack, meta.and_then(|meta| meta.owner(partition.index))) {
                (None, _) => Some(ApiError::new(
                    ErrorCode::InvalidRequiredAcks,
                    format!("acks={} is not 0, 1 or -1", request.acks),
                )),
                _ if name == crate::group::OFFSETS_TOPIC => Some(ApiError::new(
                    ErrorCode::InvalidTopicException,
                    format!("'{name}' is the internal topic of committed offsets: clients cannot produce to it"),
                )),
                (_, None) => Some(super::cluster_topics::missing_partition(
                    shard,
                    &name,
                    partition.index,
                )),
                (Some(_), Some(owner)) => {
                    let topic = meta.expect("owner found").clone();
                    work.push((
                        owner,
                        Work {
                            slot: (t, p),
                            topic,
                            partition: partition.index,
                            records: partition.records.clone(),
                        },
                    ));
                    None
                }
            };
            results[t].push(refused.map_or_else(
                || Produced::failed(ApiError::new(ErrorCode::None, "")),
                Produced::failed,
            ));
        }
    }
    if let Some(ack) = ack {
        let calls = by_owner(work).into_iter().map(|(owner, items)| async move {
            let slots: Vec<_> = items.iter().map(|item| item.slot).collect();
            let answer = shard
                .call(owner, move |owner_shard| async move {
                    produce_on_owner(owner_shard, items, ack, timeout).await
                })
                .await;
            (slots, answer)
        });
        for (slots, answer) in futures_util::future::join_all(calls).await {
            match answer {
                Ok(done) => {
                    for ((t, p), produced) in done {
                        results[t][p] = produced;
                    }
                }
                // Never "no error" for data that was not stored: the client retries after
                // refreshing its metadata.
                Err(gone) => {
                    tracing::warn!(%gone, "produce to a stopped shard");
                    for (t, p) in slots {
                        results[t][p] = Produced::failed(ApiError::new(
                            ErrorCode::NotLeaderOrFollower,
                            gone.to_string(),
                        ));
                    }
                }
            }
        }
    }
    if request.acks == 0 {
        return None;
    }
    let responses = request
        .topic_data
        .iter()
        .zip(results)
        .map(|(topic, produced)| {
            let partitions = topic
                .partition_data
                .iter()
                .zip(produced)
                .map(|(partition, produced)| partition_response(partition.index, produced))
                .collect();
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(partitions)
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

fn partition_response(index: i32, produced: Produced) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(produced.base_offset)
        .with_log_append_time_ms(produced.log_append_time_ms)
        .with_log_start_offset(produced.log_start_offset);
    match produced.error {
        Some(error) if error.code != ErrorCode::None => response
            .with_error_code(error.code.code())
            .with_error_message(Some(StrBytes::from_string(error.message))),
        _ => response,
    }
}

/// Every partition of a request on its owner shard: all of them are appended first (in
/// the order the connection sent them, also across a blocked append), then their
/// durability is awaited together, so a request costs one durability round however many
/// partitions it carries.
async fn produce_on_owner(
    shard: Rc<Shard>,
    items: Vec<Work>,
    ack: Ack,
    timeout: Duration,
) -> Vec<((usize, usize), Produced)> {
    // The gates are queued for in this task's first poll, so requests take each
    // partition's gate in the order they reached this shard (tasks start in spawn order,
    // and the gates are fair).
    let _gates = futures_util::future::join_all(
        shard
            .append_gates(items.iter().map(|item| (&item.topic.name, item.partition)))
            .into_iter()
            .map(|gate| gate.lock_owned()),
    )
    .await;
    let mut appended = Vec::with_capacity(items.len());
    for item in &items {
        appended.push((item.slot, append_partition(&shard, item, ack).await));
    }
    drop(_gates);
    let deadline = tokio::time::Instant::now() + timeout;
    futures_util::future::join_all(appended.into_iter().map(|(slot, appended)| async move {
        let produced = match appended {
            Ok(appended) => appended.finish(deadline, timeout).await,
            Err(failed) => failed,
        };
        (slot, produced)
    }))
    .await
}

/// One partition's batches, appended and waiting for the durability `acks` asked for.
struct AppendedPartition {
    base_offset: i64,
    log_append_time_ms: i64,
    local: Rc<LocalPartition>,
    waits: Vec<crate::storage::Appended>,
    /// The leader epoch they were appended in: acks=all waits for the ISR (cluster only).
    leader_epoch: Option<i32>,
    ack: Ack,
}

impl AppendedPartition {
    async fn finish(self, deadline: tokio::time::Instant, timeout: Duration) -> Produced {
        let last_offset = self.waits.iter().map(|wait| wait.last_offset).max();
        let all_done = async {
            for appended in self.waits {
                appended.wait().await?;
            }
            Ok::<_, crate::storage::StorageError>(())
        };
        let mut error = match tokio::time::timeout_at(deadline, all_done).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(ApiError::new(error.error_code(), error.to_string())),
            Err(_) => Some(ApiError::new(
                ErrorCode::RequestTimedOut,
                format!("not durable within {timeout:?}"),
            )),
        };
        if let (None, Ack::Durable, Some(last_offset)) = (&error, self.ack, last_offset) {
            let replicated = self
                .local
                .wait_replicated(last_offset, self.leader_epoch, deadline, timeout)
                .await;
            error = replicated
                .err()
                .map(|refused| ApiError::new(refused.error_code(), refused.to_string()));
        }
        if let Some(error) = error {
            return Produced::failed(error);
        }
        Produced {
            base_offset: self.base_offset,
            log_append_time_ms: self.log_append_time_ms,
            log_start_offset: self.local.log.log_start_offset(),
            error: None,
        }
    }
}

/// Validates, transforms and appends one partition's batches on its owner shard; returns
/// the waits for their durability. A refused batch fails the partition before anything of
/// it is appended.
async fn append_partition(
    shard: &Rc<Shard>,
    work: &Work,
    ack: Ack,
) -> Result<AppendedPartition, Produced> {
    let failed = |code: ErrorCode, message: String| Produced::failed(ApiError::new(code, message));
    let local = shard
        .partition(&work.topic, work.partition)
        .await
        .map_err(|error| failed(error.error_code(), error.to_string()))?;
    let records = work.records.clone().unwrap_or_default();
    let batches = prepare_batches(&local, &records).map_err(Produced::failed)?;
    let log_append_time_ms = match local.settings.borrow().timestamp_type {
        TimestampType::LogAppendTime => batches.first().map_or(-1, |batch| batch.stamped_ms),
        TimestampType::CreateTime => -1,
    };
    let valid = batches.into_iter().map(|prepared| prepared.batch).collect();
    let appended = local
        .append(valid, ack)
        .await
        .map_err(|error| failed(error.error_code(), error.to_string()))?;
    shard
        .context
        .metrics
        .produced(shard.id, &work.topic.name, appended.records, appended.bytes);
    Ok(AppendedPartition {
        base_offset: appended.base_offset,
        log_append_time_ms,
        local,
        waits: appended.waits,
        leader_epoch: appended.leader_epoch,
        ack,
    })
}

/// A batch checked and ready to append, and the log append time stamped on it (or -1).
struct Prepared {
    batch: ValidBatch,
    stamped_ms: i64,
}

/// Splits a partition's records into batches and checks all of them before any is
/// appended; applies the topic's compression and timestamp settings. Returns each batch
/// with the append time stamped on it (or -1).
fn prepare_batches(local: &LocalPartition, records: &Bytes) -> Result<Vec<Prepared>, ApiError> {
    let max_bytes = local.settings.borrow().log.max_message_bytes;
    let corrupt = |message: String| ApiError::new(ErrorCode::CorruptMessage, message);
    if records.is_empty() {
        return Err(corrupt("the produce request has no record batch".into()));
    }
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = &records[at..];
        let header = BatchHeader::parse(rest)
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
        let end = header.total_bytes();
        if end > rest.len() {
            return Err(corrupt(format!(
                "batch declares {end} bytes but {} remain in the request",
                rest.len()
            )));
        }
        let batch = &rest[..end];
        let header = validate_batch(batch, max_bytes)
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
        let compression = header
            .compression()
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
        if compression == Compression::None {
            check_records(batch)?;
        }
        batches.push(transform(local, batch, &header, compression)?);
        at += end;
    }
    Ok(batches)
}

fn check_records(batch: &[u8]) -> Result<(), ApiError> {
    validate_records(batch)
        .map_err(|error| ApiError::new(ErrorCode::InvalidRecord, error.to_string()))
}

/// Most bytes of records a batch may decompress to when the broker compresses it again (it
/// may shrink below `max.message.bytes` after): a compression bomb stays bounded.
const RECOMPRESS_INPUT_MAX: usize = 64 << 20;

/// `batch` (valid, sent with `sent`) rewritten with the topic's codec `target`. Records
/// that arrived compressed are checked once decompressed, as uncompressed ones were.
fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    sent: Compression,
    target: Compression,
    max_bytes: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::MessageTooLarge,
            "the batch's records, decompressed, exceed what the broker recompresses",
        )
    };
    let plain_owned;
    let (plain, plain_header) = if sent == Compression::None {
        (batch, *header)
    } else {
        let input_max = if target == Compression::None {
            max_bytes
        } else {
            max_bytes
                .saturating_mul(8)
                .clamp(max_bytes, RECOMPRESS_INPUT_MAX)
        };
        plain_owned =
            codec::uncompress_batch(batch, header, input_max).map_err(|error| match error {
                codec::DecompressError::TooLarge { .. } => too_large(),
                corrupt => ApiError::new(ErrorCode::CorruptMessage, corrupt.to_string()),
            })?;
        check_records(&plain_owned)?;
        if target == Compression::None {
            return Ok(plain_owned);
        }
        let plain_header = BatchHeader::parse(&plain_owned).map_err(|error| {
            ApiError::new(
                ErrorCode::UnknownServerError,
                format!("decompressed into an invalid batch: {error}"),
            )
        })?;
        (&plain_owned[..], plain_header)
    };
    codec::compress(plain, &plain_header, target).map_err(|error| {
        ApiError::new(
            ErrorCode::UnknownServerError,
            format!("{target:?} compression failed: {error}"),
        )
    })
}

/// Applies the topic's compression and timestamp type. A batch left as sent keeps the
/// header it was validated with; a rewritten one (whose CRC this code computed) is parsed
/// again.
fn transform(
    local: &LocalPartition,
    batch: &[u8],
    header: &BatchHeader,
    compression: Compression,
) -> Result<Prepared, ApiError> {
    let settings = local.settings.borrow();
    let too_large = || {
        ApiError::new(
            ErrorCode::MessageTooLarge,
            "the rewritten batch exceeds max.message.bytes",
        )
    };
    let max_bytes = settings.log.max_message_bytes;
    let mut rewritten = true;
    let mut out = match settings.compression {
        TopicCompression::Codec(target) if target != compression => {
            let stored = recompress(batch, header, compression, target, max_bytes)?;
            if stored.len() > max_bytes {
                return Err(too_large());
            }
            BytesMut::from(&stored[..])
        }
        _ => {
            rewritten = false;
            BytesMut::from(batch)
        }
    };
    let stamped_ms = match settings.timestamp_type {
        TimestampType::LogAppendTime => {
            let now_ms = crate::storage::Clock::system().now_ms();
            codec::stamp_log_append_time(&mut out, now_ms);
            rewritten = true;
            now_ms
        }
        TimestampType::CreateTime => -1,
    };
    let header = if rewritten {
        BatchHeader::parse(&out).map_err(|error| {
            ApiError::new(
                ErrorCode::UnknownServerError,
                format!("rewrote an invalid batch: {error}"),
            )
        })?
    } else {
        *header
    };
    Ok(Prepared {
        batch: ValidBatch { bytes: out, header },
        stamped_ms,
    })
}
