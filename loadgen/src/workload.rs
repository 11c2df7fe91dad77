//! What a run does: the workload and the client settings, as given on the command line and
//! written into every result.

use std::time::Duration;

use protocol::record_batch::Compression;
use serde::Serialize;

/// How records get keys (and so partitions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Keys {
    /// No keys: batches fill one partition at a time (the sticky partitioner).
    None,
    /// Key `n % count` for the n-th record.
    RoundRobin { count: u32 },
    /// A key drawn uniformly from `count`.
    Uniform { count: u32 },
    /// Key 0 for `hot_share` of the records, the others uniform over `count`.
    HotKey { count: u32, hot_share: f64 },
}

impl Keys {
    /// Parses `none`, `round-robin:K`, `uniform:K`, `hot:K:SHARE`.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let count = |at: usize| -> Result<u32, String> {
            let count: u32 = parts
                .get(at)
                .ok_or_else(|| format!("--keys {text}: give the key count, e.g. uniform:1000"))?
                .parse()
                .map_err(|_| format!("--keys {text}: the key count is not a number"))?;
            if count == 0 {
                return Err(format!("--keys {text}: at least one key"));
            }
            Ok(count)
        };
        match parts[0] {
            "none" => Ok(Keys::None),
            "round-robin" => Ok(Keys::RoundRobin { count: count(1)? }),
            "uniform" => Ok(Keys::Uniform { count: count(1)? }),
            "hot" => {
                let hot_share: f64 = parts
                    .get(2)
                    .unwrap_or(&"0.5")
                    .parse()
                    .map_err(|_| format!("--keys {text}: the hot share is not a number"))?;
                if !(0.0..=1.0).contains(&hot_share) {
                    return Err(format!("--keys {text}: the hot share is between 0 and 1"));
                }
                Ok(Keys::HotKey {
                    count: count(1)?,
                    hot_share,
                })
            }
            other => Err(format!(
                "--keys {other}: expected none, round-robin:K, uniform:K or hot:K:SHARE"
            )),
        }
    }

    pub fn is_keyed(&self) -> bool {
        !matches!(self, Keys::None)
    }
}

/// Bytes of every key: `key-` and a zero-padded number.
pub const KEY_BYTES: usize = 12;

/// The key of key number `n`.
pub fn key_text(n: u32, out: &mut [u8]) {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(out);
    let _ = write!(cursor, "key-{n:08}");
}

/// Parses a codec name as the clients spell it.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    match text {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "--compression {other}: expected none, gzip, lz4 or zstd"
        )),
    }
}

pub fn compression_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
        Compression::Snappy => "snappy",
    }
}

/// Parses `64k`, `1m`, `65536`.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let lower = text.to_ascii_lowercase();
    let (digits, scale) = match lower.strip_suffix(['k', 'm']) {
        Some(digits) if lower.ends_with('k') => (digits, 1024),
        Some(digits) => (digits, 1024 * 1024),
        None => (lower.as_str(), 1),
    };
    digits
        .parse::<usize>()
        .map(|n| n * scale)
        .map_err(|_| format!("'{text}' is not a size (65536, 64k, 1m)"))
}

/// Parses `60s`, `500ms`, `2m`, `60`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime_like(text).ok_or_else(|| format!("'{text}' is not a duration (60s, 500ms, 2m)"))
}

fn humantime_like(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(s) = text.strip_suffix('s') {
        return s.parse::<f64>().ok().map(Duration::from_secs_f64);
    }
    if let Some(m) = text.strip_suffix('m') {
        return m
            .parse::<f64>()
            .ok()
            .map(|m| Duration::from_secs_f64(m * 60.0));
    }
    text.parse::<f64>().ok().map(Duration::from_secs_f64)
}

/// Acknowledgement level: 0, 1 or all (-1).
pub fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => Err(format!("--acks {other}: expected 0, 1 or all")),
    }
}

/// Everything a run does.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub topic: String,
    pub partitions: i32,
    /// Replicas of each partition, when the topic is created (a cluster's brokers).
    pub replication_factor: i16,
    pub producers: usize,
    pub consumers: usize,
    pub message_bytes: usize,
    /// Target records per second over all producers; 0 finds the maximum.
    pub rate: u64,
    #[serde(with = "seconds")]
    pub duration: Duration,
    #[serde(with = "seconds")]
    pub warmup: Duration,
    pub batch_bytes: usize,
    #[serde(with = "seconds")]
    pub linger: Duration,
    pub in_flight: usize,
    /// Most bytes of one Produce request (the Java client's `max.request.size`); a request
    /// carries at most one batch per partition.
    pub max_request_bytes: usize,
    /// Bytes of records generated and not yet acknowledged, per producer (the Java client's
    /// `buffer.memory`); past it records wait, and their latency still counts from their
    /// intended send time.
    pub buffer_bytes: usize,
    #[serde(serialize_with = "codec_name")]
    pub compression: Compression,
    pub acks: i16,
    pub keys: Keys,
    #[serde(with = "seconds")]
    pub fetch_max_wait: Duration,
    pub fetch_max_bytes: i32,
    /// Consumers join this group (else each reads a fixed share of the partitions).
    pub consumer_group: Option<String>,
    /// PASS needs the target rate reached and produce p99 at most this.
    pub p99_target_ms: f64,
    /// The throughput PASS needs (the target rate, or 1M msg/s in max-rate mode).
    pub target_rate: u64,
}

fn codec_name<S: serde::Serializer>(codec: &Compression, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(compression_name(*codec))
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        value: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(value.as_secs_f64())
    }
}

impl Workload {
    /// The standard workload: 1M msg/s of 100-byte records, acks=all, 60 s.
    pub fn standard(topic: &str) -> Workload {
        Workload {
            topic: topic.into(),
            partitions: 8,
            replication_factor: 1,
            producers: 2,
            consumers: 2,
            message_bytes: 100,
            rate: 1_000_000,
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(5),
            batch_bytes: 64 * 1024,
            linger: Duration::from_millis(1),
            in_flight: 5,
            max_request_bytes: 1024 * 1024,
            buffer_bytes: 32 * 1024 * 1024,
            compression: Compression::None,
            acks: -1,
            keys: Keys::None,
            fetch_max_wait: Duration::from_millis(100),
            fetch_max_bytes: 16 * 1024 * 1024,
            consumer_group: None,
            p99_target_ms: 5.0,
            target_rate: 1_000_000,
        }
    }

    /// The settings a sweep keeps fixed (its rows name batch size, codec and acks).
    pub fn label_without_swept(&self) -> String {
        format!(
            "{} B x {}/s, linger {} ms, {}p/{}c, {} partitions",
            self.message_bytes,
            if self.rate == 0 {
                "max".to_string()
            } else {
                self.rate.to_string()
            },
            self.linger.as_millis(),
            self.producers,
            self.consumers,
            self.partitions
        )
    }

    /// One line naming the settings that distinguish runs.
    pub fn label(&self) -> String {
        format!(
            "{} B x {}/s, batch {} KiB, linger {} ms, {}, acks={}, {}p/{}c, {} partitions",
            self.message_bytes,
            if self.rate == 0 {
                "max".to_string()
            } else {
                self.rate.to_string()
            },
            self.batch_bytes / 1024,
            self.linger.as_millis(),
            compression_name(self.compression),
            if self.acks == -1 {
                "all".to_string()
            } else {
                self.acks.to_string()
            },
            self.producers,
            self.consumers,
            self.partitions
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_as_written_and_refuse_nonsense() {
        assert_eq!(parse_bytes("64k").unwrap(), 65536);
        assert_eq!(parse_bytes("1m").unwrap(), 1 << 20);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert!(parse_acks("2").is_err());
        assert_eq!(
            Keys::parse("hot:100:0.9").unwrap(),
            Keys::HotKey {
                count: 100,
                hot_share: 0.9
            }
        );
        assert!(Keys::parse("uniform").is_err());
        assert!(Keys::parse("hot:10:2").is_err());
        let mut key = [0u8; KEY_BYTES];
        key_text(42, &mut key);
        assert_eq!(&key, b"key-00000042");
    }
}
