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

pub fn describe(shard: &Rc<Shard>, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let context = &shard.context;
    let (host, port) = &context.advertised;
    let operations = if request.include_cluster_authorized_operations {
        super::metadata::CLUSTER_OPERATIONS
    } else {
        super::metadata::OPERATIONS_NOT_REQUESTED
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_cluster_id(StrBytes::from_string(
            context.catalog.snapshot().cluster_id.clone(),
        ))
        .with_controller_id(BrokerId(context.config.node_id))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(context.config.node_id))
            .with_host(StrBytes::from_string(host.clone()))
            .with_port(*port)])
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
    match shard.next_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(error) => {
            tracing::error!(%error, "cannot allocate a producer id");
            response
                .with_error_code(ErrorCode::KafkaStorageError.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}
