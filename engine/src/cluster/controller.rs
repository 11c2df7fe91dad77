//! The controller thread: this broker's Raft node on a current-thread tokio runtime, the
//! cluster listener, the broker's own registration and heartbeats, the leader's liveness
//! check, and the [`ClusterView`] it publishes for the shards.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use uuid::Uuid;

use super::log_store::{LogStore, LogStoreError};
use super::rpc::{self, HeartbeatReply, Network, Peer, Request, Response, WriteRefused};
use super::state::{ClusterState, SnapshotError, StateMachineStore};
use super::types::{BrokerRegistration, Command, NodeId, Reply, TypeConfig};
use super::{ClusterConfig, ClusterHandle, ClusterView, Submitted, CONTROLLER_DIR};

/// Controller connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// How long a command may take to be written, leader changes included.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// One forwarded command or heartbeat's round trip.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the leader looks for brokers to fence.
const LIVENESS_TICK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("--node-id {0} is not among --voters: every broker of a cluster is a controller voter here (broker-only nodes are not supported)")]
    NotAVoter(i32),
    #[error("cannot listen for controllers on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogStoreError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("the controller's Raft settings are invalid: {0}")]
    Config(String),
    #[error("the controller cannot start: {0}")]
    Start(String),
}

/// A running controller; dropping it stops it.
pub struct Controller {
    handle: Arc<ClusterHandle>,
    /// Where it listens for the other controllers.
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What this broker registers: where clients reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

impl Controller {
    /// Opens the controller's log under `data_dir`, binds its listener and starts its thread;
    /// returns once the Raft node runs (it may not have a leader yet).
    pub fn start(
        config: ClusterConfig,
        data_dir: &Path,
        endpoint: Endpoint,
        proposed_cluster_id: String,
    ) -> Result<Controller, ControllerError> {
        if !config.voters.contains_key(&config.node_id) {
            return Err(ControllerError::NotAVoter(config.node_id));
        }
        let dir = data_dir.join(CONTROLLER_DIR);
        let log = LogStore::open(&dir)?;
        let state = StateMachineStore::open(&dir)?;
        let listen = |source| ControllerError::Listen {
            address: config.cluster_listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.cluster_listen).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let address = listener.local_addr().map_err(listen)?;
        let incarnation = Uuid::new_v4();
        let (handle, submitted) = ClusterHandle::new(config.node_id, incarnation);
        let handle = Arc::new(handle);
        let (stop, stopped) = oneshot::channel();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let registration = BrokerRegistration {
            id: config.node_id,
            incarnation,
            host: endpoint.host,
            port: endpoint.port,
            rack: config.rack.clone(),
            cluster_address: config
                .voters
                .get(&config.node_id)
                .cloned()
                .unwrap_or_else(|| address.to_string()),
            proposed_cluster_id,
        };
        let thread_handle = handle.clone();
        let thread = std::thread::Builder::new()
            .name("ringlog-controller".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_sender.send(Err(ControllerError::Start(error.to_string())));
                        return;
                    }
                };
                runtime.block_on(run(Start {
                    config,
                    dir,
                    log,
                    state,
                    listener,
                    handle: thread_handle,
                    submitted,
                    registration,
                    stopped,
                    ready: ready_sender,
                }));
            })
            .map_err(|error| ControllerError::Start(error.to_string()))?;
        match ready.recv() {
            Ok(Ok(())) => Ok(Controller {
                handle,
                address,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ControllerError::Start(
                    "its thread ended before it ran".to_string(),
                ))
            }
        }
    }

    /// The shards' side: the cluster as they see it, and command submission.
    pub fn handle(&self) -> Arc<ClusterHandle> {
        self.handle.clone()
    }

    /// Stops the Raft node and waits for the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

struct Start {
    config: ClusterConfig,
    dir: PathBuf,
    log: LogStore,
    state: StateMachineStore,
    listener: std::net::TcpListener,
    handle: Arc<ClusterHandle>,
    submitted: tokio::sync::mpsc::Receiver<Submitted>,
    registration: BrokerRegistration,
    stopped: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), ControllerError>>,
}

/// The controller's shared parts, for its tasks.
struct Node {
    id: NodeId,
    config: ClusterConfig,
    raft: Raft<TypeConfig>,
    state: watch::Receiver<Arc<ClusterState>>,
    liveness: Mutex<Liveness>,
}

#[derive(Default)]
struct Liveness {
    /// Last heartbeat of each broker, with the incarnation that sent it.
    heard: HashMap<i32, (Uuid, Instant)>,
    /// Since when this node leads; `None` while it does not.
    leading_since: Option<Instant>,
}

async fn run(start: Start) {
    let Start {
        config,
        dir,
        log,
        state,
        listener,
        handle,
        submitted,
        registration,
        stopped,
        ready,
    } = start;
    let raft_config = openraft::Config {
        cluster_name: "ringlog".to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        ..Default::default()
    };
    let raft_config = match raft_config.validate() {
        Ok(valid) => Arc::new(valid),
        Err(error) => {
            let _ = ready.send(Err(ControllerError::Config(error.to_string())));
            return;
        }
    };
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(source) => {
            let _ = ready.send(Err(ControllerError::Listen {
                address: config.cluster_listen,
                source,
            }));
            return;
        }
    };
    let id = config.node_id as NodeId;
    let published = state.subscribe();
    let raft = match Raft::new(id, raft_config, Network, log, state).await {
        Ok(raft) => raft,
        Err(error) => {
            let _ = ready.send(Err(ControllerError::Start(error.to_string())));
            return;
        }
    };
    let members: BTreeMap<NodeId, BasicNode> = config
        .voters
        .iter()
        .map(|(id, address)| (*id as NodeId, BasicNode::new(address)))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(
            voters = config.voters.len(),
            "controller quorum initialized"
        ),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
        Err(error) => {
            let _ = ready.send(Err(ControllerError::Start(error.to_string())));
            return;
        }
    }
    let node = Arc::new(Node {
        id,
        config,
        raft: raft.clone(),
        state: published,
        liveness: Mutex::new(Liveness::default()),
    });
    tracing::info!(node = id, dir = %dir.display(), "controller running");
    let _ = ready.send(Ok(()));
    let tasks = [
        tokio::spawn(serve(node.clone(), listener)),
        tokio::spawn(publish_view(node.clone(), handle)),
        tokio::spawn(write_submitted(node.clone(), submitted)),
        tokio::spawn(register_and_heartbeat(node.clone(), registration)),
        tokio::spawn(fence_quiet_brokers(node.clone())),
    ];
    let _ = stopped.await;
    for task in &tasks {
        task.abort();
    }
    if let Err(error) = raft.shutdown().await {
        tracing::warn!(%error, "controller Raft node did not stop cleanly");
    }
}

impl Node {
    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    fn liveness(&self) -> std::sync::MutexGuard<'_, Liveness> {
        self.liveness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes `command` through the leader, wherever it is; retries across leader changes
    /// for up to [`WRITE_TIMEOUT`].
    async fn write(&self, command: Command) -> Result<Reply, WriteRefused> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            let leader = match self.write_here(command.clone()).await {
                Ok(reply) => return Ok(reply),
                Err(WriteRefused::NotLeader { leader }) => leader,
                Err(failed) => return Err(failed),
            };
            if let Some(address) = leader.and_then(|id| self.config.voters.get(&(id as i32))) {
                let mut peer = Peer::new(address.clone());
                match peer
                    .call(&Request::Write(command.clone()), PEER_TIMEOUT)
                    .await
                {
                    Ok(Response::Write(Ok(reply))) => return Ok(reply),
                    Ok(Response::Write(Err(WriteRefused::Failed(message)))) => {
                        return Err(WriteRefused::Failed(message))
                    }
                    // Not the leader any more, or unreachable: ask again.
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                return Err(WriteRefused::NotLeader { leader });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes `command` if this node leads.
    async fn write_here(&self, command: Command) -> Result<Reply, WriteRefused> {
        match self.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(WriteRefused::NotLeader {
                    leader: forward.leader_id,
                })
            }
            Err(error) => Err(WriteRefused::Failed(error.to_string())),
        }
    }

    /// A broker's heartbeat, as the leader takes it.
    fn heartbeat(self: &Arc<Self>, id: i32, incarnation: Uuid) -> HeartbeatReply {
        let leader = self.leader();
        if leader != Some(self.id) {
            return HeartbeatReply::NotLeader { leader };
        }
        let fenced = match self.state.borrow().brokers.get(&id) {
            Some(broker) if broker.registration.incarnation == incarnation => broker.fenced,
            _ => return HeartbeatReply::Unknown,
        };
        self.liveness()
            .heard
            .insert(id, (incarnation, Instant::now()));
        if fenced {
            let node = self.clone();
            tokio::spawn(async move {
                match node.write(Command::UnfenceBroker { id, incarnation }).await {
                    Ok(Reply::Unfenced) => {
                        tracing::info!(broker = id, "broker heard again: unfenced")
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(broker = id, %error, "cannot unfence a broker"),
                }
            });
        }
        HeartbeatReply::Alive
    }
}

/// Answers the other controllers.
async fn serve(node: Arc<Node>, listener: TcpListener) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "controller listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(error) = serve_connection(&node, stream).await {
                tracing::debug!(%error, "controller connection closed");
            }
            drop(place);
        });
    }
}

async fn serve_connection(node: &Arc<Node>, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    while let Some(request) = rpc::read_frame::<Request>(&mut stream).await? {
        let response = match request {
            Request::AppendEntries(request) => {
                Response::AppendEntries(node.raft.append_entries(request).await)
            }
            Request::Vote(request) => Response::Vote(node.raft.vote(request).await),
            Request::InstallSnapshot(request) => {
                Response::InstallSnapshot(node.raft.install_snapshot(request).await)
            }
            Request::Write(command) => Response::Write(node.write_here(command).await),
            Request::Heartbeat { id, incarnation } => {
                Response::Heartbeat(node.heartbeat(id, incarnation))
            }
        };
        rpc::write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

/// Keeps the shards' view current: on every applied change and every change of leader.
async fn publish_view(node: Arc<Node>, view: Arc<ClusterHandle>) {
    let mut metrics = node.raft.metrics();
    let mut state = node.state.clone();
    loop {
        let leader = {
            let metrics = metrics.borrow_and_update();
            let leading = metrics.state == ServerState::Leader;
            let mut liveness = node.liveness();
            match (leading, liveness.leading_since) {
                (true, None) => {
                    tracing::info!(
                        node = node.id,
                        term = metrics.current_term,
                        "this controller leads"
                    );
                    liveness.leading_since = Some(Instant::now());
                }
                (false, Some(_)) => liveness.leading_since = None,
                _ => {}
            }
            metrics.current_leader
        };
        let current = state.borrow_and_update().clone();
        view.replace(ClusterView {
            cluster_id: current.cluster_id.clone(),
            controller_id: leader.map(|id| id as i32),
            brokers: current.brokers.values().cloned().collect(),
            topics: current.topics.clone(),
            applied_index: current.applied_index,
        });
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = state.changed() => if changed.is_err() { return },
        }
    }
}

/// Writes what the shards submit, one command at a time (topic changes are rare).
async fn write_submitted(node: Arc<Node>, mut submitted: tokio::sync::mpsc::Receiver<Submitted>) {
    while let Some((command, reply)) = submitted.recv().await {
        let _ = reply.send(node.write(command).await);
    }
}

/// Registers this broker, then heartbeats to the leader; registers again whenever the
/// leader does not know this incarnation.
async fn register_and_heartbeat(node: Arc<Node>, registration: BrokerRegistration) {
    let id = registration.id;
    let incarnation = registration.incarnation;
    'register: loop {
        match node
            .write(Command::RegisterBroker(registration.clone()))
            .await
        {
            Ok(Reply::Registered { epoch }) => {
                tracing::info!(broker = id, epoch, "registered with the controller")
            }
            Ok(other) => tracing::warn!(broker = id, ?other, "unexpected answer to a registration"),
            Err(error) => {
                tracing::info!(broker = id, %error, "cannot register yet; trying again");
                tokio::time::sleep(node.config.heartbeat_interval).await;
                continue;
            }
        }
        let mut leader_peer: Option<(NodeId, Peer)> = None;
        loop {
            tokio::time::sleep(node.config.heartbeat_interval).await;
            let reply = match node.leader() {
                None => continue,
                Some(leader) if leader == node.id => node.heartbeat(id, incarnation),
                Some(leader) => {
                    let Some(address) = node.config.voters.get(&(leader as i32)) else {
                        continue;
                    };
                    if leader_peer.as_ref().map(|(to, _)| *to) != Some(leader) {
                        leader_peer = Some((leader, Peer::new(address.clone())));
                    }
                    let (_, peer) = leader_peer.as_mut().expect("set above");
                    match peer
                        .call(&Request::Heartbeat { id, incarnation }, PEER_TIMEOUT)
                        .await
                    {
                        Ok(Response::Heartbeat(reply)) => reply,
                        Ok(_) | Err(_) => continue,
                    }
                }
            };
            if reply == HeartbeatReply::Unknown {
                continue 'register;
            }
        }
    }
}

/// On the leader: fences every broker not heard from for the session timeout (counted
/// from when this node began to lead, for brokers it has not heard yet).
async fn fence_quiet_brokers(node: Arc<Node>) {
    let mut tick = tokio::time::interval(LIVENESS_TICK);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let quiet: Vec<(i32, Uuid)> = {
            let Some(since) = node.liveness().leading_since else {
                continue;
            };
            let liveness = node.liveness();
            let state = node.state.borrow();
            state
                .brokers
                .values()
                .filter(|broker| !broker.fenced)
                .filter(|broker| {
                    let incarnation = broker.registration.incarnation;
                    let last = match liveness.heard.get(&broker.registration.id) {
                        Some((heard_from, at)) if *heard_from == incarnation => (*at).max(since),
                        _ => since,
                    };
                    now.duration_since(last) > node.config.session_timeout
                })
                .map(|broker| (broker.registration.id, broker.registration.incarnation))
                .collect()
        };
        for (id, incarnation) in quiet {
            if !node.is_leader() {
                break;
            }
            match node
                .write_here(Command::FenceBroker { id, incarnation })
                .await
            {
                Ok(Reply::Fenced) => tracing::warn!(
                    broker = id,
                    timeout_ms = node.config.session_timeout.as_millis() as u64,
                    "broker not heard within its session timeout: fenced"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(broker = id, %error, "cannot fence a broker"),
            }
        }
    }
}
