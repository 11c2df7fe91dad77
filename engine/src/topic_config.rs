//! Topic-level configs: the Kafka names ringlog implements, validated, and turned into the
//! storage engine's `LogConfig` plus what the produce path needs.
//!
//! A config ringlog does not implement is refused (INVALID_CONFIG with a message that says
//! so), never accepted and ignored.

use std::collections::BTreeMap;

use protocol::record_batch::Compression;

use crate::storage::LogConfig;

/// What the broker does with a producer's batches before storing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    /// Store batches as the producer sent them.
    Producer,
    /// Store every batch with this codec (`None`: uncompressed): a batch sent with another
    /// codec is decompressed and compressed again, as Kafka does.
    Codec(Compression),
}

/// Which timestamp records keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    /// The broker stamps each batch with its append time.
    LogAppendTime,
}

/// A topic's effective settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub log: LogConfig,
    pub compression: TopicCompression,
    pub timestamp_type: TimestampType,
    /// `min.insync.replicas`: acks=all is refused (NOT_ENOUGH_REPLICAS) with a smaller ISR.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` (the controller reads it from the topic's configs).
    pub unclean_leader_election: bool,
}

/// Every config name a topic accepts, with its default as Kafka shows it.
pub const TOPIC_CONFIGS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "unclean.leader.election.enable",
];

/// Validates `configs` and builds the topic's settings on top of the broker defaults.
pub fn topic_settings(
    defaults: &LogConfig,
    configs: &BTreeMap<String, String>,
) -> Result<TopicSettings, String> {
    let mut settings = TopicSettings {
        log: defaults.clone(),
        compression: TopicCompression::Producer,
        timestamp_type: TimestampType::CreateTime,
        min_insync_replicas: 1,
        unclean_leader_election: false,
    };
    for (name, value) in configs {
        apply(&mut settings, name, value)?;
    }
    settings.log.validate().map_err(|error| error.to_string())?;
    Ok(settings)
}

fn apply(settings: &mut TopicSettings, name: &str, value: &str) -> Result<(), String> {
    let number = |min: i64| -> Result<i64, String> {
        let parsed: i64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{name}={value} is not a number"))?;
        if parsed < min {
            return Err(format!("{name}={value} must be at least {min}"));
        }
        Ok(parsed)
    };
    match name {
        "retention.ms" => settings.log.retention_ms = Some(number(-1)?).filter(|ms| *ms >= 0),
        "retention.bytes" => settings.log.retention_bytes = Some(number(-1)?).filter(|bytes| *bytes >= 0).map(|bytes| bytes as u64),
        "segment.bytes" => settings.log.segment_bytes = number(14)? as u64,
        "segment.ms" => settings.log.segment_ms = number(1)?,
        "max.message.bytes" => settings.log.max_message_bytes = number(0)? as usize,
        "min.insync.replicas" => {
            settings.min_insync_replicas = i32::try_from(number(1)?)
                .map_err(|_| format!("{name}={value} is too large"))?
        }
        "unclean.leader.election.enable" => {
            settings.unclean_leader_election = match value {
                "true" => true,
                "false" => false,
                other => return Err(format!("{name}={other} must be true or false")),
            }
        }
        "cleanup.policy" => {
            if value != "delete" {
                return Err(format!("cleanup.policy={value} is not implemented by ringlog: only 'delete' is"));
            }
        }
        "compression.type" => {
            settings.compression = match value {
                "producer" => TopicCompression::Producer,
                "uncompressed" => TopicCompression::Codec(Compression::None),
                "gzip" => TopicCompression::Codec(Compression::Gzip),
                "snappy" => TopicCompression::Codec(Compression::Snappy),
                "lz4" => TopicCompression::Codec(Compression::Lz4),
                "zstd" => TopicCompression::Codec(Compression::Zstd),
                other => return Err(format!(
                    "compression.type={other} is not a compression type: use uncompressed, zstd, lz4, snappy, gzip or producer"
                )),
            }
        }
        "message.timestamp.type" => {
            settings.timestamp_type = match value {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                other => return Err(format!("message.timestamp.type={other} must be CreateTime or LogAppendTime")),
            }
        }
        other => return Err(format!("{other} is not a topic config ringlog implements")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_configs_shape_the_log() {
        let settings = topic_settings(
            &LogConfig::default(),
            &configs(&[
                ("retention.ms", "60000"),
                ("retention.bytes", "-1"),
                ("segment.bytes", "1048576"),
                ("compression.type", "zstd"),
                ("message.timestamp.type", "LogAppendTime"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.log.retention_ms, Some(60_000));
        assert_eq!(settings.log.retention_bytes, None);
        assert_eq!(settings.log.segment_bytes, 1_048_576);
        assert_eq!(
            settings.compression,
            TopicCompression::Codec(Compression::Zstd)
        );
        assert_eq!(settings.timestamp_type, TimestampType::LogAppendTime);
        let forever =
            topic_settings(&LogConfig::default(), &configs(&[("retention.ms", "-1")])).unwrap();
        assert_eq!(forever.log.retention_ms, None);
    }

    #[test]
    fn unimplemented_and_bad_values_are_refused_with_the_reason() {
        for (name, value, says) in [
            ("cleanup.policy", "compact", "not implemented"),
            ("min.insync.replicas", "0", "at least 1"),
            ("unclean.leader.election.enable", "yes", "true or false"),
            ("flush.messages", "1", "not a topic config"),
            ("retention.ms", "soon", "not a number"),
            ("segment.bytes", "3", "at least 14"),
            (
                "message.timestamp.type",
                "Now",
                "CreateTime or LogAppendTime",
            ),
        ] {
            let error =
                topic_settings(&LogConfig::default(), &configs(&[(name, value)])).unwrap_err();
            assert!(error.contains(says), "{name}={value}: {error}");
        }
    }
}
