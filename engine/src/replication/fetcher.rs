//! Replica fetchers: on each shard, one task per leader broker that fetches, for every
//! partition the shard owns and follows from that leader, what the leader has, and appends
//! it as it came. A fetcher first checks a partition's tail against the leader's epochs
//! (OffsetsForLeaderEpoch) after each change of leader or epoch, cutting what the leader
//! does not have. Its fetch offset is the follower's log end, which the leader takes as the
//! follower's position; a fetcher ends when its shard follows nothing from that leader.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use protocol::client::{Client, ClientError};
use protocol::record_batch::{validate_batch, BatchHeader};
use protocol::ErrorCode;

use crate::partition::epochs::UNDEFINED_EPOCH;
use crate::partition::replica::FollowerState;
use crate::partition::LocalPartition;
use crate::shard::Shard;

/// How long a leader may hold a fetch open waiting for data.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Bytes per partition and per fetch.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// A batch from a leader is at most this large.
const BATCH_MAX_BYTES: usize = 64 << 20;
/// Wait before trying again after a failure (no connection, no leader yet).
const RETRY: Duration = Duration::from_millis(200);
/// Longest wait for any answer of a leader.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a fetcher for every leader this shard's followers need and none runs for.
pub fn ensure(shard: &Rc<Shard>) {
    let leaders: std::collections::BTreeSet<i32> = shard
        .local_partition_entries()
        .into_iter()
        .filter_map(|(_, local)| local.following().map(|state| state.leader))
        .collect();
    for leader in leaders {
        if shard.fetchers.borrow_mut().insert(leader) {
            tracing::debug!(shard = shard.id, leader, "replica fetcher started");
            tokio::task::spawn_local(run(shard.clone(), leader));
        }
    }
}

/// A partition this shard follows from the fetcher's leader.
struct Followed {
    topic: String,
    partition: i32,
    local: Rc<LocalPartition>,
    state: FollowerState,
    /// The partition's append gate: held while the fetcher cuts or appends, so an append
    /// the partition began as leader (before the view made it a follower) finishes first.
    gate: crate::shard::AppendGate,
}

fn followed_from(shard: &Shard, leader: i32) -> Vec<Followed> {
    shard
        .local_partition_entries()
        .into_iter()
        .filter_map(|((topic, partition), local)| {
            let state = local.following().filter(|state| state.leader == leader)?;
            let gate = shard
                .append_gates(std::iter::once((&topic, partition)))
                .pop()?;
            Some(Followed {
                topic,
                partition,
                local,
                state,
                gate,
            })
        })
        .collect()
}

fn leader_address(shard: &Shard, leader: i32) -> Option<String> {
    let cluster = shard.context.cluster.as_ref()?;
    let view = cluster.snapshot();
    let broker = view
        .live_brokers()
        .find(|broker| broker.registration.id == leader)?;
    Some(format!(
        "{}:{}",
        broker.registration.host, broker.registration.port
    ))
}

/// Why what a leader sent was not appended.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("the leader sent an invalid batch: {0}")]
    Batch(#[from] protocol::record_batch::BatchError),
    #[error(transparent)]
    Partition(#[from] crate::partition::PartitionError),
}

async fn run(shard: Rc<Shard>, leader: i32) {
    let me = shard.context.config.node_id;
    let mut client: Option<Client> = None;
    let mut failures = 0u32;
    loop {
        let followed = followed_from(&shard, leader);
        if followed.is_empty() {
            shard.fetchers.borrow_mut().remove(&leader);
            tracing::debug!(shard = shard.id, leader, "replica fetcher stopped");
            return;
        }
        let Some(address) = leader_address(&shard, leader) else {
            client = None;
            tokio::time::sleep(RETRY).await;
            continue;
        };
        if client.is_none() {
            match Client::connect(&address, &format!("ringlog-replica-{me}")).await {
                Ok(mut connected) => {
                    connected.set_timeout(RESPONSE_TIMEOUT);
                    client = Some(connected);
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(50) {
                        tracing::warn!(leader, %error, "replica fetcher cannot reach the leader");
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let connected = client.as_mut().expect("connected above");
        match fetch_round(connected, me, followed).await {
            Ok(progressed) => {
                failures = 0;
                if !progressed {
                    tokio::time::sleep(RETRY).await;
                }
            }
            Err(error) => {
                tracing::debug!(leader, %error, "replica fetch failed; reconnecting");
                client = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// One round: the epoch check where one is due, then one fetch for the rest. Returns
/// whether any partition got an answer without an error.
async fn fetch_round(
    client: &mut Client,
    me: i32,
    followed: Vec<Followed>,
) -> Result<bool, ClientError> {
    let (unchecked, ready): (Vec<Followed>, Vec<Followed>) = followed
        .into_iter()
        .partition(|followed| followed.state.needs_epoch_check);
    let mut progressed = false;
    if !unchecked.is_empty() {
        progressed |= check_epochs(client, me, unchecked).await?;
    }
    if ready.is_empty() {
        return Ok(progressed);
    }
    progressed |= fetch(client, me, ready).await?;
    Ok(progressed)
}

/// Asks the leader where each partition's latest local epoch ended there, and cuts the
/// local log to match.
async fn check_epochs(
    client: &mut Client,
    me: i32,
    unchecked: Vec<Followed>,
) -> Result<bool, ClientError> {
    let mut asked: Vec<&Followed> = Vec::new();
    let mut progressed = false;
    for followed in &unchecked {
        if followed.state.latest_epoch == UNDEFINED_EPOCH {
            // Nothing written in any epoch here: nothing to compare.
            cut(followed, UNDEFINED_EPOCH, -1).await;
            progressed = true;
        } else {
            asked.push(followed);
        }
    }
    if asked.is_empty() {
        return Ok(progressed);
    }
    let mut topics: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
    for followed in &asked {
        topics.entry(&followed.topic).or_default().push(
            OffsetForLeaderPartition::default()
                .with_partition(followed.partition)
                .with_current_leader_epoch(followed.state.epoch)
                .with_leader_epoch(followed.state.latest_epoch),
        );
    }
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(me))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.send(&request).await?;
    for topic in &response.topics {
        for answer in &topic.partitions {
            let Some(followed) = asked
                .iter()
                .find(|f| f.topic == topic.topic.0.as_str() && f.partition == answer.partition)
            else {
                continue;
            };
            if answer.error_code != ErrorCode::None.code() {
                tracing::debug!(topic = %followed.topic, partition = followed.partition, code = answer.error_code, "leader refused the epoch check");
                continue;
            }
            cut(followed, answer.leader_epoch, answer.end_offset).await;
            progressed = true;
        }
    }
    Ok(progressed)
}

async fn cut(followed: &Followed, leader_epoch: i32, leader_end: i64) {
    let _appends_held = followed.gate.lock().await;
    // The role may have changed while the request was out: only the same epoch is cut.
    if followed.local.following().map(|state| state.epoch) != Some(followed.state.epoch) {
        return;
    }
    if let Err(error) = followed
        .local
        .truncate_to_leader(followed.state.epoch, leader_epoch, leader_end)
        .await
    {
        tracing::error!(topic = %followed.topic, partition = followed.partition, %error, "cannot cut the follower's tail");
    }
}

/// One fetch of every ready partition from its log end; appends what came.
async fn fetch(client: &mut Client, me: i32, ready: Vec<Followed>) -> Result<bool, ClientError> {
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for followed in &ready {
        topics.entry(&followed.topic).or_default().push(
            FetchPartition::default()
                .with_partition(followed.partition)
                .with_current_leader_epoch(followed.state.epoch)
                .with_fetch_offset(followed.state.log_end_offset)
                .with_log_start_offset(followed.state.log_start_offset)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response: FetchResponse = client.send(&request).await?;
    let mut progressed = false;
    let mut appended = Vec::new();
    for topic in &response.responses {
        for data in &topic.partitions {
            let Some(followed) = ready
                .iter()
                .find(|f| f.topic == topic.topic.0.as_str() && f.partition == data.partition_index)
            else {
                continue;
            };
            let code = ErrorCode::from_code(data.error_code);
            if code == Some(ErrorCode::OffsetOutOfRange) {
                tracing::warn!(topic = %followed.topic, partition = followed.partition, offset = followed.state.log_end_offset, leader_log_start = data.log_start_offset, "the leader does not have this follower's log end; checking epochs again");
                followed.local.recheck_epochs();
                continue;
            }
            if code != Some(ErrorCode::None) {
                tracing::debug!(topic = %followed.topic, partition = followed.partition, code = data.error_code, "leader refused a replica fetch");
                continue;
            }
            progressed = true;
            let now = followed.local.following();
            if now.map(|state| (state.leader, state.epoch))
                != Some((followed.state.leader, followed.state.epoch))
            {
                continue;
            }
            let records = data.records.clone().unwrap_or_default();
            match append(followed, &records).await {
                Ok(waits) => appended.push((followed, waits, data.high_watermark)),
                Err(error) => {
                    tracing::error!(topic = %followed.topic, partition = followed.partition, %error, "cannot append what the leader sent")
                }
            }
        }
    }
    // Every partition's batches are in its log: wait for their writes together, so the next
    // fetch (which tells the leader this follower's log ends) follows the slowest one only.
    let written = appended.into_iter().map(|(followed, waits, high_watermark)| async move {
        for wait in waits {
            if let Err(error) = wait.wait().await {
                tracing::error!(topic = %followed.topic, partition = followed.partition, %error, "cannot write what the leader sent");
                return;
            }
        }
        followed.local.set_leader_high_watermark(high_watermark);
    });
    futures_util::future::join_all(written).await;
    Ok(progressed)
}

/// Appends the whole batches of `records` at or after the log end; the waits end when they
/// are written.
async fn append(
    followed: &Followed,
    records: &[u8],
) -> Result<Vec<crate::storage::Appended>, FollowError> {
    let _appends_held = followed.gate.lock().await;
    let log_end = followed.local.log.log_end_offset();
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let Ok(header) = BatchHeader::parse(&records[at..]) else {
            break;
        };
        let end = at + header.total_bytes();
        if end > records.len() {
            break;
        }
        let bytes = &records[at..end];
        at = end;
        if header.last_offset() < log_end {
            continue;
        }
        let header = validate_batch(bytes, BATCH_MAX_BYTES)?;
        batches.push((BytesMut::from(bytes), header));
    }
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    Ok(followed.local.begin_replicated_append(batches).await?)
}
