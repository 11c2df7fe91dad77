//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, the broker (its
//! id, or "" for the cluster-wide defaults) and groups. A change is validated in full,
//! persisted in the catalog, then applied to the open partition logs on their owner shards.
//! Group configs (KIP-848 consumer, share and streams groups) are described with their
//! defaults; setting one is refused, since ringlog implements only classic groups.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use protocol::ErrorCode;

use super::ApiError;
use crate::broker_config::{
    self, DynamicBrokerConfigs, Entry, Source, Synonym, TYPE_BOOLEAN, TYPE_INT, TYPE_LIST,
    TYPE_LONG, TYPE_STRING,
};
use crate::catalog::{Catalog, CatalogError, TopicMeta};
use crate::shard::{Shard, ShardError};
use crate::storage::LogConfig;
use crate::topic_config::{topic_settings, TOPIC_CONFIGS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_GROUP: i8 = 32;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The group configs of Kafka 4.1 (KIP-848 consumer groups, KIP-932 share groups, KIP-1071
/// streams groups), with the defaults Kafka gives them.
const GROUP_CONFIGS: &[(&str, i8, &str)] = &[
    ("consumer.heartbeat.interval.ms", TYPE_INT, "5000"),
    ("consumer.session.timeout.ms", TYPE_INT, "45000"),
    ("share.auto.offset.reset", TYPE_STRING, "latest"),
    ("share.heartbeat.interval.ms", TYPE_INT, "5000"),
    ("share.isolation.level", TYPE_STRING, "read_uncommitted"),
    ("share.record.lock.duration.ms", TYPE_INT, "30000"),
    ("share.session.timeout.ms", TYPE_INT, "45000"),
    ("streams.heartbeat.interval.ms", TYPE_INT, "5000"),
    ("streams.num.standby.replicas", TYPE_INT, "0"),
    ("streams.session.timeout.ms", TYPE_INT, "45000"),
];

/// A topic config's default, as the broker's (effective) defaults make it.
fn default_value(defaults: &LogConfig, name: &str) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "min.insync.replicas" => "1".into(),
        "unclean.leader.election.enable" => "false".into(),
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
        "max.message.bytes" | "segment.bytes" | "min.insync.replicas" => TYPE_INT,
        "unclean.leader.election.enable" => TYPE_BOOLEAN,
        "retention.bytes" | "retention.ms" | "segment.ms" => TYPE_LONG,
        _ => TYPE_STRING,
    }
}

/// Which broker layer a BROKER resource name addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BrokerLayer {
    /// This broker (its id).
    Node,
    /// Every broker ("").
    ClusterDefault,
}

fn broker_layer(name: &str, node_id: i32) -> Result<BrokerLayer, ApiError> {
    if name.is_empty() {
        return Ok(BrokerLayer::ClusterDefault);
    }
    match name.parse::<i32>() {
        Ok(id) if id == node_id => Ok(BrokerLayer::Node),
        Ok(id) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("unexpected broker id, expected {node_id} or empty string, but received {id}"),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("broker id must be an integer, but it is: {name}"),
        )),
    }
}

/// A topic's configs: its overrides (DYNAMIC_TOPIC_CONFIG), else the broker's value for the
/// config it falls back to, with that config's source and layers.
fn topic_entries(
    overrides: &BTreeMap<String, String>,
    defaults: &LogConfig,
    broker: &[Entry],
) -> Vec<Entry> {
    TOPIC_CONFIGS
        .iter()
        .map(|&name| {
            let fallback: Vec<Synonym> = broker_config::broker_synonym(name)
                .and_then(|synonym| broker.iter().find(|entry| entry.name == synonym))
                .map(|entry| entry.synonyms.clone())
                .unwrap_or_else(|| {
                    vec![Synonym {
                        name: name.to_string(),
                        value: default_value(defaults, name),
                        source: Source::Default,
                    }]
                });
            let (value, source, synonyms) = match overrides.get(name) {
                Some(value) => {
                    let mut synonyms = vec![Synonym {
                        name: name.to_string(),
                        value: value.clone(),
                        source: Source::DynamicTopic,
                    }];
                    synonyms.extend(fallback);
                    (value.clone(), Source::DynamicTopic, synonyms)
                }
                None => (default_value(defaults, name), fallback[0].source, fallback),
            };
            Entry {
                name,
                value,
                source,
                kind: config_type(name),
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

fn group_entries() -> Vec<Entry> {
    GROUP_CONFIGS
        .iter()
        .map(|&(name, kind, default)| Entry {
            name,
            value: default.to_string(),
            source: Source::Default,
            kind,
            read_only: false,
            synonyms: vec![Synonym {
                name: name.to_string(),
                value: default.to_string(),
                source: Source::Default,
            }],
        })
        .collect()
}

fn describe_entry(entry: Entry, include_synonyms: bool) -> DescribeConfigsResourceResult {
    let synonyms = match include_synonyms {
        true => entry
            .synonyms
            .into_iter()
            .map(|synonym| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(synonym.name))
                    .with_value(Some(StrBytes::from_string(synonym.value)))
                    .with_source(synonym.source as i8)
            })
            .collect(),
        false => Vec::new(),
    };
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(entry.name))
        .with_value(Some(StrBytes::from_string(entry.value)))
        .with_config_source(entry.source as i8)
        .with_config_type(entry.kind)
        .with_read_only(entry.read_only)
        .with_synonyms(synonyms)
}

pub fn describe(shard: &Rc<Shard>, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let catalog = shard.context.catalog.snapshot();
    let config = &shard.context.config;
    let dynamic = &catalog.broker_configs;
    let effective = broker_config::effective(config, dynamic);
    let (host, port) = &shard.context.advertised;
    let listener = format!("PLAINTEXT://{}:{port}", config.listen.ip());
    let advertised = format!("PLAINTEXT://{host}:{port}");
    let broker = broker_config::entries(config, dynamic, &listener, &advertised);
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match catalog.topics.get(&name) {
                    Some(topic) => Ok(topic_entries(&topic.configs, &effective.log_defaults, &broker)),
                    None => Err(ApiError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )),
                },
                RESOURCE_BROKER => broker_layer(&name, config.node_id).map(|layer| match layer {
                    BrokerLayer::Node => broker.clone(),
                    BrokerLayer::ClusterDefault => broker_config::cluster_default_entries(dynamic),
                }),
                RESOURCE_GROUP => Ok(group_entries()),
                other => Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("resource type {other} has no configs here: topics (2), brokers (4) and groups (32) do"),
                )),
            };
            match entries {
                Ok(entries) => {
                    let wanted = |key: &str| {
                        resource.configuration_keys.as_ref().is_none_or(|keys| {
                            keys.is_empty() || keys.iter().any(|wanted| wanted.as_str() == key)
                        })
                    };
                    result.with_configs(
                        entries
                            .into_iter()
                            .filter(|entry| wanted(entry.name))
                            .map(|entry| describe_entry(entry, request.include_synonyms))
                            .collect(),
                    )
                }
                Err(error) => result
                    .with_error_code(error.code.code())
                    .with_error_message(Some(StrBytes::from_string(error.message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Replaces the dynamic configs of one broker layer (validated first against the static
/// settings), persists them in the catalog, and applies the new log defaults to every open
/// partition that does not override them.
async fn set_broker_configs(
    shard: &Rc<Shard>,
    resource_name: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>
        + Send
        + 'static,
    validate_only: bool,
) -> Result<(), ApiError> {
    let layer = broker_layer(resource_name, shard.context.config.node_id)?;
    let config = shard.context.config.clone();
    let propose = move |current: &DynamicBrokerConfigs| -> Result<DynamicBrokerConfigs, ApiError> {
        let mut proposed = current.clone();
        let configs = match layer {
            BrokerLayer::Node => &mut proposed.per_broker,
            BrokerLayer::ClusterDefault => &mut proposed.cluster_default,
        };
        *configs = change(configs)?;
        broker_config::validate(&config, &proposed)
            .map_err(|refused| ApiError::new(refused.error_code(), refused.to_string()))?;
        Ok(proposed)
    };
    if validate_only {
        return propose(&shard.context.catalog.snapshot().broker_configs).map(|_| ());
    }
    let updated = shard
        .update_catalog(move |catalog: &mut Catalog| {
            catalog.broker_configs = propose(&catalog.broker_configs).map_err(Altered::Refused)?;
            Ok(catalog.broker_configs.clone())
        })
        .await
        .map_err(Altered::into_api_error)?;
    for owner in 0..shard.shard_count() {
        shard
            .try_call(owner, |owner_shard| async move {
                Ok::<(), ShardError>(owner_shard.apply_all_topic_configs()?)
            })
            .await
            .map_err(|error| ApiError::new(error.error_code(), error.to_string()))?;
    }
    tracing::info!(resource = resource_name, configs = ?updated, "altered broker configs");
    Ok(())
}

/// Group configs govern group protocols ringlog does not implement: a change is refused,
/// naming the key; deleting a config that is not set changes nothing.
fn set_group_configs(operations: &[(String, i8, Option<String>)]) -> Result<(), ApiError> {
    for (name, operation, _) in operations {
        if !GROUP_CONFIGS.iter().any(|(known, _, _)| known == name) {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("unknown group config name: {name}"),
            ));
        }
        if *operation != OP_DELETE {
            return Err(ApiError::new(
                ErrorCode::InvalidConfig,
                format!("{name} applies to consumer, share and streams groups (KIP-848, KIP-932, KIP-1071), which ringlog does not implement: its classic groups take their settings from each member's JoinGroup"),
            ));
        }
    }
    Ok(())
}

/// Replaces a topic's overrides (validated first), persists them, applies them to the
/// topic's open partition logs.
pub async fn set_topic_configs(
    shard: &Rc<Shard>,
    topic: &str,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError>,
    validate_only: bool,
) -> Result<(), ApiError> {
    if let Some(cluster) = &shard.context.cluster {
        return super::cluster_topics::set_configs(shard, cluster, topic, change, validate_only)
            .await;
    }
    let defaults = shard.effective_config().log_defaults;
    let current = shard
        .context
        .catalog
        .snapshot()
        .topics
        .get(topic)
        .cloned()
        .ok_or_else(|| unknown_topic(topic))?;
    let configs = change(&current.configs)?;
    topic_settings(&defaults, &configs)
        .map_err(|message| ApiError::new(ErrorCode::InvalidConfig, message))?;
    if validate_only {
        return Ok(());
    }
    let name = topic.to_string();
    let updated = shard
        .update_catalog(move |catalog| {
            let meta = catalog
                .topics
                .get_mut(&name)
                .ok_or_else(|| Altered::Refused(unknown_topic(&name)))?;
            meta.configs = configs;
            Ok(meta.clone())
        })
        .await
        .map_err(Altered::into_api_error)?;
    for owner in updated.owner_shards() {
        apply_topic_configs_on(shard, owner, &updated).await?;
    }
    tracing::info!(topic, configs = ?updated.configs, "altered topic configs");
    Ok(())
}

/// Applies `meta`'s configs to its partitions open on shard `owner`.
pub async fn apply_topic_configs_on(
    shard: &Rc<Shard>,
    owner: usize,
    meta: &TopicMeta,
) -> Result<(), ApiError> {
    let meta = meta.clone();
    shard
        .try_call(owner, move |owner_shard| async move {
            Ok::<(), ShardError>(owner_shard.apply_topic_configs(&meta)?)
        })
        .await
        .map_err(|error| ApiError::new(error.error_code(), error.to_string()))
}

fn unknown_topic(topic: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownTopicOrPartition,
        format!("topic '{topic}' does not exist"),
    )
}

/// Why a catalog change was not made.
enum Altered {
    Refused(ApiError),
    Catalog(CatalogError),
}

impl Altered {
    fn into_api_error(self) -> ApiError {
        match self {
            Altered::Refused(error) => error,
            Altered::Catalog(error) => {
                ApiError::new(ErrorCode::KafkaStorageError, error.to_string())
            }
        }
    }
}

impl From<CatalogError> for Altered {
    fn from(error: CatalogError) -> Altered {
        Altered::Catalog(error)
    }
}

/// One resource's change: the new overrides from the current ones.
type Change =
    Box<dyn FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> + Send>;

/// Applies `change` to the resource named, whatever its type; `group_operations` are what
/// a group change asks, for the group refusal.
async fn alter_resource(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    change: Change,
    group_operations: &[(String, i8, Option<String>)],
    validate_only: bool,
) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => set_topic_configs(shard, name, change, validate_only).await,
        RESOURCE_BROKER => set_broker_configs(shard, name, change, validate_only).await,
        RESOURCE_GROUP => set_group_configs(group_operations),
        other => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("resource type {other} cannot be altered here: topics (2), brokers (4) and groups (32) can"),
        )),
    }
}

pub async fn alter(shard: &Rc<Shard>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::new();
    for resource in request.resources {
        // AlterConfigs replaces every override with the ones given.
        let configs = super::config_values(
            resource
                .configs
                .iter()
                .map(|config| (&config.name, &config.value)),
        );
        let operations: Vec<(String, i8, Option<String>)> = configs
            .iter()
            .map(|(name, value)| (name.clone(), OP_SET, Some(value.clone())))
            .collect();
        let outcome = alter_resource(
            shard,
            resource.resource_type,
            resource.resource_name.as_str(),
            Box::new(move |_| Ok(configs)),
            &operations,
            request.validate_only,
        )
        .await;
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
        let applied = operations.clone();
        let outcome = alter_resource(
            shard,
            resource.resource_type,
            resource.resource_name.as_str(),
            Box::new(move |current| apply_operations(current, &applied)),
            &operations,
            request.validate_only,
        )
        .await;
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
