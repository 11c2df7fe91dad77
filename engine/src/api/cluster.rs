//! DescribeCluster and InitProducerId.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use crate::shard::Shard;

/// A broker as clients are told of it.
pub struct BrokerEntry {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerEntry {
    /// This broker, as a single node announces itself.
    pub fn this_broker(shard: &Shard) -> BrokerEntry {
        let (host, port) = shard.context.advertised.clone();
        BrokerEntry {
            id: shard.context.config.node_id,
            host,
            port,
            rack: None,
        }
    }

    /// A broker as it registered with the controller quorum.
    pub fn registered(broker: &crate::cluster::BrokerState) -> BrokerEntry {
        BrokerEntry {
            id: broker.registration.id,
            host: broker.registration.host.clone(),
            port: broker.registration.port,
            rack: broker.registration.rack.clone(),
        }
    }
}

/// The brokers, controller and cluster id clients are given: in cluster mode the live
/// brokers the controller quorum has registered and its leader (-1 while there is none);
/// otherwise this broker alone, its own controller.
pub struct ClusterFacts {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerEntry>,
}

pub fn cluster_facts(shard: &Shard) -> ClusterFacts {
    let context = &shard.context;
    let local_cluster_id = || context.catalog.snapshot().cluster_id.clone();
    match &context.cluster {
        Some(view) => {
            let view = view.snapshot();
            ClusterFacts {
                cluster_id: view.cluster_id.clone().unwrap_or_else(local_cluster_id),
                controller_id: view.controller_id.unwrap_or(-1),
                brokers: view.live_brokers().map(BrokerEntry::registered).collect(),
            }
        }
        None => ClusterFacts {
            cluster_id: local_cluster_id(),
            controller_id: context.config.node_id,
            brokers: vec![BrokerEntry::this_broker(shard)],
        },
    }
}

pub fn describe(shard: &Rc<Shard>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let facts = cluster_facts(shard);
    let operations = if request.include_cluster_authorized_operations {
        super::metadata::CLUSTER_OPERATIONS
    } else {
        super::metadata::OPERATIONS_NOT_REQUESTED
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_cluster_id(StrBytes::from_string(facts.cluster_id))
        .with_controller_id(BrokerId(facts.controller_id))
        .with_brokers(
            facts
                .brokers
                .into_iter()
                .map(|broker| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(broker.id))
                        .with_host(StrBytes::from_string(broker.host))
                        .with_port(broker.port)
                        .with_rack(broker.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
}

/// Gives an idempotent producer a new id (epoch 0), or bumps the epoch of the id it holds.
/// Transactions are not implemented: a transactional id is refused.
pub async fn init_producer_id(
    shard: &Rc<Shard>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default();
    if let Some(transactional_id) = &request.transactional_id {
        tracing::info!(transactional_id = %transactional_id.0, "refusing InitProducerId: transactions are not implemented");
        return response
            .with_error_code(ErrorCode::InvalidRequest.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        // KIP-360: a producer that hit a fatal sequence error bumps its epoch and goes on.
        if request.producer_epoch < i16::MAX - 1 {
            return response
                .with_producer_id(request.producer_id)
                .with_producer_epoch(request.producer_epoch + 1);
        }
    }
    // In a cluster, ids come in blocks from the quorum, so no two brokers give out the same
    // one; a single node reserves its own blocks in its catalog.
    let allocated = match &shard.context.cluster {
        Some(cluster) => cluster.next_producer_id().await.map_err(|error| {
            tracing::warn!(%error, "cannot get a producer id block from the controller");
            ErrorCode::CoordinatorNotAvailable
        }),
        None => shard.next_producer_id().await.map_err(|error| {
            tracing::error!(%error, "cannot allocate a producer id");
            ErrorCode::KafkaStorageError
        }),
    };
    match allocated {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(code) => response
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
