//! The broker process: shards, listeners, connections.
//!
//! [`Broker::start`] loads the catalog, binds one SO_REUSEPORT listener per shard on the
//! same port, and starts one pinned thread per shard, each with its own runtime
//! (`io::block_on`). A shard opens the partitions it owns, accepts connections, serves
//! them, runs retention on a timer, and runs jobs other shards send to its inbox.

pub mod budget;
pub mod connection;
pub mod limits;
pub mod open_files;
pub mod placement;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, watch};

pub use crate::config::BrokerConfig;
use crate::shard::{BrokerContext, Job, Shard};

use crate::catalog::{CatalogError, CatalogStore};
use crate::io::{self, net, Disk};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] io::IoError),
    #[error("--cores must be at least 1")]
    NoCores,
    #[error(transparent)]
    Offsets(#[from] crate::group::ReplayError),
    #[error("data directory {} is in use by another ringlog (it holds {LOCK_FILE}); stop it or use another --data-dir", data_dir.display())]
    DataDirInUse { data_dir: std::path::PathBuf },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shard {shard} cannot listen: {source}")]
    ShardListen {
        shard: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Controller(#[from] crate::cluster::ControllerError),
    #[error("the data directory holds topics of a single-node broker ({topics}); a cluster member (--voters) cannot adopt them yet: use another --data-dir, or run without --voters")]
    SingleNodeTopics { topics: String },
    #[error("shard {shard} cannot open {what}: {source}")]
    ShardOpen {
        shard: usize,
        what: String,
        #[source]
        source: crate::storage::StorageError,
    },
}

/// A running broker.
pub struct Broker {
    pub address: SocketAddr,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_address: Option<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
    /// This broker's controller, in cluster mode.
    controller: Option<crate::cluster::Controller>,
    /// Held (flock) while the broker runs: one broker per data directory.
    _lock: std::fs::File,
}

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = ".lock";

/// Takes the data directory's lock, or says who holds it.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, BrokerError> {
    use std::os::unix::io::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let io = |source| BrokerError::Lock {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    // SAFETY: flock on a descriptor this function owns; the lock lives as long as `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(if error.kind() == std::io::ErrorKind::WouldBlock {
            BrokerError::DataDirInUse {
                data_dir: data_dir.to_path_buf(),
            }
        } else {
            io(error)
        });
    }
    Ok(file)
}

impl Broker {
    /// Starts the shards and returns once every one of them is serving.
    pub fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        if config.cores == 0 {
            return Err(BrokerError::NoCores);
        }
        if config.io_backend == io::Backend::Uring {
            io::probe(config.io_backend)?;
        }
        let lock = lock_data_dir(&config.data_dir)?;
        open_files::raise_limit();
        let catalog = CatalogStore::open(&config.data_dir)?;
        let topic_ids = catalog
            .snapshot()
            .topics
            .values()
            .map(|topic| topic.id)
            .collect();
        crate::partition::dir::sweep_at_start(&config.data_dir, &topic_ids);
        let moved = catalog.place_on(config.cores)?;
        if moved > 0 {
            tracing::info!(
                partitions = moved,
                shards = config.cores,
                "re-placed partitions whose shard no longer exists"
            );
        }
        let listeners = net::bind_reuseport(config.listen, config.cores).map_err(|source| {
            BrokerError::Listen {
                address: config.listen,
                source,
            }
        })?;
        let address = listeners[0]
            .local_addr()
            .map_err(|source| BrokerError::Listen {
                address: config.listen,
                source,
            })?;
        let host = config.advertised_host.clone().unwrap_or_else(|| {
            if address.ip().is_unspecified() {
                "localhost".to_string()
            } else {
                address.ip().to_string()
            }
        });
        if config.cluster.is_some() {
            let single_node: Vec<String> = catalog
                .snapshot()
                .topics
                .values()
                .filter(|topic| topic.cluster.is_none())
                .map(|topic| topic.name.clone())
                .collect();
            if !single_node.is_empty() {
                return Err(BrokerError::SingleNodeTopics {
                    topics: single_node.join(", "),
                });
            }
        }
        let controller = match &config.cluster {
            Some(cluster) => Some(crate::cluster::Controller::start(
                cluster.clone(),
                &config.data_dir,
                crate::cluster::Endpoint {
                    host: host.clone(),
                    port: i32::from(address.port()),
                },
                catalog.snapshot().cluster_id.clone(),
            )?),
            None => None,
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.cores)
            .map(|_| mpsc::channel::<Job>(config.shard_inbox_capacity))
            .unzip();
        let metrics = Arc::new(crate::metrics::Metrics::new(config.cores));
        let metrics_address = match config.metrics_listen {
            Some(listen) => {
                let listener =
                    std::net::TcpListener::bind(listen).map_err(|source| BrokerError::Listen {
                        address: listen,
                        source,
                    })?;
                let served =
                    crate::metrics::serve(listener, metrics.clone()).map_err(|source| {
                        BrokerError::Listen {
                            address: listen,
                            source,
                        }
                    })?;
                Some(served)
            }
            None => None,
        };
        let replayed_offsets = Arc::new(replay_offsets(&config)?);
        let offline = Arc::new(crate::partition::offline::OfflinePartitions::default());
        let queued_bytes = Arc::new(budget::ByteBudget::new(config.queued_max_request_bytes));
        let placement = Arc::new(placement::ConnectionPlacement::new(config.cores));
        let context = Arc::new(BrokerContext {
            config: config.clone(),
            catalog,
            inboxes: senders,
            advertised: (host, i32::from(address.port())),
            metrics,
            replayed_offsets,
            offline: offline.clone(),
            connections: Arc::new(limits::ConnectionLimits::new(
                config.max_connections,
                config.max_connections_per_ip,
            )),
            queued_bytes: queued_bytes.clone(),
            placement: placement.clone(),
            cluster: controller.as_ref().map(crate::cluster::Controller::handle),
        });
        context.metrics.attach(crate::metrics::Sources {
            queued_bytes,
            placement,
            offline,
            cluster: context.cluster.clone(),
        });
        let (shutdown, shutdown_seen) = watch::channel(false);
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let cores = core_ids(&config);
        let mut threads = Vec::new();
        for (id, (listener, inbox)) in listeners.into_iter().zip(receivers).enumerate() {
            let context = context.clone();
            let shutdown = shutdown_seen.clone();
            let ready = ready_sender.clone();
            let core = cores.get(id).copied();
            let thread = std::thread::Builder::new()
                .name(format!("ringlog-shard-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        core_affinity::set_for_current(core);
                    }
                    let backend = context.config.io_backend;
                    let ran = io::block_on(
                        backend,
                        run_shard(id, context, listener, inbox, shutdown, ready.clone()),
                    );
                    if let Err(error) = ran {
                        let _ = ready.send(Err(BrokerError::Io(error)));
                    }
                })
                .expect("spawn shard thread");
            threads.push(thread);
        }
        drop(ready_sender);
        for _ in 0..config.cores {
            match ready.recv() {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    let _ = shutdown.send(true);
                    return Err(error);
                }
                Err(_) => break,
            }
        }
        if config.cluster.is_none() {
            remove_stale_offsets_logs(&config);
        }
        tracing::info!(%address, shards = config.cores, data_dir = %config.data_dir.display(), "ringlog is serving");
        Ok(Broker {
            address,
            metrics_address,
            threads,
            shutdown,
            controller,
            _lock: lock,
        })
    }

    /// Stops accepting, closes every partition (flushing it), and waits for the shards.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for thread in self.threads {
            let _ = thread.join();
        }
        if let Some(controller) = self.controller {
            controller.shutdown();
        }
    }
}

/// Every committed offset, read from the offsets logs before the shards start (on a
/// runtime of its own, through the storage layer). None in a cluster: there the
/// `__consumer_offsets-<partition>` directories are that topic's replicas, read by the
/// shard that leads each.
fn replay_offsets(config: &BrokerConfig) -> Result<crate::group::GroupOffsets, BrokerError> {
    if config.cluster.is_some() {
        return Ok(crate::group::GroupOffsets::new());
    }
    let offsets_config = crate::group::offsets_log_config(config);
    let disk = io::Disk::new(config.io_backend);
    let replayed = io::block_on(config.io_backend, async {
        crate::group::replay(&disk, &config.data_dir, &offsets_config).await
    })?;
    Ok(replayed?)
}

/// Offsets logs of shards that no longer exist (`--cores` went down): every group they held
/// was replayed and snapshotted into its new shard's log when the shards started.
fn remove_stale_offsets_logs(config: &BrokerConfig) {
    let Ok(entries) = std::fs::read_dir(&config.data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(shard) = name
            .strip_prefix(crate::group::OFFSETS_LOG_PREFIX)
            .and_then(|id| id.parse::<usize>().ok())
        else {
            continue;
        };
        if shard >= config.cores {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(log = name, "removed the offsets log of a former shard"),
                Err(error) => {
                    tracing::warn!(log = name, %error, "cannot remove a former shard's offsets log")
                }
            }
        }
    }
}

fn core_ids(config: &BrokerConfig) -> Vec<core_affinity::CoreId> {
    if !config.pin_cores {
        return Vec::new();
    }
    let available = core_affinity::get_core_ids().unwrap_or_default();
    if available.len() < config.cores {
        // More shards than cores: let the kernel place them.
        return Vec::new();
    }
    available
}

async fn run_shard(
    id: usize,
    context: Arc<BrokerContext>,
    listener: std::net::TcpListener,
    mut inbox: mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), BrokerError>>,
) {
    let backend = context.config.io_backend;
    let shard = Shard::new(id, context.clone(), Disk::new(backend));
    let listener = match net::Listener::from_std(listener, backend) {
        Ok(listener) => listener,
        Err(source) => {
            let _ = ready.send(Err(BrokerError::ShardListen { shard: id, source }));
            return;
        }
    };
    if let Err(source) = shard.open_offsets().await {
        let _ = ready.send(Err(BrokerError::ShardOpen {
            shard: id,
            what: "the offsets log".into(),
            source,
        }));
        return;
    }
    open_owned_partitions(&shard).await;
    let _ = ready.send(Ok(()));
    let shard_for_inbox = shard.clone();
    tokio::task::spawn_local(retention_loop(shard.clone()));
    tokio::task::spawn_local(publish_sizes_loop(shard.clone()));
    tokio::task::spawn_local(group_ticker(shard.clone()));
    tokio::task::spawn_local(offsets_expiry_loop(shard.clone()));
    if let Some(cluster) = shard.context.cluster.clone() {
        if let Some(config) = &shard.context.config.cluster {
            let lag_max = config.replica_lag_time_max;
            tokio::task::spawn_local(crate::replication::isr::maintain(
                shard.clone(),
                cluster.clone(),
                lag_max,
            ));
        }
        if id == 0 {
            tokio::task::spawn_local(crate::api::cluster_topics::follow(shard.clone(), cluster));
        }
    }
    // Accepting and the inbox each run in a task of their own: an io_uring accept must never
    // be cancelled (as a losing `select!` branch would be), or the connection it completes
    // with is lost.
    tokio::task::spawn_local(accept_loop(shard.clone(), listener));
    tokio::task::spawn_local(async move {
        let shard = shard_for_inbox;
        while let Some(job) = inbox.recv().await {
            tokio::task::spawn_local(job(shard.clone()));
        }
    });
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    shard.close_all().await;
    tracing::info!(shard = id, "shard stopped");
}

async fn accept_loop(shard: Rc<Shard>, listener: net::Listener) {
    loop {
        match listener.accept().await {
            Ok((connection, peer)) => {
                let placed = shard.context.placement.place(shard.id);
                if placed.shard == shard.id {
                    tokio::task::spawn_local(connection::serve(
                        shard.clone(),
                        connection,
                        peer,
                        placed,
                    ));
                } else {
                    tokio::task::spawn_local(hand_off(shard.clone(), connection, peer, placed));
                }
            }
            Err(error) => {
                // Out of file descriptors (EMFILE), mostly: logged at most once a second.
                shard.context.metrics.connection_refused(shard.id);
                if let Some(suppressed) = connection::refusal_log_allowed() {
                    tracing::warn!(shard = shard.id, %error, suppressed, "accept failed");
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Sends a connection accepted here to the shard it was placed on, which serves it.
async fn hand_off(
    shard: Rc<Shard>,
    connection: net::Connection,
    peer: std::net::SocketAddr,
    placed: placement::Placed,
) {
    let target = placed.shard;
    let handoff = match connection.hand_off() {
        Ok(handoff) => handoff,
        Err(error) => {
            tracing::warn!(shard = shard.id, target, %peer, %error, "cannot hand a connection to another shard; closed");
            return;
        }
    };
    let job: crate::shard::Job = Box::new(move |shard| {
        Box::pin(async move {
            match handoff.into_connection() {
                Ok(connection) => connection::serve(shard, connection, peer, placed).await,
                Err(error) => {
                    tracing::warn!(shard = shard.id, %peer, %error, "cannot take a connection from another shard; closed")
                }
            }
        })
    });
    let sent = match shard.context.inboxes.get(target) {
        Some(inbox) => inbox.send(job).await.is_ok(),
        None => false,
    };
    if !sent {
        tracing::warn!(shard = shard.id, target, %peer, "the shard a connection was placed on is gone; closed");
    }
}

/// Opens (and so recovers) every partition this shard owns. A partition that cannot be
/// opened is logged with its reason and left offline (Metadata reports it; the next request
/// for it tries again); the others serve.
async fn open_owned_partitions(shard: &Rc<Shard>) {
    let catalog = shard.context.catalog.snapshot();
    for topic in catalog.topics.values() {
        for (partition, owner) in topic.partition_shards.iter().enumerate() {
            if *owner == shard.id {
                if let Err(error) = shard.partition(topic, partition as i32).await {
                    tracing::error!(topic = %topic.name, partition, %error, "cannot open partition at start-up; it stays offline");
                }
            }
        }
    }
}

/// Expires group members whose session ran out and finishes overdue rebalances.
async fn group_ticker(shard: Rc<Shard>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        shard.coordinator.tick();
    }
}

/// Deletes the offsets of groups without members whose last commit is older than
/// `offsets.retention.minutes` (Kafka expires them the same way).
async fn offsets_expiry_loop(shard: Rc<Shard>) {
    let retention = shard.context.config.groups.offsets_retention;
    let interval = (retention / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(60),
    );
    loop {
        tokio::time::sleep(interval).await;
        let now = crate::storage::Clock::system().now_ms();
        let cutoff = now - retention.as_millis() as i64;
        for store in shard.offset_stores() {
            for group in store.idle_since(cutoff) {
                if shard.coordinator.has_members(&group) {
                    continue;
                }
                match store.delete(&group, None, now).await {
                    Ok(deleted) => {
                        tracing::info!(group, offsets = deleted.len(), "expired committed offsets")
                    }
                    Err(error) => {
                        tracing::warn!(group, %error, "expiring committed offsets failed")
                    }
                }
            }
        }
    }
}

/// Publishes this shard's partition log sizes to the metrics, and which of its logs a failed
/// write took offline to Metadata, every few seconds; reopens the ones a full disk took
/// offline once there is room again.
async fn publish_sizes_loop(shard: Rc<Shard>) {
    loop {
        let sizes = shard.local_partition_sizes();
        shard.context.metrics.publish_partition_sizes(sizes);
        shard.publish_offline_logs();
        shard.reopen_logs_offline_for_space().await;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

async fn retention_loop(shard: Rc<Shard>) {
    let interval = shard.context.config.retention_check_interval;
    loop {
        tokio::time::sleep(interval).await;
        for local in shard.local_partitions() {
            match local.log.apply_retention().await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(dir = %local.log.dir().display(), deleted, "retention deleted segments")
                }
                Err(error) => {
                    tracing::warn!(dir = %local.log.dir().display(), %error, "retention failed")
                }
            }
        }
    }
}
