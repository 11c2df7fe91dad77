//! `ringlog cluster describe`: the cluster id, the controller leader, the brokers, and every
//! partition's leader, replicas and in-sync replicas, as any broker of the cluster reports
//! them (DescribeCluster and Metadata).

use clap::Subcommand;
use kafka_protocol::messages::DescribeClusterRequest;

use super::{check, client_error, connect, topic};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Brokers, controller leader, and per partition its leader, replicas and ISR.
    Describe,
}

pub async fn run(brokers: &str, command: ClusterCommand) -> Result<(), String> {
    let mut client = connect(brokers).await?;
    match command {
        ClusterCommand::Describe => {
            let cluster = client
                .send(&DescribeClusterRequest::default())
                .await
                .map_err(client_error)?;
            check(
                cluster.error_code,
                "cannot describe the cluster",
                cluster.error_message.as_deref(),
            )?;
            let controller = match cluster.controller_id.0 {
                -1 => "none (no controller leader now)".to_string(),
                id => id.to_string(),
            };
            println!("cluster {}  controller {controller}", cluster.cluster_id);
            println!("broker\thost:port\track");
            for broker in &cluster.brokers {
                println!(
                    "{}\t{}:{}\t{}",
                    broker.broker_id.0,
                    broker.host,
                    broker.port,
                    broker.rack.as_deref().unwrap_or("-")
                );
            }
            let metadata = topic::metadata(&mut client, None).await?;
            let mut topics: Vec<_> = metadata.topics.iter().collect();
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            if !topics.is_empty() {
                println!("topic\tpartition\tleader\tepoch\treplicas\tisr");
            }
            let ids = |nodes: &[kafka_protocol::messages::BrokerId]| {
                nodes
                    .iter()
                    .map(|node| node.0.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for topic in topics {
                let name = topic.name.as_ref().map_or("?", |name| name.0.as_str());
                let mut partitions: Vec<_> = topic.partitions.iter().collect();
                partitions.sort_by_key(|partition| partition.partition_index);
                for partition in partitions {
                    println!(
                        "{name}\t{}\t{}\t{}\t{}\t{}",
                        partition.partition_index,
                        partition.leader_id.0,
                        partition.leader_epoch,
                        ids(&partition.replica_nodes),
                        ids(&partition.isr_nodes),
                    );
                }
            }
            Ok(())
        }
    }
}
