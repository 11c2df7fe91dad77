//! Broker settings (`ringlog serve`), named after Kafka's broker configs where one exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::io::Backend;
use crate::storage::LogConfig;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where partition directories and the catalog live (`log.dirs`).
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Host name clients are told to connect to; `None` uses the listen address (or
    /// `localhost` when it is a wildcard).
    pub advertised_host: Option<String>,
    /// Shards (threads, one per core).
    pub cores: usize,
    /// Pin each shard thread to its own core.
    pub pin_cores: bool,
    pub io_backend: Backend,
    pub node_id: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic (or one created with -1).
    pub num_partitions: i32,
    /// `socket.request.max.bytes`: larger frames are refused before they are buffered.
    pub max_request_bytes: usize,
    /// Defaults for every partition log; topics override them.
    pub log_defaults: LogConfig,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval: Duration,
    /// Requests of one connection dispatched and not yet answered; past it the connection
    /// stops reading.
    pub requests_in_flight_max: usize,
    /// Bytes of request frames of one connection dispatched and not yet answered; past it
    /// the connection stops reading (a larger frame is admitted alone).
    pub in_flight_bytes_max: usize,
    /// `connections.max.idle.ms`: a connection with nothing in flight that sends nothing for
    /// this long is closed.
    pub connections_max_idle: Duration,
    /// A request frame whose rest does not arrive within this long closes its connection.
    pub partial_request_timeout: Duration,
    /// `queued.max.request.bytes`: bytes of request frames the whole broker holds (being
    /// read or dispatched and not yet answered); past it connections stop reading until
    /// answers free some. A frame larger than the budget is admitted alone.
    pub queued_max_request_bytes: usize,
    /// Bytes of recent batches a shard keeps in memory for tailing consumers, shared
    /// equally by its open partitions (see `crate::shard::tail_cache_share`).
    pub tail_cache_bytes_per_shard: usize,
    /// `max.connections`: connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// Most requests a shard's inbox holds before senders wait.
    pub shard_inbox_capacity: usize,
    /// Where to serve Prometheus metrics (`GET /metrics`); `None` serves none.
    pub metrics_listen: Option<SocketAddr>,
    /// Consumer group limits and delays.
    pub groups: crate::group::GroupSettings,
    /// Cluster mode (`--voters`): `None` runs a single node.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".parse().expect("valid address"),
            advertised_host: None,
            cores: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            pin_cores: true,
            io_backend: Backend::Uring,
            node_id: 0,
            auto_create_topics: true,
            num_partitions: 1,
            max_request_bytes: protocol::frame::DEFAULT_MAX_FRAME_BYTES,
            log_defaults: LogConfig::default(),
            retention_check_interval: Duration::from_secs(300),
            requests_in_flight_max: 16,
            in_flight_bytes_max: 16 * 1024 * 1024,
            connections_max_idle: Duration::from_secs(600),
            partial_request_timeout: Duration::from_secs(30),
            queued_max_request_bytes: 256 * 1024 * 1024,
            tail_cache_bytes_per_shard: 256 * 1024 * 1024,
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            shard_inbox_capacity: 1024,
            metrics_listen: None,
            groups: crate::group::GroupSettings::default(),
            cluster: None,
        }
    }
}
