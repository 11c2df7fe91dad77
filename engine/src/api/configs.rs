//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and a read-only
//! view of the broker's settings). A change is validated in full, persisted in the catalog,
//! then applied to the open partition logs on their owner shards.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use super::ApiError;
use crate::catalog::CatalogError;
use crate::shard::{Shard, ShardError};
use crate::storage::LogConfig;
use crate::topic_config::{topic_settings, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// A topic config's default, as the broker's defaults make it.
fn default_value(defaults: &LogConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "retention.bytes" => defaults
            .retention_bytes
            .map_or(-1, |bytes| bytes as i64)
            .to_string(),
        "retention.ms" => defaults.retention_ms.unwrap_or(-1).to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        _ => String::new(),
    }
}

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => TYPE_LIST,
        "max.message.bytes" | "segment.bytes" => TYPE_INT,
        "retention.bytes" | "retention.ms" | "segment.ms" => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

fn entry(
    name: &str,
    value: String,
    source: i8,
    kind: i8,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_config_type(kind)
        .with_read_only(read_only)
}

pub fn describe(shard: &Rc<Shard>, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let catalog = shard.context.catalog.snapshot();
    let config = &shard.context.config;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let wanted = |key: &str| {
                resource.configuration_keys.as_ref().is_none_or(|keys| {
                    keys.is_empty() || keys.iter().any(|wanted| wanted.as_str() == key)
                })
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match resource.resource_type {
                RESOURCE_TOPIC => match catalog.topics.get(&name) {
                    Some(topic) => {
                        let configs = TOPIC_CONFIGS
                            .iter()
                            .filter(|key| wanted(key))
                            .map(|key| match topic.configs.get(*key) {
                                Some(value) => entry(
                                    key,
                                    value.clone(),
                                    SOURCE_DYNAMIC_TOPIC,
                                    config_type(key),
                                    false,
                                ),
                                None => entry(
                                    key,
                                    default_value(&config.log_defaults, key),
                                    SOURCE_DEFAULT,
                                    config_type(key),
                                    false,
                                ),
                            })
                            .collect();
                        result.with_configs(configs)
                    }
                    None => result
                        .with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                        .with_error_message(Some(StrBytes::from_string(format!(
                            "topic '{name}' does not exist"
                        )))),
                },
                RESOURCE_BROKER => {
                    let configs = [
                        (
                            "auto.create.topics.enable",
                            config.auto_create_topics.to_string(),
                            TYPE_BOOLEAN,
                        ),
                        ("broker.id", config.node_id.to_string(), TYPE_INT),
                        (
                            "log.dirs",
                            config.data_dir.display().to_string(),
                            TYPE_STRING,
                        ),
                        (
                            "num.partitions",
                            config.num_partitions.to_string(),
                            TYPE_INT,
                        ),
                        (
                            "socket.request.max.bytes",
                            config.max_request_bytes.to_string(),
                            TYPE_INT,
                        ),
                    ]
                    .into_iter()
                    .filter(|(key, _, _)| wanted(key))
                    .map(|(key, value, kind)| entry(key, value, SOURCE_STATIC_BROKER, kind, true))
                    .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ErrorCode::InvalidRequest.code())
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "resource type {other} has no configs here"
                    )))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Replaces a topic's overrides (validated first), persists them, applies them to the
/// topic's open partition logs.
pub async fn set_topic_configs(
    shard: &Rc<Shard>,
    topic: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
    validate_only: bool,
) -> Result<(), ApiError> {
    let defaults = shard.context.config.log_defaults.clone();
    let unknown = || {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{topic}' does not exist"),
        )
    };
    let current = shard
        .context
        .catalog
        .snapshot()
        .topics
        .get(topic)
        .cloned()
        .ok_or_else(unknown)?;
    let configs = change(&current.configs)?;
    topic_settings(&defaults, &configs)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    if validate_only {
        return Ok(());
    }
    let name = topic.to_string();
    let updated = shard
        .update_catalog(move |catalog| {
            let meta = catalog.topics.get_mut(&name).ok_or(Altered::Missing)?;
            meta.configs = configs;
            Ok(meta.clone())
        })
        .await
        .map_err(|altered| match altered {
            Altered::Missing => unknown(),
            Altered::Catalog(error) => {
                ApiError::new(ErrorCode::KafkaStorageError, error.to_string())
            }
        })?;
    for owner in updated.owner_shards() {
        let meta = updated.clone();
        shard
            .try_call(owner, move |owner_shard| async move {
                Ok::<(), ShardError>(owner_shard.apply_topic_configs(&meta)?)
            })
            .await
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
    }
    tracing::info!(topic, configs = ?updated.configs, "altered topic configs");
    Ok(())
}

enum Altered {
    Missing,
    Catalog(CatalogError),
}

impl From<CatalogError> for Altered {
    fn from(error: CatalogError) -> Altered {
        Altered::Catalog(error)
    }
}

fn resource_error(resource_type: i8) -> Option<ApiError> {
    (resource_type != RESOURCE_TOPIC).then(|| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("resource type {resource_type} cannot be altered here: only topics"),
        )
    })
}

pub async fn alter(shard: &Rc<Shard>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for resource in request.resources {
        let topic = resource.resource_name.to_string();
        let outcome = match resource_error(resource.resource_type) {
            Some(error) => Err(error),
            None => {
                // AlterConfigs replaces every override with the ones given.
                let configs: BTreeMap<String, String> = resource
                    .configs
                    .iter()
                    .filter_map(|config| {
                        Some((config.name.to_string(), config.value.as_ref()?.to_string()))
                    })
                    .collect();
                set_topic_configs(shard, &topic, move |_| Ok(configs), request.validate_only).await
            }
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => response,
            Err(error) => response
                .with_error_code(error.code.code())
                .with_error_message(Some(StrBytes::from_string(error.message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn incremental_alter(
    shard: &Rc<Shard>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for resource in request.resources {
        let topic = resource.resource_name.to_string();
        let operations: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|config| {
                (
                    config.name.to_string(),
                    config.config_operation,
                    config.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = match resource_error(resource.resource_type) {
            Some(error) => Err(error),
            None => {
                set_topic_configs(
                    shard,
                    &topic,
                    move |current| apply_operations(current, &operations),
                    request.validate_only,
                )
                .await
            }
        };
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => response,
            Err(error) => response
                .with_error_code(error.code.code())
                .with_error_message(Some(StrBytes::from_string(error.message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// SET / DELETE / APPEND / SUBTRACT on a copy of the overrides.
fn apply_operations(
    current: &BTreeMap<String, String>,
    operations: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |message: String| ApiError::new(ErrorCode::InvalidConfig, message);
    let mut configs = current.clone();
    for (name, operation, value) in operations {
        match *operation {
            OP_SET => {
                let value = value
                    .clone()
                    .ok_or_else(|| invalid(format!("SET {name} needs a value")))?;
                configs.insert(name.clone(), value);
            }
            OP_DELETE => {
                configs.remove(name);
            }
            OP_APPEND | OP_SUBTRACT if config_type(name) == TYPE_LIST => {
                let value = value
                    .clone()
                    .ok_or_else(|| invalid(format!("{name} needs a value")))?;
                let mut items: Vec<String> = configs.get(name).map_or_else(
                    || vec!["delete".to_string()],
                    |list| list.split(',').map(str::to_string).collect(),
                );
                if *operation == OP_APPEND {
                    for item in value.split(',') {
                        if !items.iter().any(|existing| existing == item) {
                            items.push(item.to_string());
                        }
                    }
                } else {
                    items.retain(|item| !value.split(',').any(|removed| removed == item));
                }
                configs.insert(name.clone(), items.join(","));
            }
            OP_APPEND | OP_SUBTRACT => {
                return Err(invalid(format!(
                    "{name} is not a list: APPEND and SUBTRACT do not apply"
                )))
            }
            other => return Err(invalid(format!("unknown config operation {other}"))),
        }
    }
    Ok(configs)
}
