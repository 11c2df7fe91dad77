//! Kafka API handlers, one file per API family. A handler takes the decoded request on the
//! connection's shard and returns the response body; work on partitions runs on their owner
//! shards through `Shard::call`, one call per owner shard per request.

pub mod cluster;
pub mod cluster_topics;
pub mod configs;
pub mod delete_records;
pub mod fetch;
pub mod groups;
pub mod leader_epochs;
pub mod list_offsets;
pub mod metadata;
pub mod partitions;
pub mod produce;
pub mod topics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use protocol::request::Request;
use protocol::{versions, ErrorCode};

use crate::shard::Shard;

/// A request no handler can answer: the connection closes.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{0:?} has no handler")]
    NoHandler(kafka_protocol::messages::ApiKey),
}

/// A response body, and for a Fetch the records its placeholders stand for
/// (`protocol::response::encode_fetch_response`).
pub struct Response {
    pub body: ResponseKind,
    pub records: Vec<Vec<Bytes>>,
}

/// Answers one request; `None` when the request gets no response (produce with acks=0),
/// an error when the connection must close.
pub async fn handle(
    shard: &Rc<Shard>,
    request: Request,
    peer: SocketAddr,
) -> Result<Option<Response>, HandlerError> {
    let version = request.api_version;
    let mut records = Vec::new();
    let body = match request.body {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(versions::api_versions_response(ErrorCode::None))
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(shard, body, version).await)
        }
        RequestKind::Produce(body) => match produce::handle(shard, body).await {
            Some(response) => ResponseKind::Produce(response),
            None => return Ok(None),
        },
        RequestKind::Fetch(body) => {
            let (response, fetched) = fetch::handle(shard, body, version).await;
            records = fetched;
            ResponseKind::Fetch(response)
        }
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, body).await)
        }
        RequestKind::OffsetForLeaderEpoch(body) => {
            ResponseKind::OffsetForLeaderEpoch(leader_epochs::handle(shard, body).await)
        }
        RequestKind::DeleteRecords(body) => {
            ResponseKind::DeleteRecords(delete_records::handle(shard, body).await)
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(topics::create(shard, body).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(topics::delete(shard, body, version).await)
        }
        RequestKind::CreatePartitions(body) => {
            ResponseKind::CreatePartitions(partitions::create(shard, body).await)
        }
        RequestKind::DescribeConfigs(body) => {
            ResponseKind::DescribeConfigs(configs::describe(shard, body))
        }
        RequestKind::AlterConfigs(body) => {
            ResponseKind::AlterConfigs(configs::alter(shard, body).await)
        }
        RequestKind::IncrementalAlterConfigs(body) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(shard, body).await)
        }
        RequestKind::DescribeCluster(body) => {
            ResponseKind::DescribeCluster(cluster::describe(shard, body))
        }
        RequestKind::InitProducerId(body) => {
            ResponseKind::InitProducerId(cluster::init_producer_id(shard, body).await)
        }
        RequestKind::FindCoordinator(body) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(shard, body, version))
        }
        RequestKind::JoinGroup(body) => {
            let client_id = request
                .header
                .client_id
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default();
            let client = groups::Client {
                id: client_id,
                host: format!("/{}", peer.ip()),
            };
            ResponseKind::JoinGroup(groups::join(shard, body, version, client).await)
        }
        RequestKind::SyncGroup(body) => ResponseKind::SyncGroup(groups::sync(shard, body).await),
        RequestKind::ListGroups(body) => {
            ResponseKind::ListGroups(groups::list(shard, body, version).await)
        }
        RequestKind::DescribeGroups(body) => {
            ResponseKind::DescribeGroups(groups::describe(shard, body).await)
        }
        RequestKind::DeleteGroups(body) => {
            ResponseKind::DeleteGroups(groups::delete(shard, body).await)
        }
        RequestKind::OffsetDelete(body) => {
            ResponseKind::OffsetDelete(groups::offset_delete(shard, body).await)
        }
        RequestKind::Heartbeat(body) => {
            ResponseKind::Heartbeat(groups::heartbeat(shard, body).await)
        }
        RequestKind::LeaveGroup(body) => {
            ResponseKind::LeaveGroup(groups::leave(shard, body, version).await)
        }
        RequestKind::OffsetCommit(body) => {
            ResponseKind::OffsetCommit(groups::offset_commit(shard, body).await)
        }
        RequestKind::OffsetFetch(body) => {
            ResponseKind::OffsetFetch(groups::offset_fetch(shard, body, version).await)
        }
        other => {
            // The request decoder admits only APIs in the versions table, and every one of
            // them has an arm above: reaching here is a bug in that table. The caller closes
            // the connection rather than leave the client waiting.
            let key = request.api_key;
            tracing::error!(?key, request = ?std::mem::discriminant(&other), "request reached no handler");
            return Err(HandlerError::NoHandler(key));
        }
    };
    Ok(Some(Response { body, records }))
}

/// An error for one topic or partition, with the message clients show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Runs `work` for every item on the item's owner shard, one call per owner shard (items
/// in order there), and returns each item's slot with its result. The items of a shard
/// that is gone get `gone` (a retriable error, never "no error").
pub async fn on_owners<S, I, R, F, Fut>(
    shard: &Rc<Shard>,
    items: Vec<(usize, (S, I))>,
    work: F,
    gone: R,
) -> Vec<(S, R)>
where
    S: Send + Clone + 'static,
    I: Send + 'static,
    R: Send + Clone + 'static,
    F: Fn(Rc<Shard>, I) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = R> + 'static,
{
    let calls = by_owner(items).into_iter().map(|(owner, items)| {
        let slots: Vec<S> = items.iter().map(|(slot, _)| slot.clone()).collect();
        let work = work.clone();
        let call = shard.call(owner, move |owner_shard| async move {
            let mut done = Vec::with_capacity(items.len());
            for (slot, item) in items {
                done.push((slot, work(owner_shard.clone(), item).await));
            }
            done
        });
        let gone = gone.clone();
        async move {
            call.await.unwrap_or_else(|error| {
                tracing::warn!(%error, "partition work not done");
                slots.into_iter().map(|slot| (slot, gone.clone())).collect()
            })
        }
    });
    futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Groups work items by owner shard, keeping each item's position for reassembly.
pub fn by_owner<T>(items: impl IntoIterator<Item = (usize, T)>) -> BTreeMap<usize, Vec<T>> {
    let mut groups: BTreeMap<usize, Vec<T>> = BTreeMap::new();
    for (owner, item) in items {
        groups.entry(owner).or_default().push(item);
    }
    groups
}

/// The configs of a request (CreateTopics, AlterConfigs) as name -> value; entries without
/// a value are left out.
pub fn config_values<'a>(
    entries: impl IntoIterator<
        Item = (
            &'a kafka_protocol::protocol::StrBytes,
            &'a Option<kafka_protocol::protocol::StrBytes>,
        ),
    >,
) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_string(), value.as_ref()?.to_string())))
        .collect()
}
