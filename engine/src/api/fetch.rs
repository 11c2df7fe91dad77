//! Fetch with long polling: read every requested partition on its owner shard (one call per
//! owner); if fewer than `min_bytes` came back, ask the owners again to wait for new data
//! until `max_wait_ms`, and answer as soon as one of them has some.
//!
//! A fetch offset inside a batch returns that whole batch; a partition's data is at most
//! `partition_max_bytes` and the response at most `max_bytes` (trimmed at batch
//! boundaries), except that the first batch of the first partition with data always comes
//! back whole (as in Kafka, so a consumer never stalls on a batch larger than its limits). Fetch sessions are not kept: the
//! response's session id is 0, which tells clients to send full fetch requests.
//!
//! Records stay in the chunks the log returned them in (batches as they arrived, or as read
//! from disk): the response carries a placeholder for each partition's records and the
//! chunks go beside it, written as they are (`protocol::response::encode_fetch_response`).

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use protocol::record_batch::BatchHeader;
use protocol::response::records_placeholder;
use protocol::ErrorCode;

use super::by_owner;
use crate::catalog::TopicMeta;
use crate::shard::Shard;

/// Longest a fetch may wait for data.
const MAX_WAIT_MS_MAX: i32 = 60_000;

/// One partition's answer.
#[derive(Debug, Clone)]
struct Fetched {
    error: ErrorCode,
    high_watermark: i64,
    log_start_offset: i64,
    /// Whole batches, in offset order, in chunks of whole batches.
    records: Vec<Bytes>,
}

impl Fetched {
    fn error(error: ErrorCode) -> Fetched {
        Fetched {
            error,
            high_watermark: -1,
            log_start_offset: -1,
            records: Vec::new(),
        }
    }

    fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

#[derive(Clone)]
struct Wanted {
    slot: (usize, usize),
    topic: TopicMeta,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// The follower fetching, for a replica's fetch (a broker id); None for a consumer.
    replica: Option<i32>,
    /// The leader epoch the fetcher knows (None: not given).
    client_epoch: Option<i32>,
}

/// The response, and the records its placeholders stand for, in the order it holds them.
pub async fn handle(
    shard: &Rc<Shard>,
    request: FetchRequest,
    version: i16,
) -> (FetchResponse, Vec<Vec<Bytes>>) {
    let started = Instant::now();
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS_MAX) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    let response_max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let replica = Some(request.replica_id.0).filter(|id| *id >= 0);
    let catalog = shard.context.catalog.snapshot();
    let mut answers: Vec<Vec<Fetched>> = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let meta = if version >= 13 {
            catalog.topic_by_id(topic.topic_id)
        } else {
            catalog.topics.get(topic.topic.0.as_str())
        };
        answers.push(Vec::with_capacity(topic.partitions.len()));
        for (p, partition) in topic.partitions.iter().enumerate() {
            let owner = meta.and_then(|meta| meta.owner(partition.partition));
            match (meta, owner) {
                (Some(meta), Some(owner)) => {
                    let item = Wanted {
                        slot: (t, p),
                        topic: meta.clone(),
                        partition: partition.partition,
                        offset: partition.fetch_offset,
                        max_bytes: partition.partition_max_bytes.max(0) as usize,
                        replica,
                        client_epoch: Some(partition.current_leader_epoch)
                            .filter(|epoch| *epoch >= 0),
                    };
                    wanted.push((owner, item));
                    answers[t].push(Fetched::error(ErrorCode::None));
                }
                _ => {
                    let name = match version >= 13 {
                        true => super::cluster_topics::cluster_topic_name(shard, topic.topic_id),
                        false => Some(topic.topic.0.to_string()),
                    };
                    let code = match name {
                        Some(name) => {
                            super::cluster_topics::missing_partition(
                                shard,
                                &name,
                                partition.partition,
                            )
                            .code
                        }
                        None => ErrorCode::UnknownTopicId,
                    };
                    answers[t].push(Fetched::error(code))
                }
            }
        }
    }
    let groups = by_owner(wanted);
    // First pass: whatever is there now.
    let mut total = 0;
    for (owner, items) in &groups {
        if let Some(done) = read_on(shard, *owner, items.clone(), None).await {
            total += place(&mut answers, done);
        }
    }
    // Long poll: ask every owner to wait for new data; the first one with data answers.
    let remaining = max_wait.saturating_sub(started.elapsed());
    if total < min_bytes && !remaining.is_zero() && !groups.is_empty() {
        let deadline = started + max_wait;
        let mut waiting: FuturesUnordered<_> = groups
            .iter()
            .map(|(owner, items)| read_on(shard, *owner, items.clone(), Some(deadline)))
            .collect();
        while let Some(done) = waiting.next().await {
            if let Some(done) = done {
                total += place(&mut answers, done);
            }
            if total >= min_bytes.max(1) {
                break;
            }
        }
    }
    limit_response_bytes(&mut answers, response_max_bytes);
    let mut records = Vec::new();
    let responses = request
        .topics
        .iter()
        .zip(answers)
        .map(|(topic, fetched)| {
            let bytes: usize = fetched.iter().map(Fetched::records_bytes).sum();
            shard
                .context
                .metrics
                .fetched(shard.id, topic.topic.0.as_str(), bytes as u64);
            let partitions: Vec<PartitionData> = topic
                .partitions
                .iter()
                .zip(fetched)
                .map(|(partition, fetched)| {
                    partition_data(partition.partition, fetched, &mut records)
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), records)
}

/// Stores answers in their slots; returns the bytes of records they carry.
fn place(answers: &mut [Vec<Fetched>], done: Vec<((usize, usize), Fetched)>) -> usize {
    let mut bytes = 0;
    for ((t, p), fetched) in done {
        bytes += fetched.records_bytes();
        answers[t][p] = fetched;
    }
    bytes
}

/// A partition's answer; its records as a placeholder whose chunks are pushed to `records`
/// (or, past the placeholders' limit, as one buffer).
fn partition_data(index: i32, fetched: Fetched, records: &mut Vec<Vec<Bytes>>) -> PartitionData {
    let bytes = fetched.records_bytes();
    let field = match records_placeholder(bytes) {
        Some(placeholder) => {
            records.push(fetched.records);
            placeholder
        }
        None => concat(fetched.records),
    };
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(fetched.error.code())
        .with_high_watermark(fetched.high_watermark)
        .with_last_stable_offset(fetched.high_watermark)
        .with_log_start_offset(fetched.log_start_offset)
        .with_records(Some(field))
}

/// Trims the answers to `max_bytes` at batch boundaries: partitions, in request order,
/// keep the whole batches that still fit. Only the first batch of the first partition with
/// data may exceed the limit (as in Kafka, so a consumer never stalls on a batch larger than
/// its limit); a response never carries a whole partition's worth past it.
fn limit_response_bytes(answers: &mut [Vec<Fetched>], max_bytes: usize) {
    let mut total = 0usize;
    for fetched in answers.iter_mut().flatten() {
        if fetched.records_bytes() == 0 {
            continue;
        }
        let room = max_bytes.saturating_sub(total);
        let first = total == 0;
        let records = std::mem::take(&mut fetched.records);
        fetched.records = keep_leading_batches(records, |header, before| {
            before + header.total_bytes() <= room || (first && before == 0)
        });
        total += fetched.records_bytes();
    }
}

/// The leading whole batches of `chunks` (each chunk whole batches) that `keep` accepts;
/// `keep` sees each batch's header and the bytes kept before it.
fn keep_leading_batches(
    chunks: Vec<Bytes>,
    mut keep: impl FnMut(&BatchHeader, usize) -> bool,
) -> Vec<Bytes> {
    let mut kept = Vec::with_capacity(chunks.len());
    let mut kept_bytes = 0;
    for chunk in chunks {
        let mut end = 0;
        while end < chunk.len() {
            let Ok(header) = BatchHeader::parse(&chunk[end..]) else {
                break;
            };
            let next = end + header.total_bytes();
            if next > chunk.len() || !keep(&header, kept_bytes + end) {
                break;
            }
            end = next;
        }
        let whole = end == chunk.len();
        if end > 0 {
            kept.push(chunk.slice(..end));
            kept_bytes += end;
        }
        if !whole {
            break;
        }
    }
    kept
}

/// Reads `items` on their owner shard; with a deadline, waits there for new data first when
/// none of them has any. `None` if the owner is gone.
async fn read_on(
    shard: &Rc<Shard>,
    owner: usize,
    items: Vec<Wanted>,
    deadline: Option<Instant>,
) -> Option<Vec<((usize, usize), Fetched)>> {
    shard
        .call(owner, move |owner_shard| async move {
            loop {
                let arrived = owner_shard.data_arrived.clone();
                let mut notified = std::pin::pin!(arrived.notified());
                notified.as_mut().enable();
                let done = read_local(&owner_shard, &items).await;
                let has_data = done.iter().any(|(_, fetched)| {
                    fetched.records_bytes() > 0 || fetched.error != ErrorCode::None
                });
                match deadline {
                    Some(deadline) if !has_data => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                            return done;
                        }
                    }
                    _ => return done,
                }
            }
        })
        .await
        .ok()
}

async fn read_local(shard: &Rc<Shard>, items: &[Wanted]) -> Vec<((usize, usize), Fetched)> {
    let mut done = Vec::with_capacity(items.len());
    for item in items {
        done.push((item.slot, read_partition(shard, item).await));
    }
    done
}

async fn read_partition(shard: &Rc<Shard>, item: &Wanted) -> Fetched {
    let local = match shard.partition(&item.topic, item.partition).await {
        Ok(local) => local,
        Err(error) => return Fetched::error(error.error_code()),
    };
    let allowed = match item.replica {
        Some(replica) => local.follower_fetched(replica, item.offset, item.client_epoch),
        None => local.check_leader(item.client_epoch),
    };
    if let Err(refused) = allowed {
        return Fetched::error(refused.error_code());
    }
    let log = &local.log;
    match log.read(item.offset, item.max_bytes).await {
        Ok(read) => {
            let high_watermark = local.high_watermark();
            // Followers get all the leader has made durable; consumers what the ISR has.
            let records = match item.replica {
                None if high_watermark < read.high_watermark => {
                    keep_leading_batches(read.chunks, |header, _| {
                        header.last_offset() < high_watermark
                    })
                }
                _ => read.chunks,
            };
            Fetched {
                error: ErrorCode::None,
                high_watermark,
                log_start_offset: read.log_start_offset,
                records,
            }
        }
        Err(error) => Fetched {
            error: error.error_code(),
            high_watermark: local.high_watermark(),
            log_start_offset: log.log_start_offset(),
            records: Vec::new(),
        },
    }
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().expect("one chunk"),
        _ => {
            let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                out.extend_from_slice(&chunk);
            }
            out.freeze()
        }
    }
}
