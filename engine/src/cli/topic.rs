//! `ringlog topic create|list|describe|delete`.

use clap::Subcommand;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::route::Brokers;
use super::{check, client_error, connect};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Partitions (-1: the broker's num.partitions).
        #[arg(short, long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor (this broker keeps one replica).
        #[arg(short, long, default_value_t = 1)]
        replicas: i16,
        /// Topic config, name=value; repeat for more.
        #[arg(short, long = "config")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and offsets.
    Describe { name: String },
    /// Delete a topic and its data.
    Delete { name: String },
    /// Change a topic's configs: --set name=value, --delete name (repeatable).
    AlterConfig {
        name: String,
        #[arg(short, long = "set")]
        set: Vec<String>,
        #[arg(short, long = "delete")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic.
    AddPartitions {
        name: String,
        /// How many partitions to add.
        #[arg(short, long)]
        num: i32,
    },
}

pub async fn run(brokers: &str, command: TopicCommand) -> Result<(), String> {
    let mut client = connect(brokers).await?;
    match command {
        TopicCommand::Create {
            name,
            partitions,
            replicas,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|pair| {
                    let (key, value) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("config '{pair}' is not name=value"))?;
                    Ok(CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(key.to_string()))
                        .with_value(Some(StrBytes::from_string(value.to_string()))))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let request = CreateTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatableTopic::default()
                    .with_name(topic_name(&name))
                    .with_num_partitions(partitions)
                    .with_replication_factor(replicas)
                    .with_configs(configs)]);
            let response = client.send(&request).await.map_err(client_error)?;
            for result in &response.topics {
                check(
                    result.error_code,
                    &format!("cannot create topic '{name}'"),
                    result.error_message.as_deref(),
                )?;
                println!(
                    "created topic {name} with {} partitions",
                    result.num_partitions
                );
            }
            Ok(())
        }
        TopicCommand::List => {
            let response = metadata(&mut client, None).await?;
            for topic in &response.topics {
                if let Some(name) = &topic.name {
                    println!("{}\t{} partitions", name.0, topic.partitions.len());
                }
            }
            Ok(())
        }
        TopicCommand::Describe { name } => {
            let response = metadata(&mut client, Some(&name)).await?;
            let topic = response
                .topics
                .first()
                .ok_or("the broker returned no topic")?;
            check(
                topic.error_code,
                &format!("cannot describe topic '{name}'"),
                None,
            )?;
            println!(
                "topic {name}  id {}  partitions {}",
                topic.topic_id,
                topic.partitions.len()
            );
            let partitions: Vec<i32> = topic
                .partitions
                .iter()
                .map(|partition| partition.partition_index)
                .collect();
            print_configs(&mut client, &name).await?;
            // Offsets from each partition's leader.
            let mut brokers = Brokers::over(client).await?;
            let earliest = brokers.offsets(&name, &partitions, -2).await?;
            let latest = brokers.offsets(&name, &partitions, -1).await?;
            println!("partition\tleader\tlog-start\thigh-watermark");
            for partition in &topic.partitions {
                let index = partition.partition_index;
                println!(
                    "{index}\t{}\t{}\t{}",
                    partition.leader_id.0,
                    earliest
                        .iter()
                        .find(|(p, _)| *p == index)
                        .map_or(-1, |(_, offset)| *offset),
                    latest
                        .iter()
                        .find(|(p, _)| *p == index)
                        .map_or(-1, |(_, offset)| *offset),
                );
            }
            Ok(())
        }
        TopicCommand::AlterConfig { name, set, delete } => {
            use kafka_protocol::messages::incremental_alter_configs_request::{
                AlterConfigsResource, AlterableConfig,
            };
            let mut configs = Vec::new();
            for pair in &set {
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("--set '{pair}' is not name=value"))?;
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.to_string()))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(value.to_string()))),
                );
            }
            for key in &delete {
                configs.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.clone()))
                        .with_config_operation(1),
                );
            }
            if configs.is_empty() {
                return Err("nothing to change: give --set name=value or --delete name".into());
            }
            let request = kafka_protocol::messages::IncrementalAlterConfigsRequest::default()
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(name.clone()))
                    .with_configs(configs)]);
            let response = client.send(&request).await.map_err(client_error)?;
            for result in &response.responses {
                check(
                    result.error_code,
                    &format!("cannot alter topic '{name}'"),
                    result.error_message.as_deref(),
                )?;
            }
            println!("altered topic {name}");
            Ok(())
        }
        TopicCommand::AddPartitions { name, num } => {
            use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
            let response = metadata(&mut client, Some(&name)).await?;
            let topic = response
                .topics
                .first()
                .ok_or("the broker returned no topic")?;
            check(
                topic.error_code,
                &format!("cannot add partitions to '{name}'"),
                None,
            )?;
            let total = topic.partitions.len() as i32 + num;
            let request = kafka_protocol::messages::CreatePartitionsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(topic_name(&name))
                    .with_count(total)]);
            let response = client.send(&request).await.map_err(client_error)?;
            for result in &response.results {
                check(
                    result.error_code,
                    &format!("cannot add partitions to '{name}'"),
                    result.error_message.as_deref(),
                )?;
            }
            println!("topic {name} now has {total} partitions");
            Ok(())
        }
        TopicCommand::Delete { name } => {
            let request = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topic_names(vec![topic_name(&name)])
                .with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&name)))
                ]);
            let response = client.send(&request).await.map_err(client_error)?;
            for result in &response.responses {
                check(
                    result.error_code,
                    &format!("cannot delete topic '{name}'"),
                    result.error_message.as_deref(),
                )?;
            }
            println!("deleted topic {name}");
            Ok(())
        }
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Metadata for one topic (without creating it) or for all.
pub async fn metadata(
    client: &mut protocol::client::Client,
    topic: Option<&str>,
) -> Result<MetadataResponse, String> {
    let topics =
        topic.map(|name| vec![MetadataRequestTopic::default().with_name(Some(topic_name(name)))]);
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false);
    client.send(&request).await.map_err(client_error)
}

async fn print_configs(client: &mut protocol::client::Client, name: &str) -> Result<(), String> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let request = kafka_protocol::messages::DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(name.to_string())),
    ]);
    let response = client.send(&request).await.map_err(client_error)?;
    for result in &response.results {
        check(
            result.error_code,
            &format!("cannot describe configs of '{name}'"),
            result.error_message.as_deref(),
        )?;
        for config in &result.configs {
            let source = if config.config_source == 1 {
                ""
            } else {
                " (default)"
            };
            println!(
                "  {}={}{source}",
                config.name,
                config.value.as_deref().unwrap_or("")
            );
        }
    }
    Ok(())
}
