//! `ringlog serve`: settings from a TOML file (`--config`), the environment and flags;
//! flags and environment win over the file, the file over built-in defaults.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use engine::io::Backend;
use engine::server::{Broker, BrokerConfig};
use engine::storage::FlushPolicy;
use serde::Deserialize;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with broker settings (keys as the long flags, with '_': data_dir, listen,
    /// cores, ..., and a [log] table for partition defaults).
    #[arg(long, env = "RINGLOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for partition data and the topic catalog [default: ./data].
    #[arg(long, env = "RINGLOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free port, printed at start [default: 127.0.0.1:9092].
    #[arg(long, env = "RINGLOG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Host name given to clients in metadata (default: the listen address).
    #[arg(long, env = "RINGLOG_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Shards: threads, one per core [default: every core].
    #[arg(long, env = "RINGLOG_CORES")]
    pub cores: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// File I/O and network backend: io-uring, or portable where io_uring is unavailable
    /// [default: io-uring].
    #[arg(long, env = "RINGLOG_IO_BACKEND")]
    pub io_backend: Option<Backend>,
    /// Partitions of auto-created topics (num.partitions) [default: 1].
    #[arg(long)]
    pub num_partitions: Option<i32>,
    /// Refuse to create topics on metadata requests (auto.create.topics.enable=false).
    #[arg(long)]
    pub no_auto_create_topics: bool,
    /// Largest request frame accepted (socket.request.max.bytes) [default: 104857600].
    #[arg(long)]
    pub max_request_bytes: Option<usize>,
    /// Requests of one connection read and dispatched but not yet answered; past it the
    /// connection stops reading [default: 16].
    #[arg(long)]
    pub max_in_flight_requests: Option<usize>,
    /// Bytes of request frames of one connection dispatched but not yet answered; past it
    /// the connection stops reading (a larger frame is admitted alone) [default: 16777216].
    #[arg(long)]
    pub max_in_flight_bytes: Option<usize>,
    /// Close a connection with nothing in flight after this long without a byte from it
    /// (connections.max.idle.ms) [default: 600000].
    #[arg(long)]
    pub connections_max_idle_ms: Option<u64>,
    /// Close a connection whose started request frame does not arrive whole within this
    /// long [default: 30000].
    #[arg(long)]
    pub partial_request_timeout_ms: Option<u64>,
    /// Bytes of request frames the whole broker holds, being read or awaiting their answer
    /// (queued.max.request.bytes); past it connections stop reading [default: 268435456].
    #[arg(long)]
    pub queued_max_request_bytes: Option<usize>,
    /// Bytes of recent batches each shard keeps in memory for consumers near the log end,
    /// shared equally by its open partitions (each between 1 MiB and 64 MiB); a consumer
    /// further behind reads from disk [default: 268435456].
    #[arg(long)]
    pub tail_cache_bytes: Option<usize>,
    /// Connections open at once; more are closed as they arrive (max.connections)
    /// [default: 2147483647].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Connections open at once from one IP address (max.connections.per.ip)
    /// [default: 2147483647].
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Serve Prometheus metrics at GET /metrics on this address (port 0 picks a free port).
    #[arg(long, env = "RINGLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between retention checks (log.retention.check.interval.ms / 1000) [default: 300].
    /// `retention.bytes` is also applied whenever a partition prepares its next segment.
    #[arg(long)]
    pub retention_check_secs: Option<u64>,
    /// Shortest session timeout a group member may ask for (group.min.session.timeout.ms)
    /// [default: 6000].
    #[arg(long)]
    pub group_min_session_timeout_ms: Option<u64>,
    /// How long a new group waits for more members before its first rebalance
    /// (group.initial.rebalance.delay.ms) [default: 3000].
    #[arg(long)]
    pub group_initial_rebalance_delay_ms: Option<u64>,
    /// Longest session timeout a group member may ask for (group.max.session.timeout.ms)
    /// [default: 1800000].
    #[arg(long)]
    pub group_max_session_timeout_ms: Option<u64>,
    /// Most members one group may have (group.max.size) [default: 1000].
    #[arg(long)]
    pub group_max_size: Option<usize>,
    /// Offsets of a group without members expire this long after its last commit
    /// (offsets.retention.minutes) [default: 10080].
    #[arg(long)]
    pub offsets_retention_minutes: Option<u64>,
    /// Segment size of the internal offsets logs (offsets.topic.segment.bytes); each roll
    /// compacts them [default: 104857600].
    #[arg(long)]
    pub offsets_segment_bytes: Option<u64>,
    /// The same in milliseconds, for tests; wins over the minutes.
    #[arg(long, hide = true)]
    pub offsets_retention_ms: Option<u64>,
    /// In a cluster, partitions of the replicated `__consumer_offsets` topic, created on
    /// the first FindCoordinator (offsets.topic.num.partitions) [default: 16].
    #[arg(long)]
    pub offsets_topic_partitions: Option<i32>,
    /// In a cluster, replicas of each `__consumer_offsets` partition, at most the number
    /// of voters (offsets.topic.replication.factor) [default: 3].
    #[arg(long)]
    pub offsets_topic_replication_factor: Option<i16>,
    /// This broker's id (node.id); in a cluster, also its controller's [default: 0].
    #[arg(long, env = "RINGLOG_NODE_ID")]
    pub node_id: Option<i32>,
    /// The controller quorum, ID@HOST:PORT separated by commas (controller.quorum.voters);
    /// giving it runs this broker as a member of that cluster.
    #[arg(long, env = "RINGLOG_VOTERS")]
    pub voters: Option<String>,
    /// Where this broker's controller listens for the other controllers; needed with
    /// --voters.
    #[arg(long, env = "RINGLOG_CLUSTER_LISTEN")]
    pub cluster_listen: Option<SocketAddr>,
    /// Rack of this broker (broker.rack), for replica placement.
    #[arg(long, env = "RINGLOG_RACK")]
    pub rack: Option<String>,
    /// How often a broker heartbeats to the controller leader (broker.heartbeat.interval.ms)
    /// [default: 2000].
    #[arg(long)]
    pub broker_heartbeat_interval_ms: Option<u64>,
    /// A broker not heard from for this long is fenced: clients are no longer sent to it
    /// (broker.session.timeout.ms) [default: 9000].
    #[arg(long)]
    pub broker_session_timeout_ms: Option<u64>,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (replica.lag.time.max.ms) [default: 30000].
    #[arg(long)]
    pub replica_lag_time_max_ms: Option<u64>,
}

/// The TOML file. Unknown keys are refused, so a typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    advertised_host: Option<String>,
    cores: Option<usize>,
    pin_cores: Option<bool>,
    io_backend: Option<String>,
    num_partitions: Option<i32>,
    auto_create_topics: Option<bool>,
    max_request_bytes: Option<usize>,
    max_in_flight_requests: Option<usize>,
    max_in_flight_bytes: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    partial_request_timeout_ms: Option<u64>,
    queued_max_request_bytes: Option<usize>,
    tail_cache_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    metrics_listen: Option<SocketAddr>,
    retention_check_secs: Option<u64>,
    group_min_session_timeout_ms: Option<u64>,
    group_initial_rebalance_delay_ms: Option<u64>,
    group_max_session_timeout_ms: Option<u64>,
    group_max_size: Option<usize>,
    offsets_retention_minutes: Option<u64>,
    offsets_segment_bytes: Option<u64>,
    offsets_topic_partitions: Option<i32>,
    offsets_topic_replication_factor: Option<i16>,
    node_id: Option<i32>,
    voters: Option<String>,
    cluster_listen: Option<SocketAddr>,
    rack: Option<String>,
    broker_heartbeat_interval_ms: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    replica_lag_time_max_ms: Option<u64>,
    #[serde(default)]
    log: LogFileConfig,
}

/// Defaults for every partition log (Kafka's log.* broker settings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFileConfig {
    segment_bytes: Option<u64>,
    segment_ms: Option<i64>,
    retention_ms: Option<i64>,
    retention_bytes: Option<i64>,
    max_message_bytes: Option<usize>,
    index_interval_bytes: Option<u32>,
    /// "every-write" (fsync after each write, the default) or "on-demand" (only for acks=all).
    flush: Option<String>,
    /// How segment space is reserved ahead: "fallocate" (the default), "zero-fill", "none".
    preallocation: Option<String>,
}

fn load_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read config {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("config {} is invalid: {error}", path.display()))
}

fn broker_config(args: ServeArgs) -> Result<BrokerConfig, String> {
    let file = match &args.config {
        Some(path) => load_file(path)?,
        None => FileConfig::default(),
    };
    let defaults = BrokerConfig::default();
    let io_backend = match (args.io_backend, &file.io_backend) {
        (Some(backend), _) => backend,
        (None, Some(name)) => name.parse()?,
        (None, None) => defaults.io_backend,
    };
    let mut log = defaults.log_defaults.clone();
    let file_log = file.log;
    if let Some(bytes) = file_log.segment_bytes {
        log.segment_bytes = bytes;
    }
    if let Some(ms) = file_log.segment_ms {
        log.segment_ms = ms;
    }
    if let Some(ms) = file_log.retention_ms {
        log.retention_ms = (ms >= 0).then_some(ms);
    }
    if let Some(bytes) = file_log.retention_bytes {
        log.retention_bytes = (bytes >= 0).then_some(bytes as u64);
    }
    if let Some(bytes) = file_log.max_message_bytes {
        log.max_message_bytes = bytes;
    }
    if let Some(bytes) = file_log.index_interval_bytes {
        log.index_interval_bytes = bytes;
    }
    log.flush_policy = match file_log.flush.as_deref() {
        None | Some("every-write") => FlushPolicy::EveryWrite,
        Some("on-demand") => FlushPolicy::OnDemand,
        Some(other) => {
            return Err(format!(
                "[log] flush = '{other}' must be 'every-write' or 'on-demand'"
            ))
        }
    };
    if let Some(preallocation) = &file_log.preallocation {
        log.preallocation = preallocation
            .parse()
            .map_err(|error| format!("[log] {error}"))?;
    }
    log.validate().map_err(|error| error.to_string())?;
    let node_id = args.node_id.or(file.node_id).unwrap_or(defaults.node_id);
    if node_id < 0 {
        return Err(format!("--node-id {node_id} must be 0 or more"));
    }
    let offsets_topic_partitions = args
        .offsets_topic_partitions
        .or(file.offsets_topic_partitions)
        .unwrap_or(defaults.groups.offsets_topic_partitions);
    if !(1..=engine::catalog::PARTITIONS_PER_TOPIC_MAX as i32).contains(&offsets_topic_partitions) {
        return Err(format!(
            "--offsets-topic-partitions {offsets_topic_partitions} must be 1 to {}",
            engine::catalog::PARTITIONS_PER_TOPIC_MAX
        ));
    }
    let offsets_topic_replication_factor = args
        .offsets_topic_replication_factor
        .or(file.offsets_topic_replication_factor)
        .unwrap_or(defaults.groups.offsets_topic_replication_factor);
    if offsets_topic_replication_factor < 1 {
        return Err(format!(
            "--offsets-topic-replication-factor {offsets_topic_replication_factor} must be 1 or more"
        ));
    }
    let cluster = match (
        args.voters.or(file.voters),
        args.cluster_listen.or(file.cluster_listen),
    ) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(
                "--voters needs --cluster-listen (where this broker's controller listens)"
                    .to_string(),
            )
        }
        (None, Some(_)) => {
            return Err("--cluster-listen needs --voters (the controller quorum)".to_string())
        }
        (Some(voters), Some(cluster_listen)) => {
            let voters = engine::cluster::parse_voters(&voters)?;
            if !voters.contains_key(&node_id) {
                return Err(format!("--node-id {node_id} is not among --voters (every broker of a cluster is a controller voter)"));
            }
            let heartbeat_interval = std::time::Duration::from_millis(
                args.broker_heartbeat_interval_ms
                    .or(file.broker_heartbeat_interval_ms)
                    .unwrap_or(2000)
                    .max(10),
            );
            let session_timeout = std::time::Duration::from_millis(
                args.broker_session_timeout_ms
                    .or(file.broker_session_timeout_ms)
                    .unwrap_or(9000),
            );
            if session_timeout <= heartbeat_interval {
                return Err(format!(
                    "--broker-session-timeout-ms ({}) must be longer than --broker-heartbeat-interval-ms ({})",
                    session_timeout.as_millis(),
                    heartbeat_interval.as_millis()
                ));
            }
            Some(engine::cluster::ClusterConfig {
                node_id,
                cluster_listen,
                voters,
                rack: args.rack.or(file.rack),
                heartbeat_interval,
                session_timeout,
                replica_lag_time_max: std::time::Duration::from_millis(
                    args.replica_lag_time_max_ms
                        .or(file.replica_lag_time_max_ms)
                        .unwrap_or(30_000)
                        .max(100),
                ),
            })
        }
    };
    Ok(BrokerConfig {
        node_id,
        cluster,
        data_dir: args.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
        listen: args.listen.or(file.listen).unwrap_or(defaults.listen),
        advertised_host: args.advertised_host.or(file.advertised_host),
        cores: args.cores.or(file.cores).unwrap_or(defaults.cores),
        pin_cores: !args.no_pin && file.pin_cores.unwrap_or(defaults.pin_cores),
        io_backend,
        num_partitions: args
            .num_partitions
            .or(file.num_partitions)
            .unwrap_or(defaults.num_partitions),
        auto_create_topics: !args.no_auto_create_topics
            && file
                .auto_create_topics
                .unwrap_or(defaults.auto_create_topics),
        max_request_bytes: args
            .max_request_bytes
            .or(file.max_request_bytes)
            .unwrap_or(defaults.max_request_bytes),
        requests_in_flight_max: args
            .max_in_flight_requests
            .or(file.max_in_flight_requests)
            .unwrap_or(defaults.requests_in_flight_max)
            .max(1),
        in_flight_bytes_max: args
            .max_in_flight_bytes
            .or(file.max_in_flight_bytes)
            .unwrap_or(defaults.in_flight_bytes_max)
            .max(1),
        connections_max_idle: args
            .connections_max_idle_ms
            .or(file.connections_max_idle_ms)
            .map(|ms| std::time::Duration::from_millis(ms.max(1)))
            .unwrap_or(defaults.connections_max_idle),
        partial_request_timeout: args
            .partial_request_timeout_ms
            .or(file.partial_request_timeout_ms)
            .map(|ms| std::time::Duration::from_millis(ms.max(1)))
            .unwrap_or(defaults.partial_request_timeout),
        queued_max_request_bytes: args
            .queued_max_request_bytes
            .or(file.queued_max_request_bytes)
            .unwrap_or(defaults.queued_max_request_bytes)
            .clamp(1, u32::MAX as usize),
        tail_cache_bytes_per_shard: args
            .tail_cache_bytes
            .or(file.tail_cache_bytes)
            .unwrap_or(defaults.tail_cache_bytes_per_shard),
        max_connections: args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(defaults.max_connections),
        max_connections_per_ip: args
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or(defaults.max_connections_per_ip),
        retention_check_interval: args
            .retention_check_secs
            .or(file.retention_check_secs)
            .map(|secs| std::time::Duration::from_secs(secs.max(1)))
            .unwrap_or(defaults.retention_check_interval),
        metrics_listen: args.metrics_listen.or(file.metrics_listen),
        groups: engine::group::GroupSettings {
            min_session_timeout: args
                .group_min_session_timeout_ms
                .or(file.group_min_session_timeout_ms)
                .map(std::time::Duration::from_millis)
                .unwrap_or(defaults.groups.min_session_timeout),
            initial_rebalance_delay: args
                .group_initial_rebalance_delay_ms
                .or(file.group_initial_rebalance_delay_ms)
                .map(std::time::Duration::from_millis)
                .unwrap_or(defaults.groups.initial_rebalance_delay),
            max_session_timeout: args
                .group_max_session_timeout_ms
                .or(file.group_max_session_timeout_ms)
                .map(std::time::Duration::from_millis)
                .unwrap_or(defaults.groups.max_session_timeout),
            max_members: args
                .group_max_size
                .or(file.group_max_size)
                .unwrap_or(defaults.groups.max_members)
                .max(1),
            offsets_retention: match args.offsets_retention_ms {
                Some(ms) => std::time::Duration::from_millis(ms.max(1)),
                None => args
                    .offsets_retention_minutes
                    .or(file.offsets_retention_minutes)
                    .map(|minutes| std::time::Duration::from_secs(minutes.max(1) * 60))
                    .unwrap_or(defaults.groups.offsets_retention),
            },
            offsets_segment_bytes: args
                .offsets_segment_bytes
                .or(file.offsets_segment_bytes)
                .unwrap_or(defaults.groups.offsets_segment_bytes)
                .max(64 * 1024),
            offsets_topic_partitions,
            offsets_topic_replication_factor,
        },
        log_defaults: log,
        ..defaults
    })
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let config = broker_config(args)?;
    // The signal runtime's descriptors are taken before the partitions open, so that a broker
    // whose partitions fill the open files limit still starts and stops cleanly.
    let signals = signal_runtime()?;
    let broker = Broker::start(config).map_err(|error| error.to_string())?;
    // Where the broker listens, for whoever started it. A closed stdout (a supervisor or a
    // test that read the first line and went away) must not take the broker down, so write
    // errors are ignored rather than panicking as `println!` would.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "ringlog listening on {}", broker.address);
    if let Some(metrics) = broker.metrics_address {
        let _ = writeln!(stdout, "ringlog metrics on http://{metrics}/metrics");
    }
    let _ = stdout.flush();
    wait_for_signal(signals);
    tracing::info!("shutting down");
    broker.shutdown();
    Ok(())
}

/// A runtime watching SIGINT and SIGTERM.
struct Signals {
    runtime: tokio::runtime::Runtime,
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

fn signal_runtime() -> Result<Signals, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the signal runtime: {error}"))?;
    let (interrupt, terminate) = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt())
            .map_err(|error| format!("cannot watch SIGINT: {error}"))?;
        let terminate = signal(SignalKind::terminate())
            .map_err(|error| format!("cannot watch SIGTERM: {error}"))?;
        Ok::<_, String>((interrupt, terminate))
    })?;
    Ok(Signals {
        runtime,
        interrupt,
        terminate,
    })
}

fn wait_for_signal(signals: Signals) {
    let Signals {
        runtime,
        mut interrupt,
        mut terminate,
    } = signals;
    runtime.block_on(async {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> ServeArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        Wrapper::parse_from(std::iter::once("serve").chain(args.iter().copied())).serve
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringlog.toml");
        std::fs::write(&path, "cores = 3\nnum_partitions = 6\nlisten = \"127.0.0.1:19092\"\n[log]\nsegment_bytes = 1048576\nflush = \"on-demand\"\npreallocation = \"zero-fill\"\n").unwrap();
        let config = broker_config(parse(&[
            "--config",
            path.to_str().unwrap(),
            "--cores",
            "2",
            "--max-in-flight-requests",
            "4",
        ]))
        .unwrap();
        assert_eq!(config.requests_in_flight_max, 4);
        assert_eq!(config.in_flight_bytes_max, 16 * 1024 * 1024, "default");
        assert_eq!(config.cores, 2, "flag wins");
        assert_eq!(config.num_partitions, 6, "file wins over default");
        assert_eq!(config.listen.port(), 19092);
        assert_eq!(config.log_defaults.segment_bytes, 1_048_576);
        assert_eq!(config.log_defaults.flush_policy, FlushPolicy::OnDemand);
        assert_eq!(
            config.log_defaults.preallocation,
            engine::storage::Preallocation::ZeroFill,
            "the file's, not the default"
        );
        assert_eq!(
            config.max_request_bytes,
            protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            "default"
        );
    }

    #[test]
    fn a_typo_in_the_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringlog.toml");
        std::fs::write(&path, "corez = 3\n").unwrap();
        let error = broker_config(parse(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(error.contains("corez"), "{error}");
    }
}
