//! Broker-level configs by their Kafka names: what DescribeConfigs shows for the BROKER
//! resource, and which of them AlterConfigs / IncrementalAlterConfigs may change at runtime.
//!
//! The dynamic ones are the partition log defaults and `num.partitions`; they are kept in
//! the catalog and layered as Kafka layers them: per-broker dynamic (resource name = the
//! broker id) over the cluster-wide dynamic default (resource name "") over the static
//! settings (flags, config file) over the built-in defaults. Everything else is read-only,
//! as in Kafka (`num.partitions`, read-only in Kafka, is dynamic here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::PARTITIONS_PER_TOPIC_MAX;
use crate::config::BrokerConfig;
use crate::storage::LogConfig;

/// Where a config's value comes from (Kafka's `ConfigSource` ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// Kafka's `ConfigType` ids for the types used here.
pub const TYPE_BOOLEAN: i8 = 1;
pub const TYPE_STRING: i8 = 2;
pub const TYPE_INT: i8 = 3;
pub const TYPE_SHORT: i8 = 4;
pub const TYPE_LONG: i8 = 5;
pub const TYPE_LIST: i8 = 7;

/// Dynamic broker configs as set through the admin APIs, persisted in the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicBrokerConfigs {
    /// For this broker (resource name = its id).
    #[serde(default)]
    pub per_broker: BTreeMap<String, String>,
    /// For every broker of the cluster (resource name "").
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
}

/// One value of a config at one layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: Source,
}

/// A broker config as DescribeConfigs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: &'static str,
    pub value: String,
    pub source: Source,
    pub kind: i8,
    pub read_only: bool,
    /// Every layer that sets it, highest first (the built-in default last).
    pub synonyms: Vec<Synonym>,
}

/// Why a change to the broker configs is refused, with the Kafka error it gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigRefused {
    /// Not a broker config ringlog has (Kafka would store it unused; ringlog refuses it).
    #[error("unknown broker config {0}: ringlog has no such setting")]
    Unknown(String),
    /// A setting that only changes with a restart (INVALID_REQUEST, as in Kafka).
    #[error("cannot update these configs dynamically: {0}")]
    ReadOnly(String),
    /// A value the setting cannot take (INVALID_REQUEST, as in Kafka).
    #[error("invalid value {value} for configuration {name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: String,
    },
}

impl ConfigRefused {
    /// The Kafka error a refused change gets.
    pub fn error_code(&self) -> protocol::ErrorCode {
        match self {
            ConfigRefused::Unknown(_) => protocol::ErrorCode::InvalidConfig,
            ConfigRefused::ReadOnly(_) | ConfigRefused::InvalidValue { .. } => {
                protocol::ErrorCode::InvalidRequest
            }
        }
    }
}

/// A dynamic config: its name, type, smallest value, how to read it from and write it into
/// the broker's settings (every dynamic config here is a number).
struct Dynamic {
    name: &'static str,
    kind: i8,
    min: i64,
    max: i64,
    get: fn(&BrokerConfig) -> i64,
    set: fn(&mut BrokerConfig, i64),
}

const DYNAMIC: &[Dynamic] = &[
    Dynamic {
        name: "log.index.interval.bytes",
        kind: TYPE_INT,
        min: 0,
        max: i32::MAX as i64,
        get: |config| i64::from(config.log_defaults.index_interval_bytes),
        set: |config, value| config.log_defaults.index_interval_bytes = value as u32,
    },
    Dynamic {
        name: "log.retention.bytes",
        kind: TYPE_LONG,
        min: -1,
        max: i64::MAX,
        get: |config| {
            config
                .log_defaults
                .retention_bytes
                .map_or(-1, |bytes| bytes as i64)
        },
        set: |config, value| {
            config.log_defaults.retention_bytes = (value >= 0).then_some(value as u64)
        },
    },
    Dynamic {
        name: "log.retention.ms",
        kind: TYPE_LONG,
        min: -1,
        max: i64::MAX,
        get: |config| config.log_defaults.retention_ms.unwrap_or(-1),
        set: |config, value| config.log_defaults.retention_ms = (value >= 0).then_some(value),
    },
    Dynamic {
        name: "log.roll.ms",
        kind: TYPE_LONG,
        min: 1,
        max: i64::MAX,
        get: |config| config.log_defaults.segment_ms,
        set: |config, value| config.log_defaults.segment_ms = value,
    },
    Dynamic {
        name: "log.segment.bytes",
        kind: TYPE_INT,
        min: 1024 * 1024,
        max: i32::MAX as i64,
        get: |config| config.log_defaults.segment_bytes as i64,
        set: |config, value| config.log_defaults.segment_bytes = value as u64,
    },
    Dynamic {
        name: "message.max.bytes",
        kind: TYPE_INT,
        min: 0,
        max: i32::MAX as i64,
        get: |config| config.log_defaults.max_message_bytes as i64,
        set: |config, value| config.log_defaults.max_message_bytes = value as usize,
    },
    Dynamic {
        name: "num.partitions",
        kind: TYPE_INT,
        min: 1,
        max: PARTITIONS_PER_TOPIC_MAX as i64,
        get: |config| i64::from(config.num_partitions),
        set: |config, value| config.num_partitions = value as i32,
    },
];

/// The read-only configs: name, type, value.
fn read_only(
    config: &BrokerConfig,
    listener: &str,
    advertised: &str,
) -> Vec<(&'static str, i8, String)> {
    let groups = &config.groups;
    let flush_interval_messages = match config.log_defaults.flush_policy {
        crate::storage::FlushPolicy::EveryWrite => 1,
        crate::storage::FlushPolicy::OnDemand => i64::MAX,
    };
    vec![
        ("advertised.listeners", TYPE_LIST, advertised.to_string()),
        (
            "auto.create.topics.enable",
            TYPE_BOOLEAN,
            config.auto_create_topics.to_string(),
        ),
        ("broker.id", TYPE_INT, config.node_id.to_string()),
        (
            "connections.max.idle.ms",
            TYPE_LONG,
            config.connections_max_idle.as_millis().to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            TYPE_INT,
            groups.initial_rebalance_delay.as_millis().to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            TYPE_INT,
            groups.max_session_timeout.as_millis().to_string(),
        ),
        ("group.max.size", TYPE_INT, groups.max_members.to_string()),
        (
            "group.min.session.timeout.ms",
            TYPE_INT,
            groups.min_session_timeout.as_millis().to_string(),
        ),
        ("listeners", TYPE_STRING, listener.to_string()),
        (
            "log.dirs",
            TYPE_STRING,
            config.data_dir.display().to_string(),
        ),
        (
            "log.flush.interval.messages",
            TYPE_LONG,
            flush_interval_messages.to_string(),
        ),
        (
            "log.retention.check.interval.ms",
            TYPE_LONG,
            config.retention_check_interval.as_millis().to_string(),
        ),
        ("node.id", TYPE_INT, config.node_id.to_string()),
        (
            "offsets.retention.minutes",
            TYPE_INT,
            (groups.offsets_retention.as_secs() / 60).to_string(),
        ),
        (
            "offsets.topic.num.partitions",
            TYPE_INT,
            groups.offsets_topic_partitions.to_string(),
        ),
        (
            "offsets.topic.replication.factor",
            TYPE_SHORT,
            groups.offsets_topic_replication_factor.to_string(),
        ),
        (
            "offsets.topic.segment.bytes",
            TYPE_INT,
            groups.offsets_segment_bytes.to_string(),
        ),
        (
            "socket.request.max.bytes",
            TYPE_INT,
            config.max_request_bytes.to_string(),
        ),
    ]
}

/// The broker's settings with the dynamic configs laid over the static ones. The stored
/// dynamic values were validated when they were set; one that no longer parses is skipped
/// with a warning rather than keeping the broker from starting.
pub fn effective(config: &BrokerConfig, dynamic: &DynamicBrokerConfigs) -> BrokerConfig {
    let mut effective = config.clone();
    for layer in [&dynamic.cluster_default, &dynamic.per_broker] {
        for (name, value) in layer {
            match parse(name, value) {
                Ok((spec, number)) => (spec.set)(&mut effective, number),
                Err(error) => tracing::warn!(%error, "ignoring a stored dynamic broker config"),
            }
        }
    }
    effective
}

fn parse(name: &str, value: &str) -> Result<(&'static Dynamic, i64), ConfigRefused> {
    let invalid = |reason: String| ConfigRefused::InvalidValue {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let Some(spec) = DYNAMIC.iter().find(|spec| spec.name == name) else {
        return Err(if is_read_only(name) {
            ConfigRefused::ReadOnly(name.to_string())
        } else {
            ConfigRefused::Unknown(name.to_string())
        });
    };
    let number: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid("not a number".into()))?;
    if number < spec.min {
        return Err(invalid(format!("value must be at least {}", spec.min)));
    }
    if number > spec.max {
        return Err(invalid(format!("value must be no more than {}", spec.max)));
    }
    Ok((spec, number))
}

fn is_read_only(name: &str) -> bool {
    read_only(&BrokerConfig::default(), "", "")
        .iter()
        .any(|(read_only, _, _)| *read_only == name)
}

/// Checks a candidate set of dynamic configs: every key dynamic, every value valid, and the
/// resulting log defaults consistent.
pub fn validate(
    config: &BrokerConfig,
    dynamic: &DynamicBrokerConfigs,
) -> Result<(), ConfigRefused> {
    let read_only: Vec<&String> = dynamic
        .cluster_default
        .keys()
        .chain(dynamic.per_broker.keys())
        .filter(|name| is_read_only(name))
        .collect();
    if !read_only.is_empty() {
        let names: Vec<&str> = read_only.iter().map(|name| name.as_str()).collect();
        return Err(ConfigRefused::ReadOnly(names.join(", ")));
    }
    for (name, value) in dynamic.cluster_default.iter().chain(&dynamic.per_broker) {
        parse(name, value)?;
    }
    let log: LogConfig = effective(config, dynamic).log_defaults;
    log.validate().map_err(|error| ConfigRefused::InvalidValue {
        name: "log defaults".into(),
        value: String::new(),
        reason: error.to_string(),
    })
}

/// Every broker config with its effective value, source and synonyms.
pub fn entries(
    config: &BrokerConfig,
    dynamic: &DynamicBrokerConfigs,
    listener: &str,
    advertised: &str,
) -> Vec<Entry> {
    let defaults = BrokerConfig::default();
    let default_read_only = read_only(&defaults, listener, advertised);
    let mut entries: Vec<Entry> = read_only(config, listener, advertised)
        .into_iter()
        .zip(default_read_only)
        .map(|((name, kind, value), (_, _, default))| {
            let mut synonyms = Vec::new();
            if value != default {
                synonyms.push(synonym(name, &value, Source::StaticBroker));
            }
            synonyms.push(synonym(name, &default, Source::Default));
            Entry {
                name,
                value,
                source: synonyms[0].source,
                kind,
                read_only: true,
                synonyms,
            }
        })
        .collect();
    for spec in DYNAMIC {
        entries.push(dynamic_entry(spec, config, &defaults, dynamic));
    }
    entries.sort_by_key(|entry| entry.name);
    entries
}

/// The cluster-wide dynamic defaults alone (DescribeConfigs on the resource name "").
pub fn cluster_default_entries(dynamic: &DynamicBrokerConfigs) -> Vec<Entry> {
    DYNAMIC
        .iter()
        .filter_map(|spec| {
            let value = dynamic.cluster_default.get(spec.name)?;
            Some(Entry {
                name: spec.name,
                value: value.clone(),
                source: Source::DynamicDefaultBroker,
                kind: spec.kind,
                read_only: false,
                synonyms: vec![synonym(spec.name, value, Source::DynamicDefaultBroker)],
            })
        })
        .collect()
}

fn dynamic_entry(
    spec: &'static Dynamic,
    config: &BrokerConfig,
    defaults: &BrokerConfig,
    dynamic: &DynamicBrokerConfigs,
) -> Entry {
    let mut synonyms = Vec::new();
    for (layer, source) in [
        (&dynamic.per_broker, Source::DynamicBroker),
        (&dynamic.cluster_default, Source::DynamicDefaultBroker),
    ] {
        if let Some(value) = layer.get(spec.name) {
            synonyms.push(synonym(spec.name, value, source));
        }
    }
    let (configured, default) = ((spec.get)(config), (spec.get)(defaults));
    if configured != default {
        synonyms.push(synonym(
            spec.name,
            &configured.to_string(),
            Source::StaticBroker,
        ));
    }
    synonyms.push(synonym(spec.name, &default.to_string(), Source::Default));
    Entry {
        name: spec.name,
        value: synonyms[0].value.clone(),
        source: synonyms[0].source,
        kind: spec.kind,
        read_only: false,
        synonyms,
    }
}

fn synonym(name: &str, value: &str, source: Source) -> Synonym {
    Synonym {
        name: name.to_string(),
        value: value.to_string(),
        source,
    }
}

/// The broker config a topic config falls back to, as Kafka names it.
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "max.message.bytes" => "message.max.bytes",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(
        per_broker: &[(&str, &str)],
        cluster_default: &[(&str, &str)],
    ) -> DynamicBrokerConfigs {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        DynamicBrokerConfigs {
            per_broker: map(per_broker),
            cluster_default: map(cluster_default),
        }
    }

    #[test]
    fn layers_apply_per_broker_over_cluster_default_over_static() {
        let config = BrokerConfig {
            num_partitions: 2,
            ..BrokerConfig::default()
        };
        let layers = dynamic(
            &[("log.retention.ms", "3600000")],
            &[
                ("log.retention.ms", "60000"),
                ("log.retention.bytes", "1000000"),
                ("num.partitions", "6"),
            ],
        );
        let effective = effective(&config, &layers);
        assert_eq!(effective.log_defaults.retention_ms, Some(3_600_000));
        assert_eq!(effective.log_defaults.retention_bytes, Some(1_000_000));
        assert_eq!(effective.num_partitions, 6);

        let entries = entries(
            &config,
            &layers,
            "PLAINTEXT://127.0.0.1:9092",
            "PLAINTEXT://localhost:9092",
        );
        let find = |name: &str| {
            entries
                .iter()
                .find(|entry| entry.name == name)
                .unwrap()
                .clone()
        };
        let retention = find("log.retention.ms");
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("3600000", Source::DynamicBroker)
        );
        let sources: Vec<Source> = retention.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            vec![
                Source::DynamicBroker,
                Source::DynamicDefaultBroker,
                Source::Default
            ]
        );
        let partitions = find("num.partitions");
        assert_eq!(partitions.value, "6");
        let sources: Vec<Source> = partitions.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            vec![
                Source::DynamicDefaultBroker,
                Source::StaticBroker,
                Source::Default
            ]
        );
        let dirs = find("log.dirs");
        assert!(dirs.read_only);
        assert_eq!(find("message.max.bytes").source, Source::Default);
    }

    #[test]
    fn read_only_unknown_and_bad_values_are_refused_by_name() {
        let config = BrokerConfig::default();
        for (pairs, expected) in [
            (
                vec![("log.dirs", "/x")],
                ConfigRefused::ReadOnly("log.dirs".into()),
            ),
            (
                vec![("no.such.config", "1")],
                ConfigRefused::Unknown("no.such.config".into()),
            ),
        ] {
            assert_eq!(validate(&config, &dynamic(&pairs, &[])), Err(expected));
        }
        for (name, value, says) in [
            ("log.segment.bytes", "5", "at least 1048576"),
            ("log.retention.ms", "soon", "not a number"),
            ("num.partitions", "0", "at least 1"),
        ] {
            let error = validate(&config, &dynamic(&[], &[(name, value)])).unwrap_err();
            assert!(error.to_string().contains(says), "{name}={value}: {error}");
            assert!(error.to_string().contains(name), "{error}");
        }
        assert_eq!(
            validate(&config, &dynamic(&[("log.retention.ms", "-1")], &[])),
            Ok(())
        );
    }
}
