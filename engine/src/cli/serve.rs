//! `ringlog serve`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use engine::io::Backend;
use engine::server::{Broker, BrokerConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory for partition data and the topic catalog.
    #[arg(long, env = "RINGLOG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, env = "RINGLOG_LISTEN", default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Host name given to clients in metadata (default: the listen address).
    #[arg(long, env = "RINGLOG_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Shards: threads, one per core (default: every core).
    #[arg(long, env = "RINGLOG_CORES")]
    pub cores: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// File I/O and network backend: io-uring, or portable where io_uring is unavailable.
    #[arg(long, env = "RINGLOG_IO_BACKEND", default_value = "io-uring")]
    pub io_backend: Backend,
    /// Partitions of auto-created topics (num.partitions).
    #[arg(long, default_value_t = 1)]
    pub num_partitions: i32,
    /// Refuse to create topics on metadata requests (auto.create.topics.enable=false).
    #[arg(long)]
    pub no_auto_create_topics: bool,
    /// Largest request frame accepted (socket.request.max.bytes).
    #[arg(long, default_value_t = protocol::frame::DEFAULT_MAX_FRAME_BYTES)]
    pub max_request_bytes: usize,
    /// Serve Prometheus metrics at GET /metrics on this address (port 0 picks a free port).
    #[arg(long, env = "RINGLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between retention checks (log.retention.check.interval.ms / 1000).
    #[arg(long, default_value_t = 300)]
    pub retention_check_secs: u64,
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    let defaults = BrokerConfig::default();
    let config = BrokerConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        advertised_host: args.advertised_host,
        cores: args.cores.unwrap_or(defaults.cores),
        pin_cores: !args.no_pin,
        io_backend: args.io_backend,
        num_partitions: args.num_partitions,
        auto_create_topics: !args.no_auto_create_topics,
        max_request_bytes: args.max_request_bytes,
        retention_check_interval: std::time::Duration::from_secs(args.retention_check_secs.max(1)),
        metrics_listen: args.metrics_listen,
        ..defaults
    };
    let broker = Broker::start(config).map_err(|error| error.to_string())?;
    println!("ringlog listening on {}", broker.address);
    if let Some(metrics) = broker.metrics_address {
        println!("ringlog metrics on http://{metrics}/metrics");
    }
    let _ = std::io::stdout().flush();
    wait_for_signal()?;
    tracing::info!("shutting down");
    broker.shutdown();
    Ok(())
}

fn wait_for_signal() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the signal runtime: {error}"))?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|error| format!("cannot watch SIGTERM: {error}"))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        Ok(())
    })
}
