//! Kafka API handlers, one file per API family. A handler takes the decoded request on the
//! connection's shard and returns the response body; work on partitions runs on their owner
//! shards through `Shard::call`, one call per owner shard per request.

pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod topics;

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::{RequestKind, ResponseKind};
use protocol::request::Request;
use protocol::{versions, ErrorCode};

use crate::server::shard::Shard;

/// Answers one request; `None` when the request gets no response (produce with acks=0).
pub async fn handle(shard: &Rc<Shard>, request: Request) -> Option<ResponseKind> {
    let version = request.api_version;
    Some(match request.body {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(versions::api_versions_response(ErrorCode::None))
        }
        RequestKind::Metadata(body) => {
            ResponseKind::Metadata(metadata::handle(shard, body, version).await)
        }
        RequestKind::Produce(body) => ResponseKind::Produce(produce::handle(shard, body).await?),
        RequestKind::Fetch(body) => ResponseKind::Fetch(fetch::handle(shard, body, version).await),
        RequestKind::ListOffsets(body) => {
            ResponseKind::ListOffsets(list_offsets::handle(shard, body).await)
        }
        RequestKind::CreateTopics(body) => {
            ResponseKind::CreateTopics(topics::create(shard, body).await)
        }
        RequestKind::DeleteTopics(body) => {
            ResponseKind::DeleteTopics(topics::delete(shard, body, version).await)
        }
        other => {
            // The request decoder admits only APIs in the versions table, and every one of
            // them has an arm above; reaching here is a bug in that table.
            tracing::error!(request = ?std::mem::discriminant(&other), "request reached no handler");
            return None;
        }
    })
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

/// Groups work items by owner shard, keeping each item's position for reassembly.
pub fn by_owner<T>(items: impl IntoIterator<Item = (usize, T)>) -> BTreeMap<usize, Vec<T>> {
    let mut groups: BTreeMap<usize, Vec<T>> = BTreeMap::new();
    for (owner, item) in items {
        groups.entry(owner).or_default().push(item);
    }
    groups
}

/// FNV-1a: a stable hash (the same on every build), for placing partitions on shards.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
