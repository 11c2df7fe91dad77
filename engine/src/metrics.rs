//! Broker metrics in Prometheus text format, served over HTTP on a port of their own
//! (`--metrics-listen`).
//!
//! Nothing on the hot path is shared between shards: every shard has cells of its own
//! (request latency histograms, per-topic counters behind a mutex only that shard and the
//! scraper take), and a scrape folds them. Storage counters (fdatasyncs, durability
//! rounds) are per thread too (`storage::stats`). Partition log sizes are published by each
//! owner shard every few seconds. The HTTP server is one plain thread: it answers `GET
//! /metrics` and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];
/// API keys tracked (Kafka's keys are below this).
const API_KEYS: usize = 80;

/// A latency histogram of fixed buckets.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        if let Some(bucket) = BUCKETS_US.iter().position(|bound| us <= *bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds `other`'s counts into this one (folding shards at scrape time).
    pub fn add(&self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter().zip(&other.buckets) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.count
            .fetch_add(other.count.load(Ordering::Relaxed), Ordering::Relaxed);
        self.sum_us
            .fetch_add(other.sum_us.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }

    /// How many took longer than `bound_us`, which must be one of the bucket bounds (the
    /// count is exact only at a bound).
    pub fn count_over(&self, bound_us: u64) -> u64 {
        let within: u64 = BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .filter(|(bound, _)| **bound <= bound_us)
            .map(|(_, bucket)| bucket.load(Ordering::Relaxed))
            .sum();
        self.count().saturating_sub(within)
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in BUCKETS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let seconds = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{separator}le=\"{seconds}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{separator}le=\"+Inf\"}} {count}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct TopicCounters {
    produce_requests: u64,
    produce_records: u64,
    produce_bytes: u64,
    fetch_requests: u64,
    fetch_bytes: u64,
}

/// The cells one shard writes.
struct ShardCells {
    requests: [Histogram; API_KEYS],
    /// Connections closed over a bad frame (too large, bad size) or an undecodable request.
    refused: AtomicU64,
    topics: Mutex<HashMap<String, TopicCounters>>,
    /// Replication (cluster mode): ISR changes this shard's leaders had written, and the
    /// last published under-replicated leader partitions and largest follower lag.
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    under_replicated: AtomicU64,
    replica_lag_max: AtomicU64,
}

impl Default for ShardCells {
    fn default() -> ShardCells {
        ShardCells {
            requests: std::array::from_fn(|_| Histogram::default()),
            refused: AtomicU64::new(0),
            topics: Mutex::new(HashMap::new()),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
            under_replicated: AtomicU64::new(0),
            replica_lag_max: AtomicU64::new(0),
        }
    }
}

impl ShardCells {
    fn topic(&self, topic: &str, change: impl FnOnce(&mut TopicCounters)) {
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match topics.get_mut(topic) {
            Some(counters) => change(counters),
            None => change(topics.entry(topic.to_string()).or_default()),
        }
    }
}

/// Every metric of the broker.
pub struct Metrics {
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    shards: Vec<ShardCells>,
    partition_sizes: Mutex<BTreeMap<(String, i32), u64>>,
    /// Broker-wide state read at scrape time: the request byte budget and the offline
    /// partitions.
    sources: std::sync::OnceLock<Sources>,
}

/// What the broker shares with the metrics once it has built it.
#[derive(Debug)]
pub struct Sources {
    pub queued_bytes: std::sync::Arc<crate::server::budget::ByteBudget>,
    pub placement: std::sync::Arc<crate::server::placement::ConnectionPlacement>,
    pub offline: std::sync::Arc<crate::partition::offline::OfflinePartitions>,
    /// The controller quorum's view, in cluster mode.
    pub cluster: Option<std::sync::Arc<crate::cluster::ClusterHandle>>,
}

impl Metrics {
    pub fn new(shards: usize) -> Metrics {
        Metrics {
            connections_open: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            shards: (0..shards.max(1)).map(|_| ShardCells::default()).collect(),
            partition_sizes: Mutex::new(BTreeMap::new()),
            sources: std::sync::OnceLock::new(),
        }
    }

    /// Hands the metrics what they read at scrape time (once, at start-up).
    pub fn attach(&self, sources: Sources) {
        let _ = self.sources.set(sources);
    }

    fn cells(&self, shard: usize) -> &ShardCells {
        &self.shards[shard % self.shards.len()]
    }

    pub fn request_done(&self, shard: usize, api_key: i16, elapsed: Duration) {
        if let Some(histogram) = usize::try_from(api_key)
            .ok()
            .and_then(|key| self.cells(shard).requests.get(key))
        {
            histogram.record(elapsed);
        }
    }

    pub fn connection_refused(&self, shard: usize) {
        self.cells(shard).refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn produced(&self, shard: usize, topic: &str, records: u64, bytes: u64) {
        self.cells(shard).topic(topic, |counters| {
            counters.produce_requests += 1;
            counters.produce_records += records;
            counters.produce_bytes += bytes;
        });
    }

    pub fn fetched(&self, shard: usize, topic: &str, bytes: u64) {
        self.cells(shard).topic(topic, |counters| {
            counters.fetch_requests += 1;
            counters.fetch_bytes += bytes;
        });
    }

    /// A shard's leader had an ISR change written: replicas taken out and put back.
    pub fn isr_changed(&self, shard: usize, shrinks: u64, expands: u64) {
        let cells = self.cells(shard);
        cells.isr_shrinks.fetch_add(shrinks, Ordering::Relaxed);
        cells.isr_expands.fetch_add(expands, Ordering::Relaxed);
    }

    /// A shard's leader partitions with fewer in-sync replicas than replicas, and the
    /// largest lag (records) of any of their followers.
    pub fn publish_replication(&self, shard: usize, under_replicated: u64, replica_lag_max: u64) {
        let cells = self.cells(shard);
        cells
            .under_replicated
            .store(under_replicated, Ordering::Relaxed);
        cells
            .replica_lag_max
            .store(replica_lag_max, Ordering::Relaxed);
    }

    /// Replaces the published sizes of one shard's partitions.
    pub fn publish_partition_sizes(&self, sizes: Vec<((String, i32), u64)>) {
        let mut published = self
            .partition_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (key, size) in sizes {
            published.insert(key, size);
        }
    }

    pub fn forget_topic(&self, topic: &str) {
        for cells in &self.shards {
            cells
                .topics
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(topic);
        }
        self.partition_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .retain(|(name, _), _| name != topic);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE ringlog_connections_open gauge");
        let _ = writeln!(
            out,
            "ringlog_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE ringlog_connections_total counter");
        let _ = writeln!(
            out,
            "ringlog_connections_total {}",
            self.connections_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# TYPE ringlog_connections_refused_total counter");
        let refused: u64 = self
            .shards
            .iter()
            .map(|cells| cells.refused.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(out, "ringlog_connections_refused_total {refused}");
        let _ = writeln!(out, "# TYPE ringlog_request_latency_seconds histogram");
        for key in 0..API_KEYS {
            let histogram = Histogram::default();
            for cells in &self.shards {
                histogram.add(&cells.requests[key]);
            }
            if histogram.count() == 0 {
                continue;
            }
            let api = kafka_protocol::messages::ApiKey::try_from(key as i16)
                .map(|api| format!("{api:?}"))
                .unwrap_or_else(|()| key.to_string());
            histogram.render(
                &mut out,
                "ringlog_request_latency_seconds",
                &format!("api=\"{api}\""),
            );
        }
        let mut topics: BTreeMap<String, TopicCounters> = BTreeMap::new();
        for cells in &self.shards {
            let shard_topics = cells
                .topics
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (topic, counters) in shard_topics.iter() {
                let sum = topics.entry(topic.clone()).or_default();
                sum.produce_requests += counters.produce_requests;
                sum.produce_records += counters.produce_records;
                sum.produce_bytes += counters.produce_bytes;
                sum.fetch_requests += counters.fetch_requests;
                sum.fetch_bytes += counters.fetch_bytes;
            }
        }
        for (name, kind, value) in [
            (
                "ringlog_produce_requests_total",
                "counter",
                (|c: &TopicCounters| c.produce_requests) as fn(&TopicCounters) -> u64,
            ),
            ("ringlog_produce_records_total", "counter", |c| {
                c.produce_records
            }),
            ("ringlog_produce_bytes_total", "counter", |c| {
                c.produce_bytes
            }),
            ("ringlog_fetch_requests_total", "counter", |c| {
                c.fetch_requests
            }),
            ("ringlog_fetch_bytes_total", "counter", |c| c.fetch_bytes),
        ] {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (topic, counters) in &topics {
                let _ = writeln!(out, "{name}{{topic=\"{topic}\"}} {}", value(counters));
            }
        }
        let _ = writeln!(out, "# TYPE ringlog_partition_log_bytes gauge");
        for ((topic, partition), size) in self
            .partition_sizes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "ringlog_partition_log_bytes{{topic=\"{topic}\",partition=\"{partition}\"}} {size}"
            );
        }
        if let Some(sources) = self.sources.get() {
            let _ = writeln!(out, "# TYPE ringlog_queued_request_bytes gauge");
            let _ = writeln!(
                out,
                "ringlog_queued_request_bytes {}",
                sources.queued_bytes.used()
            );
            let _ = writeln!(out, "# TYPE ringlog_shard_connections gauge");
            for shard in 0..sources.placement.shards() {
                let _ = writeln!(
                    out,
                    "ringlog_shard_connections{{shard=\"{shard}\"}} {}",
                    sources.placement.serving(shard)
                );
            }
            let _ = writeln!(out, "# TYPE ringlog_partition_offline gauge");
            for ((topic, partition), _) in sources.offline.all() {
                let _ = writeln!(
                    out,
                    "ringlog_partition_offline{{topic=\"{topic}\",partition=\"{partition}\"}} 1"
                );
            }
            if let Some(cluster) = &sources.cluster {
                let view = cluster.snapshot();
                let fenced = view.brokers.iter().filter(|broker| broker.fenced).count();
                let _ = writeln!(out, "# TYPE ringlog_cluster_controller_leader gauge");
                let _ = writeln!(
                    out,
                    "ringlog_cluster_controller_leader {}",
                    view.controller_id.unwrap_or(-1)
                );
                let _ = writeln!(out, "# TYPE ringlog_cluster_brokers gauge");
                let _ = writeln!(
                    out,
                    "ringlog_cluster_brokers{{state=\"live\"}} {}",
                    view.brokers.len() - fenced
                );
                let _ = writeln!(out, "ringlog_cluster_brokers{{state=\"fenced\"}} {fenced}");
                let sum = |cell: fn(&ShardCells) -> &AtomicU64| -> u64 {
                    self.shards
                        .iter()
                        .map(|cells| cell(cells).load(Ordering::Relaxed))
                        .sum()
                };
                let _ = writeln!(out, "# TYPE ringlog_under_replicated_partitions gauge");
                let _ = writeln!(
                    out,
                    "ringlog_under_replicated_partitions {}",
                    sum(|cells| &cells.under_replicated)
                );
                let _ = writeln!(out, "# TYPE ringlog_isr_shrinks_total counter");
                let _ = writeln!(
                    out,
                    "ringlog_isr_shrinks_total {}",
                    sum(|cells| &cells.isr_shrinks)
                );
                let _ = writeln!(out, "# TYPE ringlog_isr_expands_total counter");
                let _ = writeln!(
                    out,
                    "ringlog_isr_expands_total {}",
                    sum(|cells| &cells.isr_expands)
                );
                let lag = self
                    .shards
                    .iter()
                    .map(|cells| cells.replica_lag_max.load(Ordering::Relaxed))
                    .max()
                    .unwrap_or(0);
                let _ = writeln!(out, "# TYPE ringlog_replica_lag_max_records gauge");
                let _ = writeln!(out, "ringlog_replica_lag_max_records {lag}");
            }
        }
        crate::storage::stats::render(&mut out);
        out
    }
}

/// Serves `GET /metrics` on `listener` from a thread of its own.
pub fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
) -> std::io::Result<SocketAddr> {
    let address = listener.local_addr()?;
    std::thread::Builder::new().name("ringlog-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8; 2048];
            let read = stream.read(&mut request).unwrap_or(0);
            let first_line = String::from_utf8_lossy(&request[..read]).lines().next().unwrap_or("").to_string();
            let (status, body) = if first_line.starts_with("GET /metrics") {
                ("200 OK", metrics.render())
            } else {
                ("404 Not Found", "ringlog serves GET /metrics only\n".to_string())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_over_a_bucket_bound() {
        let histogram = Histogram::default();
        for us in [90, 9_000, 10_000, 10_001, 40_000, 7_000_000] {
            histogram.record(Duration::from_micros(us));
        }
        assert_eq!(histogram.count_over(10_000), 3);
        assert_eq!(histogram.count_over(100), 5);
        assert_eq!(histogram.count_over(5_000_000), 1);
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::new(2);
        metrics.produced(0, "orders", 10, 1000);
        metrics.produced(1, "orders", 5, 500);
        metrics.request_done(0, 0, Duration::from_micros(300));
        metrics.request_done(1, 0, Duration::from_millis(20));
        let text = metrics.render();
        assert!(
            text.contains("ringlog_produce_records_total{topic=\"orders\"} 15"),
            "{text}"
        );
        assert!(text.contains("ringlog_produce_bytes_total{topic=\"orders\"} 1500"));
        assert!(
            text.contains(
                "ringlog_request_latency_seconds_bucket{api=\"Produce\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ringlog_request_latency_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("ringlog_request_latency_seconds_count{api=\"Produce\"} 2"));
    }
}
